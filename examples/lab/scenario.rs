//! The scenarios: each is a fleet of five backends on 127.0.0.1, built afresh for every mode.
//! Phases run on the fleet's clock, which starts just before the load does.

use super::modes::{Client, Group, Variant};
use super::target::{Load, Step};
use http::{HeaderValue, StatusCode};
use meshless::testing::{Backend, Behavior, Latency, Phase};
use std::time::Duration;

/// Backends per fleet.
pub const BACKENDS: usize = 5;

/// One scenario: what it shows, and its fleet.
pub struct Scenario {
    /// Short name: file names and the command line.
    pub name: &'static str,
    pub title: &'static str,
    /// What the fleet does, for the report.
    pub description: String,
    /// The backends, in order, each with its role in a few words.
    pub backends: Vec<(Backend, String)>,
    /// Its load, and what the report measures beyond the usual.
    pub plan: Plan,
}

/// A scenario's load and extra measures.
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// The lab's load (`--requests` at `--rate`), every client but the extra variants.
    Standard,
    /// Every backend fails from `outage_at` for `outage`, then heals; the run lasts `length`
    /// at `--rate`. Every client, extra variants included; the report follows the traffic the
    /// fleet received against the traffic offered, per `timeline::BUCKET`.
    Recovery {
        outage_at: Duration,
        outage: Duration,
        length: Duration,
    },
    /// Backends of finite capacity: `capacity` requests per second for the whole fleet, offered
    /// `calm.1` × capacity for `calm.0`, then `rush.1` × capacity for `rush.0`. Every client
    /// but plain, extra variants included.
    Overload {
        capacity: f64,
        calm: (Duration, f64),
        rush: (Duration, f64),
        max_in_flight: usize,
    },
    /// Answers with a rare slow mode (`lab/hedging.rs`); the run lasts `length` at `--rate`.
    /// tower and meshless, with and without hedging (not plain, nor the protection variants);
    /// the report compares the tails, and what hedging cost.
    Hedging { length: Duration },
}

impl Scenario {
    /// Whether `variant` runs in this scenario.
    pub fn runs(&self, variant: &Variant) -> bool {
        let plain = variant.client == Client::Plain;
        match (self.plan, variant.group) {
            (Plan::Standard, group) => group == Group::Every,
            (Plan::Recovery { .. }, group) => group != Group::Hedging,
            (Plan::Overload { .. }, group) => group != Group::Hedging && !plain,
            (Plan::Hedging { .. }, group) => group != Group::Protect && !plain,
        }
    }

    /// The scenario's load, from the lab's (`--requests`, `--rate`, `--max-in-flight`).
    pub fn load(&self, lab: &Load) -> Load {
        let rate = lab.steps.first().map_or(1000.0, |s| s.rate);
        let step = |length: Duration, rate: f64| Step {
            requests: (length.as_secs_f64() * rate).round() as u64,
            rate,
        };
        match self.plan {
            Plan::Standard => lab.clone(),
            Plan::Recovery { length, .. } | Plan::Hedging { length } => Load {
                steps: vec![step(length, rate)],
                max_in_flight: lab.max_in_flight,
            },
            Plan::Overload {
                capacity,
                calm,
                rush,
                max_in_flight,
            } => Load {
                steps: vec![
                    step(calm.0, calm.1 * capacity),
                    step(rush.0, rush.1 * capacity),
                ],
                max_in_flight,
            },
        }
    }
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A healthy backend: answers 200 after a small log-normal delay (median 1 ms, p99 5 ms).
fn healthy() -> Behavior {
    Behavior::healthy().latency(Latency::lognormal(ms(1), ms(5)))
}

fn healthy_role() -> String {
    "healthy (lognormal, median 1 ms, p99 5 ms)".to_string()
}

/// Four healthy backends after `odd`.
fn one_odd(odd: Backend, role: &str) -> Vec<(Backend, String)> {
    let mut backends = vec![(odd, role.to_string())];
    for _ in 1..BACKENDS {
        backends.push((Backend::new(healthy()), healthy_role()));
    }
    backends
}

/// Every scenario, in report order. `run` is how long the load lasts: the dying and churn
/// scenarios place their phases within it.
pub fn all(run: Duration) -> Vec<Scenario> {
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    // Dying: healthy for the first quarter, down for the middle half, healthy again.
    let (dying_up, dying_down) = (run / 4, run / 2);
    // Churn: each backend in turn goes down for a fifth of the run minus a gap, so that
    // exactly one is down at a time, the first after a tenth of the run.
    let slot = run / BACKENDS as u32;
    let churn_down = slot * 7 / 10;
    let churn_offset = run / 10;
    vec![
        Scenario {
            plan: Plan::Standard,
            name: "slow",
            title: "Slow endpoint",
            description: "One backend of five answers every request after a fixed 200 ms; \
                          the other four answer in about 1 ms."
                .into(),
            backends: one_odd(
                Backend::new(Behavior::healthy().latency(Latency::fixed(ms(200)))),
                "slow: fixed 200 ms",
            ),
        },
        Scenario {
            plan: Plan::Standard,
            name: "flaky",
            title: "Flaky endpoint",
            description: "One backend of five answers 30% of requests with 503 (at its usual \
                          latency); the other four are healthy."
                .into(),
            backends: one_odd(
                Backend::new(healthy().errors(0.3, StatusCode::SERVICE_UNAVAILABLE)),
                "flaky: 30% 503",
            ),
        },
        Scenario {
            plan: Plan::Standard,
            name: "dying",
            title: "Endpoint dying and returning",
            description: format!(
                "One backend of five is healthy for {}, then down (connections refused, open \
                 ones reset) for {}, then healthy again on the same address.",
                secs(dying_up),
                secs(dying_down)
            ),
            backends: one_odd(
                Backend::phases([
                    Phase::new(dying_up, healthy()),
                    Phase::new(dying_down, Behavior::down()),
                    Phase::open_ended(healthy()),
                ]),
                &format!(
                    "dying: down from {} to {}",
                    secs(dying_up),
                    secs(dying_up + dying_down)
                ),
            ),
        },
        Scenario {
            plan: Plan::Standard,
            name: "hanging",
            title: "Hanging endpoint",
            description: "One backend of five accepts connections and reads requests but never \
                          answers; the other four are healthy."
                .into(),
            backends: one_odd(
                Backend::new(Behavior::healthy().hangs(1.0)),
                "hanging: never answers",
            ),
        },
        Scenario {
            plan: Plan::Standard,
            name: "outage",
            title: "Full outage",
            description: "All five backends answer every request with 503 for the whole run. \
                          Nothing can succeed; what matters is how much extra load the \
                          clients add."
                .into(),
            backends: (0..BACKENDS)
                .map(|_| {
                    (
                        Backend::new(healthy().errors(1.0, StatusCode::SERVICE_UNAVAILABLE)),
                        "outage: 100% 503".to_string(),
                    )
                })
                .collect(),
        },
        Scenario {
            plan: Plan::Standard,
            name: "tail",
            title: "Tail latency",
            description: "All five backends answer after a heavy-tailed log-normal delay: \
                          median 2 ms, p99 100 ms (so about 0.1% take longer than a third of \
                          the 1 s deadline)."
                .into(),
            backends: (0..BACKENDS)
                .map(|_| {
                    (
                        Backend::new(
                            Behavior::healthy().latency(Latency::lognormal(ms(2), ms(100))),
                        ),
                        "tail: lognormal, median 2 ms, p99 100 ms".to_string(),
                    )
                })
                .collect(),
        },
        Scenario {
            plan: Plan::Standard,
            name: "throttling",
            title: "Throttling with Retry-After",
            description: "One backend of five answers 50% of requests with 429 and \
                          `Retry-After: 1`; the other four are healthy."
                .into(),
            backends: one_odd(
                Backend::new(
                    healthy()
                        .errors(0.5, StatusCode::TOO_MANY_REQUESTS)
                        .retry_after(HeaderValue::from_static("1")),
                ),
                "throttling: 50% 429, Retry-After: 1",
            ),
        },
        Scenario {
            plan: Plan::Standard,
            name: "churn",
            title: "Endpoint churn",
            description: format!(
                "The backends go down one after the other, each for {} (connections refused, \
                 open ones reset), one at a time, every {} from {} on, and come back on the \
                 same address.",
                secs(churn_down),
                secs(slot),
                secs(churn_offset)
            ),
            backends: (0..BACKENDS as u32)
                .map(|i| {
                    let up_until = churn_offset + slot * i;
                    (
                        Backend::phases([
                            Phase::new(up_until, healthy()),
                            Phase::new(churn_down, Behavior::down()),
                            Phase::open_ended(healthy()),
                        ]),
                        format!(
                            "churn: down from {} to {}",
                            secs(up_until),
                            secs(up_until + churn_down)
                        ),
                    )
                })
                .collect(),
        },
        recovery(),
        overload(),
        super::hedging::scenario(),
    ]
}

/// Every backend answers 503 for 6 s after 1 s of health (the outage), then heals; the
/// run goes on 7 s after healing, longer than the breaker's longest break (1 s ± 50%) and ramp.
fn recovery() -> Scenario {
    let (outage_at, outage, length) = (ms(1000), ms(6000), ms(14_000));
    let failing = healthy().errors(1.0, StatusCode::SERVICE_UNAVAILABLE);
    Scenario {
        name: "recovery",
        title: "Outage and recovery",
        description: format!(
            "All five backends are healthy for {} s, answer every request with 503 for {} s, \
             then heal. The run lasts {} s at the lab's rate. Measured per {} ms: the requests \
             the fleet received (its own counters) against the requests the client was \
             offered.",
            outage_at.as_secs(),
            outage.as_secs(),
            length.as_secs(),
            super::timeline::BUCKET.as_millis()
        ),
        backends: (0..BACKENDS)
            .map(|_| {
                (
                    Backend::phases([
                        Phase::new(outage_at, healthy()),
                        Phase::new(outage, failing.clone()),
                        Phase::open_ended(healthy()),
                    ]),
                    format!(
                        "503 from {} s to {} s",
                        outage_at.as_secs(),
                        (outage_at + outage).as_secs()
                    ),
                )
            })
            .collect(),
        plan: Plan::Recovery {
            outage_at,
            outage,
            length,
        },
    }
}

/// Workers per backend, and the fixed service time of a request: 5 × 10 / 50 ms = 1000
/// requests per second for the fleet.
const WORKERS: usize = 10;
const SERVICE: Duration = ms(50);
/// Long enough never to fill: a server that queues without end, as most do by default.
const QUEUE: usize = 10_000;

/// Backends of finite capacity, offered half of it, then one and a half times it.
fn overload() -> Scenario {
    let capacity = (BACKENDS * WORKERS) as f64 / SERVICE.as_secs_f64();
    let (calm, rush) = ((ms(2000), 0.5), (ms(6000), 1.5));
    Scenario {
        name: "overload",
        title: "Overload",
        description: format!(
            "Five backends, each with {WORKERS} workers and a FIFO queue of {QUEUE} \
             (`Backend::capacity`), serve every request in a fixed {} ms: the fleet's capacity \
             is {capacity:.0} requests per second. The client is offered {:.1}× that for {} s \
             (uncongested), then {:.1}× for {} s (overload), open loop.",
            SERVICE.as_millis(),
            calm.1,
            calm.0.as_secs(),
            rush.1,
            rush.0.as_secs()
        ),
        backends: (0..BACKENDS)
            .map(|_| {
                (
                    Backend::new(Behavior::healthy().latency(Latency::fixed(SERVICE)))
                        .capacity(WORKERS, QUEUE),
                    format!(
                        "{WORKERS} workers, queue {QUEUE}, {} ms a request",
                        SERVICE.as_millis()
                    ),
                )
            })
            .collect(),
        plan: Plan::Overload {
            capacity,
            calm,
            rush,
            // Above what the overload can hold in flight (1.5 × capacity × the deadline), so
            // that the load stays open.
            max_in_flight: 4096,
        },
    }
}
