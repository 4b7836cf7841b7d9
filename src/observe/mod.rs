//! Observability: metric names and labels, tracing spans and events, and `stats()` snapshots.
//!
//! Every metric meshless records goes through the [`metrics`] facade, so any exporter works
//! (Prometheus, StatsD, OpenTelemetry, …): install a recorder, and the layers record into it.
//! Every span and event goes through [`tracing`]. This module is the one place where the names
//! and labels live; the layers call small helpers from here.
//!
//! ```
//! use meshless::{budget::Budget, retry::RetryLayer};
//!
//! // Install your exporter's recorder first: layers register their metric handles when they
//! // are built, and a handle registered before any recorder is installed stays a no-op.
//! meshless::observe::describe(); // optional: HELP texts and units for every family
//! let retry = RetryLayer::new(Budget::default()).service_name("payments");
//! ```
//!
//! # Metrics
//!
//! Names follow Prometheus conventions (`_total` for counters, `_seconds` for durations). Label
//! values are bounded: `service` is set by the user ([`ClientBuilder::service_name`], default
//! `default`), `endpoint` is the balancer's key for an endpoint (an `IP:port` for
//! [`http::Client`]), and `class`, `reason` and `state` take the fixed values listed below.
//! No label ever carries a per-request value.
//!
//! Endpoints come and go (DNS churn, discovery). meshless keeps nothing of a removed endpoint
//! (its stats, handles and outlier state go with it, and its state gauge returns to 0), but the
//! `metrics` facade has no way to unregister a series. Two ways to drop a removed endpoint's
//! series from the scrape:
//!
//! - with a recorder that can delete series (one built on `metrics_util::registry::Registry`),
//!   implement [`ForgetSeries`] for it and give it to
//!   [`BalanceBuilder::forget_series`](crate::balance::BalanceBuilder::forget_series) (for a
//!   client: `Client::builder().balance(Balance::builder().forget_series(..))`): every series
//!   of an endpoint is dropped once the endpoint is removed and its last request has finished;
//! - with an exporter that cannot (`metrics-exporter-prometheus`), give it an idle timeout
//!   (`PrometheusBuilder::idle_timeout(MetricKindMask::ALL, Some(Duration::from_secs(300)))`, as
//!   `examples/prometheus.rs` does): a removed endpoint's series stop changing and drop out.
//!
//! | name | type | labels | what it counts |
//! |---|---|---|---|
//! | `meshless_requests_total` | counter | service | logical requests received by the retry layer (each makes one or more attempts) |
//! | `meshless_requests_completed_total` | counter | service, class, reason | logical requests finished. `class` is `success`, `failure` or `cancelled`; `reason` is the classifier's reason for the last attempt (`success`, `http_5xx`, `timeout`, …), `timeout` for a request whose deadline passed, `cancelled` for one its caller dropped. Once nothing is in flight, `requests_total` = the sum over classes |
//! | `meshless_request_duration_seconds` | histogram | service, class | end-to-end latency of a logical request, from the call to its answer (the response head), every attempt and backoff included |
//! | `meshless_attempts_total` | counter | service | attempts sent, first attempts and retries: `attempts_total` = `requests_total` + `retries_total` |
//! | `meshless_retries_total` | counter | service, reason | retries sent, by the reason the attempt before failed |
//! | `meshless_retries_refused_total` | counter | service, reason | retries the outcome called for but that were not sent: `budget_exhausted`, `retries_exhausted`, `body_too_large`, `pushback`, `deadline`, `caller_retries` |
//! | `meshless_replay_overflows_total` | counter | service | requests whose body outgrew the replay buffer, so that they could not have been retried |
//! | `meshless_attempt_timeouts_total` | counter | service | attempts cut by the per-attempt timeout, hedges and the first attempts they raced included |
//! | `meshless_backoff_seconds` | histogram | service | each wait before a retry (backoff, or the server's pushback when longer); its `_sum` is the time spent in backoff |
//! | `meshless_endpoint_requests_total` | counter | service, endpoint | requests an endpoint finished (at the end of the response body) |
//! | `meshless_endpoint_failures_total` | counter | service, endpoint | of which failures, by the classifier |
//! | `meshless_endpoint_cancelled_total` | counter | service, endpoint | requests their caller gave up on while at the endpoint: not in `requests_total`, never failures |
//! | `meshless_endpoint_latency_seconds` | histogram | service, endpoint | each request's latency at an endpoint, to the end of the response body, failures included |
//! | `meshless_endpoint_rtt_ewma_seconds` | gauge | service, endpoint | the peak-EWMA round-trip time the balancer ranks the endpoint by: updated when it jumps (a failure, a probe) and for every endpoint at each outlier sweep (10 s by default) |
//! | `meshless_endpoint_state` | gauge | service, endpoint, state | 1 for the endpoint's state — `active`, `ejected` or `probation` — and 0 for the others |
//! | `meshless_endpoint_ejections_total` | counter | service, endpoint, reason | ejections, re-ejections after a failed probe included: `consecutive_failures`, `success_rate`, `failure_percentage`, `latency` |
//! | `meshless_balancer_endpoints` | gauge | service, state | endpoints by state: `active`, `ejected`, `probation` |
//! | `meshless_balancer_fail_fast_total` | counter | service | requests failed because no endpoint was ready within the fail-fast timeout |
//! | `meshless_breaker_state` | gauge | service, route, state | 1 for the circuit breaker's state — `closed`, `open`, `half-open`, `isolated` — 0 for the others; `route` is empty for the client-wide breaker |
//! | `meshless_breaker_transitions_total` | counter | service, route, state | breaker transitions, by the state entered |
//! | `meshless_breaker_rejected_total` | counter | service, route, state, mode | requests the breaker refused (`mode` `enforce`), or would have refused in shadow mode (`shadow`) |
//! | `meshless_concurrency_limit` | gauge | service | the concurrency limit in force (fixed, or the adaptive limit now); absent with no limit |
//! | `meshless_concurrency_in_flight` | gauge | service | requests holding a permit, until their response body ends |
//! | `meshless_concurrency_rejected_total` | counter | service | requests refused because the limit was full |
//! | `meshless_throttle_rejected_total` | counter | service | requests refused by client-side throttling |
//! | `meshless_throttle_probability` | gauge | service | the probability of refusing a request now |
//!
//! The per-request and per-attempt families are recorded by [`RetryLayer`]; the endpoint and
//! balancer families by [`Balance`]. Both take `.service_name(…)` and `.metrics(false)` (to turn
//! their metrics off); [`ClientBuilder`] sets both at once.
//!
//! An endpoint is counted `ejected` from its ejection until its probe request is sent, then
//! `probation` until the probe's answer returns it to `active` or ejects it again. (Its
//! [`Status`](crate::outlier::Status) already reads `Probation` once the ejection time is over;
//! the gauge waits for the probe itself, since nothing happens in between.)
//!
//! Histograms are recorded in seconds; [`LATENCY_BUCKETS`] are bucket bounds that suit them,
//! for exporters that need bounds (Prometheus renders histograms without bounds as summaries).
//!
//! # Cost
//!
//! Handles for every hot-path metric are registered once — per layer when it is built, per
//! endpoint when it is inserted — and stored, so recording is an atomic operation on a handle:
//! no label is built and no string allocated per request. Families whose labels depend on an
//! outcome (retries and failed requests by reason) register each label value the first time it
//! occurs and keep the handle; ejections, which are rare, look their counter up when they
//! happen. With no recorder installed, every handle is a no-op. `.metrics(false)` skips the
//! handles altogether.
//!
//! Install the recorder before building layers and clients: a handle registered while no
//! recorder is installed stays a no-op.
//!
//! # Tracing
//!
//! | span or event | level | fields | where |
//! |---|---|---|---|
//! | span `meshless.request` | INFO | `service`, `method`, `path`; at the end `attempts`, `class`, `reason` | one per logical request: the parent of its attempts' spans, entered where the retry layer decides after a failure |
//! | span `meshless.attempt` | DEBUG | `attempt` (1, 2, …), `backoff_ms` (the wait before it), `endpoint` (recorded by the balancer when it picks), `outcome` (the classifier's reason) | one per attempt, a child of `meshless.request`, entered while the attempt runs |
//! | event "endpoint ejected" | WARN | `service`, `endpoint`, `reason`, `ejected_for_ms`, `probe_failed` | an endpoint is ejected, or ejected again after its probe failed |
//! | event "endpoint on probation" | INFO | `service`, `endpoint` | an ejection is over and the one probe request is sent |
//! | event "endpoint returned" | INFO | `service`, `endpoint` | the probe succeeded: the endpoint is active again (ramping up) |
//! | event "retry budget exhausted" | INFO | `attempts`, `reason` | a retry was refused for want of budget (inside `meshless.request`) |
//!
//! Spans are created only when a subscriber enables them: with no subscriber, a request costs
//! one check of a cached flag. Requests keep their headers as they are: a W3C `traceparent`
//! (and `tracestate`) set by the caller reaches the server unchanged on every attempt.
//!
//! # Stats
//!
//! [`http::Client::stats`] returns a [`ClientStats`](crate::http::ClientStats) snapshot: lifetime counts, the success
//! rate and latency percentiles over the last minute ([`RecentStats`]), and every endpoint's
//! state and EWMA. The same pieces are on the services: [`RetryStats::recent`] and
//! [`Balance::stats`].
//!
//! [`ClientBuilder`]: crate::http::ClientBuilder
//! [`ClientBuilder::service_name`]: crate::http::ClientBuilder::service_name
//! [`http::Client`]: crate::http::Client
//! [`http::Client::stats`]: crate::http::Client::stats
//! [`RetryLayer`]: crate::retry::RetryLayer
//! [`RetryStats::recent`]: crate::retry::RetryStats::recent
//! [`Balance`]: crate::balance::Balance
//! [`Balance::stats`]: crate::balance::Balance::stats

mod forget;
mod labels;

pub use self::forget::ForgetSeries;
pub(crate) mod chaos;
mod hedge;
mod protect;
pub use self::chaos::{CHAOS_INJECTED_TOTAL, FAULT};

pub(crate) use self::forget::{Forgetter, SeriesGuard, SeriesKind};
pub use self::hedge::{HEDGE_DELAY_SECONDS, HEDGES_REFUSED_TOTAL, HEDGES_TOTAL, HEDGES_WON_TOTAL};
pub(crate) use self::labels::{CANCELLED, ReasonCounters, Settings};
pub use self::protect::{
    BREAKER_REJECTED_TOTAL, BREAKER_STATE, BREAKER_TRANSITIONS_TOTAL, CONCURRENCY_IN_FLIGHT,
    CONCURRENCY_LIMIT, CONCURRENCY_REJECTED_TOTAL, MODE, ROUTE, THROTTLE_PROBABILITY,
    THROTTLE_REJECTED_TOTAL,
};
pub use crate::primitives::ring::RecentStats;

use metrics::Unit;

/// Logical requests received by the retry layer. Labels: `service`.
///
/// ```
/// assert_eq!(meshless::observe::REQUESTS_TOTAL, "meshless_requests_total");
/// ```
pub const REQUESTS_TOTAL: &str = "meshless_requests_total";

/// Logical requests finished. Labels: `service`, `class`, `reason`. A success head is
/// classified at the end of its body (trailers, a body error, a timeout in the body; a body
/// the caller drops early keeps its head's class).
///
/// ```
/// assert_eq!(meshless::observe::REQUESTS_COMPLETED_TOTAL, "meshless_requests_completed_total");
/// ```
pub const REQUESTS_COMPLETED_TOTAL: &str = "meshless_requests_completed_total";

/// End-to-end latency of logical requests, in seconds, to the response head. Labels:
/// `service`, `class` (the class settled at the end of the body).
///
/// ```
/// assert!(meshless::observe::REQUEST_DURATION_SECONDS.ends_with("_seconds"));
/// ```
pub const REQUEST_DURATION_SECONDS: &str = "meshless_request_duration_seconds";

/// Attempts sent, first attempts and retries. Labels: `service`.
///
/// ```
/// assert_eq!(meshless::observe::ATTEMPTS_TOTAL, "meshless_attempts_total");
/// ```
pub const ATTEMPTS_TOTAL: &str = "meshless_attempts_total";

/// Retries sent. Labels: `service`, `reason` (why the attempt before failed).
///
/// ```
/// assert_eq!(meshless::observe::RETRIES_TOTAL, "meshless_retries_total");
/// ```
pub const RETRIES_TOTAL: &str = "meshless_retries_total";

/// Retries called for but not sent. Labels: `service`, `reason` (`budget_exhausted`,
/// `retries_exhausted`, `body_too_large`, `pushback`, `deadline`, `caller_retries`).
///
/// ```
/// assert_eq!(meshless::observe::RETRIES_REFUSED_TOTAL, "meshless_retries_refused_total");
/// ```
pub const RETRIES_REFUSED_TOTAL: &str = "meshless_retries_refused_total";

/// Requests whose body outgrew the replay buffer. Labels: `service`.
///
/// ```
/// assert_eq!(meshless::observe::REPLAY_OVERFLOWS_TOTAL, "meshless_replay_overflows_total");
/// ```
pub const REPLAY_OVERFLOWS_TOTAL: &str = "meshless_replay_overflows_total";

/// Attempts cut by the per-attempt timeout. Labels: `service`.
///
/// ```
/// assert_eq!(meshless::observe::ATTEMPT_TIMEOUTS_TOTAL, "meshless_attempt_timeouts_total");
/// ```
pub const ATTEMPT_TIMEOUTS_TOTAL: &str = "meshless_attempt_timeouts_total";

/// Each wait before a retry, in seconds. Labels: `service`.
///
/// ```
/// assert_eq!(meshless::observe::BACKOFF_SECONDS, "meshless_backoff_seconds");
/// ```
pub const BACKOFF_SECONDS: &str = "meshless_backoff_seconds";

/// Requests an endpoint finished. Labels: `service`, `endpoint`.
///
/// ```
/// assert_eq!(meshless::observe::ENDPOINT_REQUESTS_TOTAL, "meshless_endpoint_requests_total");
/// ```
pub const ENDPOINT_REQUESTS_TOTAL: &str = "meshless_endpoint_requests_total";

/// Requests an endpoint failed. Labels: `service`, `endpoint`.
///
/// ```
/// assert_eq!(meshless::observe::ENDPOINT_FAILURES_TOTAL, "meshless_endpoint_failures_total");
/// ```
pub const ENDPOINT_FAILURES_TOTAL: &str = "meshless_endpoint_failures_total";

/// Requests their caller gave up on while at an endpoint. Labels: `service`, `endpoint`.
///
/// ```
/// assert_eq!(meshless::observe::ENDPOINT_CANCELLED_TOTAL, "meshless_endpoint_cancelled_total");
/// ```
pub const ENDPOINT_CANCELLED_TOTAL: &str = "meshless_endpoint_cancelled_total";

/// Each request's latency at an endpoint, in seconds. Labels: `service`, `endpoint`.
///
/// ```
/// assert_eq!(meshless::observe::ENDPOINT_LATENCY_SECONDS, "meshless_endpoint_latency_seconds");
/// ```
pub const ENDPOINT_LATENCY_SECONDS: &str = "meshless_endpoint_latency_seconds";

/// An endpoint's peak-EWMA round-trip time, in seconds. Labels: `service`, `endpoint`.
///
/// ```
/// assert_eq!(meshless::observe::ENDPOINT_RTT_EWMA_SECONDS, "meshless_endpoint_rtt_ewma_seconds");
/// ```
pub const ENDPOINT_RTT_EWMA_SECONDS: &str = "meshless_endpoint_rtt_ewma_seconds";

/// 1 for an endpoint's state, 0 for the others. Labels: `service`, `endpoint`, `state`.
///
/// ```
/// assert_eq!(meshless::observe::ENDPOINT_STATE, "meshless_endpoint_state");
/// ```
pub const ENDPOINT_STATE: &str = "meshless_endpoint_state";

/// Ejections of an endpoint. Labels: `service`, `endpoint`, `reason`.
///
/// ```
/// assert_eq!(meshless::observe::ENDPOINT_EJECTIONS_TOTAL, "meshless_endpoint_ejections_total");
/// ```
pub const ENDPOINT_EJECTIONS_TOTAL: &str = "meshless_endpoint_ejections_total";

/// A balancer's endpoints by state. Labels: `service`, `state`.
///
/// ```
/// assert_eq!(meshless::observe::BALANCER_ENDPOINTS, "meshless_balancer_endpoints");
/// ```
pub const BALANCER_ENDPOINTS: &str = "meshless_balancer_endpoints";

/// Requests failed fast for want of a ready endpoint. Labels: `service`.
///
/// ```
/// assert_eq!(meshless::observe::BALANCER_FAIL_FAST_TOTAL, "meshless_balancer_fail_fast_total");
/// ```
pub const BALANCER_FAIL_FAST_TOTAL: &str = "meshless_balancer_fail_fast_total";

/// The label naming the logical service (set with `.service_name(…)`).
///
/// ```
/// assert_eq!(meshless::observe::SERVICE, "service");
/// ```
pub const SERVICE: &str = "service";

/// The label naming an endpoint: its balancer key, as `Display` writes it.
///
/// ```
/// assert_eq!(meshless::observe::ENDPOINT, "endpoint");
/// ```
pub const ENDPOINT: &str = "endpoint";

/// The label of an outcome class: `success`, `failure` or `cancelled`.
///
/// ```
/// assert_eq!(meshless::observe::CLASS, "class");
/// ```
pub const CLASS: &str = "class";

/// The label of a reason: an outcome's, a refusal's or an ejection's.
///
/// ```
/// assert_eq!(meshless::observe::REASON, "reason");
/// ```
pub const REASON: &str = "reason";

/// The label of an endpoint state: `active`, `ejected` or `probation`.
///
/// ```
/// assert_eq!(meshless::observe::STATE, "state");
/// ```
pub const STATE: &str = "state";

/// The `service` label's value when none is set.
///
/// ```
/// assert_eq!(meshless::observe::DEFAULT_SERVICE, "default");
/// ```
pub const DEFAULT_SERVICE: &str = "default";

/// The name of the span of one logical request.
///
/// ```
/// assert_eq!(meshless::observe::REQUEST_SPAN, "meshless.request");
/// ```
pub const REQUEST_SPAN: &str = "meshless.request";

/// The name of the span of one attempt, a child of [`REQUEST_SPAN`].
///
/// ```
/// assert_eq!(meshless::observe::ATTEMPT_SPAN, "meshless.attempt");
/// ```
pub const ATTEMPT_SPAN: &str = "meshless.attempt";

/// Histogram bucket bounds, in seconds, that suit every `_seconds` family: 1 ms to 10 s.
///
/// ```
/// use meshless::observe::LATENCY_BUCKETS;
/// assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
/// ```
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Describes every metric family (unit and help text) to the installed recorder. Optional:
/// exporters that print help texts, as Prometheus does, show them once this has run. Call it
/// after installing the recorder; calling it again is harmless.
///
/// ```
/// meshless::observe::describe();
/// ```
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Logical requests received by the retry layer."
    );
    describe_counter!(
        REQUESTS_COMPLETED_TOTAL,
        Unit::Count,
        "Logical requests finished, by class (success, failure, cancelled) and reason."
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "End-to-end latency of logical requests, retries and backoff included."
    );
    describe_counter!(
        ATTEMPTS_TOTAL,
        Unit::Count,
        "Attempts sent: first attempts and retries."
    );
    describe_counter!(
        RETRIES_TOTAL,
        Unit::Count,
        "Retries sent, by the reason the attempt before failed."
    );
    describe_counter!(
        RETRIES_REFUSED_TOTAL,
        Unit::Count,
        "Retries called for but not sent, by reason."
    );
    describe_counter!(
        REPLAY_OVERFLOWS_TOTAL,
        Unit::Count,
        "Requests whose body outgrew the replay buffer and could not have been retried."
    );
    describe_counter!(
        ATTEMPT_TIMEOUTS_TOTAL,
        Unit::Count,
        "Attempts cut by the per-attempt timeout."
    );
    describe_histogram!(
        BACKOFF_SECONDS,
        Unit::Seconds,
        "Each wait before a retry; the sum is the time spent in backoff."
    );
    describe_counter!(
        ENDPOINT_REQUESTS_TOTAL,
        Unit::Count,
        "Requests an endpoint finished, to the end of the response body."
    );
    describe_counter!(
        ENDPOINT_FAILURES_TOTAL,
        Unit::Count,
        "Requests an endpoint failed."
    );
    describe_counter!(
        ENDPOINT_CANCELLED_TOTAL,
        Unit::Count,
        "Requests their caller gave up on while at an endpoint; never counted as failures."
    );
    describe_histogram!(
        ENDPOINT_LATENCY_SECONDS,
        Unit::Seconds,
        "Latency of each request at an endpoint, to the end of the response body."
    );
    describe_gauge!(
        ENDPOINT_RTT_EWMA_SECONDS,
        Unit::Seconds,
        "The peak-EWMA round-trip time the balancer ranks an endpoint by."
    );
    describe_gauge!(
        ENDPOINT_STATE,
        Unit::Count,
        "1 for the endpoint's state (active, ejected, probation), 0 for the others."
    );
    describe_counter!(
        ENDPOINT_EJECTIONS_TOTAL,
        Unit::Count,
        "Ejections of an endpoint, by reason."
    );
    describe_gauge!(
        BALANCER_ENDPOINTS,
        Unit::Count,
        "A balancer's endpoints by state."
    );
    describe_counter!(
        BALANCER_FAIL_FAST_TOTAL,
        Unit::Count,
        "Requests failed because no endpoint was ready within the fail-fast timeout."
    );
    protect::describe();
    chaos::describe();
    hedge::describe();
}
