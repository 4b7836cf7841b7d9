//! What the overload scenario measures in one run: goodput against the fleet's capacity, and
//! the p99 of successful requests under overload against the uncongested one.

use super::common::Outcome;
use super::target::Record;
use std::collections::BTreeMap;
use std::time::Duration;

/// The acceptance: goodput at least this share of the fleet's capacity…
pub const MIN_GOODPUT: f64 = 0.9;
/// …and a p99 of successful requests at most this many times the uncongested one.
pub const MAX_P99_RATIO: f64 = 2.0;

#[derive(Debug, Clone)]
pub struct Overload {
    /// The fleet's capacity, requests per second.
    pub capacity: f64,
    /// Requests offered under overload, and how many succeeded.
    pub offered: u64,
    pub ok: u64,
    /// Successful requests per second under overload (requests started in the overload span).
    pub goodput: f64,
    /// p99 of successful requests, ms: uncongested, and under overload.
    pub calm_p99_ms: f64,
    pub rush_p99_ms: f64,
    /// Failures under overload, by reason.
    pub failed: BTreeMap<String, u64>,
    /// Requests the fleet refused for a full queue, and the deepest queue (any backend).
    pub refused: u64,
    pub max_queue: u64,
    /// Requests the fleet answered per second over the whole run (the client may have given
    /// up on some by then).
    pub fleet_rate: f64,
}

impl Overload {
    pub fn new(records: &[Record], capacity: f64, calm: Duration, rush: Duration) -> Overload {
        let ok_latencies = |from: Duration, to: Duration| {
            let mut v: Vec<Duration> = records
                .iter()
                .filter(|r| r.start >= from && r.start < to && r.outcome == Outcome::Ok)
                .map(|r| r.latency)
                .collect();
            v.sort_unstable();
            v
        };
        let calm_ok = ok_latencies(Duration::ZERO, calm);
        let rush_ok = ok_latencies(calm, calm + rush);
        let mut failed = BTreeMap::new();
        let mut offered = 0;
        for r in records.iter().filter(|r| r.start >= calm) {
            offered += 1;
            let reason = match r.outcome {
                Outcome::Ok => continue,
                Outcome::Status(status) => format!("status_{}", status.as_u16()),
                Outcome::Failed(kind) => kind.to_string(),
            };
            *failed.entry(reason).or_default() += 1;
        }
        Overload {
            capacity,
            offered,
            ok: rush_ok.len() as u64,
            goodput: rush_ok.len() as f64 / rush.as_secs_f64(),
            calm_p99_ms: p99_ms(&calm_ok),
            rush_p99_ms: p99_ms(&rush_ok),
            failed,
            refused: 0,
            max_queue: 0,
            fleet_rate: 0.0,
        }
    }

    pub fn goodput_share(&self) -> f64 {
        self.goodput / self.capacity
    }

    pub fn p99_ratio(&self) -> f64 {
        if self.calm_p99_ms > 0.0 {
            self.rush_p99_ms / self.calm_p99_ms
        } else {
            f64::INFINITY
        }
    }

    pub fn pass(&self) -> bool {
        self.goodput_share() >= MIN_GOODPUT && self.p99_ratio() <= MAX_P99_RATIO
    }

    /// `status_503: 12, deadline-exceeded: 3`, or `none`.
    pub fn failures_text(&self) -> String {
        if self.failed.is_empty() {
            return "none".to_string();
        }
        self.failed
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The 99th percentile (nearest rank) in ms; 0 for no values.
fn p99_ms(sorted: &[Duration]) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * 0.99).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}
