//! The scenarios: each is a fleet of five backends on 127.0.0.1, built afresh for every mode.
//! Phases run on the fleet's clock, which starts just before the load does.

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
    ]
}
