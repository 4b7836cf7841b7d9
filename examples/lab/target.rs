//! The three clients under test, and the open-loop driver that records every request.
//!
//! plain and tower are loadgen's own modes (`loadgen/plain.rs`, `loadgen/tower_mode.rs`),
//! included read-only. meshless is built exactly as loadgen's `meshless_mode.rs` builds it
//! (`Client::builder().endpoints(..).deadline(..)`, the library's default policy otherwise),
//! but kept here so that the lab can read the client's own counters afterwards:
//! `Client::endpoints()`, `Client::retry_stats()` and `Client::fail_fast_events()`.

use super::cli::{Args, LimitFlag, Mode};
use super::common::{EndpointReport, Outcome, Spec, finish};
use super::modes::{Client as Kind, Variant};
use super::plain::Plain;
use super::tower_hedge::TowerHedge;
use super::tower_mode::Tower;
use http::Method;
use http::uri::PathAndQuery;
use meshless::hedge::Refusal;
use meshless::http::Client;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::ServiceExt;

/// What the meshless client says about itself after a run.
#[derive(Debug, Clone, Default)]
pub struct MeshlessStats {
    pub retries: u64,
    pub budget_exhausted: u64,
    pub retries_exhausted: u64,
    pub pushback_refused: u64,
    pub deadline_refused: u64,
    pub fail_fast: u64,
    /// Per endpoint: status at the end of the run (`Debug` of `outlier::Status`).
    pub status: Vec<(SocketAddr, String)>,
}

/// What a hedging client says about its hedges after a run.
#[derive(Debug, Clone, Default)]
pub struct HedgeCounts {
    pub sent: u64,
    /// Requests whose answer came from a hedge.
    pub won: u64,
    /// Hedges not sent, by reason (meshless only: tower refuses none).
    pub refused: Vec<(&'static str, u64)>,
    /// The delay in force at the end (meshless only: tower's is not readable).
    pub delay: Option<Duration>,
}

/// The client under test.
pub enum Target {
    Meshless(Box<Client>),
    Plain(Plain),
    Tower(Tower),
    TowerHedge(TowerHedge),
}

impl Target {
    /// The client of `variant`; fails only if the variant's settings are invalid.
    pub fn new(
        variant: &Variant,
        addrs: &[SocketAddr],
        timeout: Duration,
    ) -> Result<Target, meshless::ConfigError> {
        Ok(match variant.client {
            Kind::Meshless => {
                let builder = Client::builder()
                    .endpoints(addrs.iter().map(ToString::to_string))
                    .deadline(timeout);
                Target::Meshless(Box::new((variant.tune)(builder).build()?))
            }
            Kind::Plain => Target::Plain(Plain::new(addrs)),
            Kind::Tower => Target::Tower(Tower::new(addrs, &args(Mode::Tower, timeout))),
            Kind::TowerHedge => {
                Target::TowerHedge(TowerHedge::new(addrs, &args(Mode::Tower, timeout)))
            }
        })
    }

    async fn send(&self, spec: &Spec) -> Outcome {
        match self {
            Target::Meshless(client) => {
                let deadline = Instant::now() + spec.timeout;
                // Through the `Service` impl, as loadgen does, so that the future is `Send`.
                match client.clone().oneshot(spec.request()).await {
                    Ok(res) => finish(res, deadline, "deadline-exceeded").await,
                    Err(e) => Outcome::Failed(e.kind().as_str()),
                }
            }
            Target::Plain(p) => p.send(spec).await,
            Target::Tower(t) => t.send(spec).await,
            Target::TowerHedge(t) => t.send(spec).await,
        }
    }

    /// Attempts made by the client: meshless requests + retries + hedges; tower counted
    /// between its retry and its attempt timeout (hedges included); plain one per request.
    pub fn attempts(&self, requests: u64) -> u64 {
        match self {
            Target::Meshless(client) => {
                // A request the client shed sent nothing: count those that reached the retry
                // layer.
                let retry = client.retry_stats();
                retry.requests() + retry.retries() + client.hedge_stats().hedges()
            }
            Target::Plain(_) => requests,
            Target::Tower(t) => t.attempts(),
            Target::TowerHedge(t) => t.attempts(),
        }
    }

    /// Per endpoint: attempts finished, failures among them, ejections (client-side).
    pub fn endpoints(&self) -> Vec<EndpointReport> {
        match self {
            Target::Meshless(client) => client
                .endpoints()
                .into_iter()
                .map(|e| EndpointReport {
                    addr: e.key,
                    requests: e.requests,
                    failures: e.failures,
                    ejections: e.ejections,
                })
                .collect(),
            Target::Plain(p) => p.endpoints(),
            Target::Tower(t) => t.endpoints(),
            Target::TowerHedge(t) => t.endpoints(),
        }
    }

    /// The hedges of a client that hedges (meshless with hedging on, tower's hedge).
    pub fn hedges(&self) -> Option<HedgeCounts> {
        match self {
            Target::Meshless(client) => {
                let stats = client.hedge_stats();
                // Without hedging the layer passes every request through and counts none.
                (stats.requests() > 0).then(|| HedgeCounts {
                    sent: stats.hedges(),
                    won: stats.won(),
                    refused: [
                        Refusal::Budget,
                        Refusal::ExtraLoad,
                        Refusal::Deadline,
                        Refusal::NotIdempotent,
                        Refusal::Body,
                    ]
                    .into_iter()
                    .map(|reason| (reason.as_str(), stats.refused(reason)))
                    .collect(),
                    delay: stats.delay(),
                })
            }
            Target::TowerHedge(t) => {
                let (sent, won) = t.hedges();
                Some(HedgeCounts {
                    sent,
                    won,
                    ..HedgeCounts::default()
                })
            }
            Target::Plain(_) | Target::Tower(_) => None,
        }
    }

    pub fn meshless_stats(&self) -> Option<MeshlessStats> {
        let Target::Meshless(client) = self else {
            return None;
        };
        let retry = client.retry_stats();
        Some(MeshlessStats {
            retries: retry.retries(),
            budget_exhausted: retry.budget_exhausted(),
            retries_exhausted: retry.retries_exhausted(),
            pushback_refused: retry.pushback_refused(),
            deadline_refused: retry.deadline_refused(),
            fail_fast: client.fail_fast_events(),
            status: client
                .endpoints()
                .into_iter()
                .map(|e| (e.key, format!("{:?}", e.status)))
                .collect(),
        })
    }
}

/// loadgen's command line for `mode`, with the lab's settings: GET /, the deadline, the
/// default attempt timeout, retries on.
fn args(mode: Mode, timeout: Duration) -> Args {
    Args {
        endpoints: Vec::new(),
        requests: 0,
        concurrency: 0,
        rate: None,
        timeout,
        attempt_timeout: None,
        method: Method::GET,
        body_bytes: 0,
        path: PathAndQuery::from_static("/"),
        mode,
        idempotent: false,
        no_retry: false,
        hedge: false,
        limit: LimitFlag::None,
        no_breaker: false,
        throttle: false,
    }
}

/// One request as the lab saw it.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// When it started, from the start of the run.
    pub start: Duration,
    /// From the call to the end of the response body (or the failure).
    pub latency: Duration,
    pub outcome: Outcome,
}

/// `requests` at `rate` per second: request `i` of the step is due `i / rate` seconds after
/// the step starts, and the next step starts `requests / rate` seconds after this one.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub requests: u64,
    pub rate: f64,
}

/// The load: steps one after the other; a request starts when due if fewer than
/// `max_in_flight` are in flight, otherwise as soon as one ends.
#[derive(Debug, Clone)]
pub struct Load {
    pub steps: Vec<Step>,
    pub max_in_flight: usize,
}

impl Load {
    pub fn steady(requests: u64, rate: f64, max_in_flight: usize) -> Load {
        Load {
            steps: vec![Step { requests, rate }],
            max_in_flight,
        }
    }

    pub fn requests(&self) -> u64 {
        self.steps.iter().map(|s| s.requests).sum()
    }

    /// When each request is due, from the start, in order.
    fn schedule(&self) -> impl Iterator<Item = Duration> + '_ {
        let mut begins = 0.0f64;
        self.steps.iter().flat_map(move |step| {
            let (at, rate) = (begins, step.rate);
            begins += step.requests as f64 / rate;
            (0..step.requests).map(move |i| Duration::from_secs_f64(at + i as f64 / rate))
        })
    }
}

/// Sends the whole load through `target`, the schedule counted from `start`; returns every
/// request's record (in start order) and how long the run took, from the first start to the
/// last end.
pub async fn drive(
    target: Arc<Target>,
    spec: Arc<Spec>,
    load: &Load,
    start: Instant,
) -> (Vec<Record>, Duration) {
    let records: Arc<Mutex<Vec<(u64, Record)>>> =
        Arc::new(Mutex::new(Vec::with_capacity(load.requests() as usize)));
    let slots = Arc::new(Semaphore::new(load.max_in_flight));
    for (i, offset) in (0u64..).zip(load.schedule()) {
        let due = start + offset;
        if Instant::now() < due {
            tokio::time::sleep_until(due).await;
        }
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (target, spec, records) = (target.clone(), spec.clone(), records.clone());
        tokio::spawn(async move {
            let began = Instant::now();
            let outcome = target.send(&spec).await;
            let record = Record {
                start: began - start,
                latency: began.elapsed(),
                outcome,
            };
            records
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((i, record));
            drop(slot);
        });
    }
    // Every slot back means every request has ended.
    let all = u32::try_from(load.max_in_flight).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    let duration = start.elapsed();
    let mut records = std::mem::take(&mut *records.lock().unwrap_or_else(PoisonError::into_inner));
    records.sort_by_key(|(i, _)| *i);
    (records.into_iter().map(|(_, r)| r).collect(), duration)
}
