//! What one run (a scenario in a mode) came to.

use super::common::Outcome;
use super::overload::Overload;
use super::target::{HedgeCounts, MeshlessStats, Record};
use super::timeline::{Recovery, Timeline};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

/// Width of a success-over-time bucket.
pub const BUCKET: Duration = Duration::from_millis(250);

/// The longest latency the histogram tells apart (an hour).
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// One endpoint's line: client-side attempts, failures, ejections; server-side requests.
#[derive(Debug, Clone)]
pub struct EndpointLine {
    pub attempts: u64,
    pub failures: u64,
    pub ejections: u64,
    /// Requests the backend itself read (a refused connection never gets here).
    pub served: u64,
}

/// Everything measured in one run.
pub struct Run {
    pub scenario: &'static str,
    pub mode: &'static str,
    pub requests: u64,
    pub ok: u64,
    /// Failures by reason: `status_<code>` or an error kind.
    pub failed: BTreeMap<String, u64>,
    pub attempts: u64,
    /// End-to-end latency of every request, success or failure, in microseconds.
    pub latency: Histogram<u64>,
    /// Every latency in microseconds, sorted: the CDF.
    pub sorted_micros: Vec<u64>,
    /// Per bucket of start time: (requests, successes).
    pub buckets: Vec<(u64, u64)>,
    pub duration: Duration,
    pub endpoints: Vec<EndpointLine>,
    pub meshless: Option<MeshlessStats>,
    /// Received against offered over time (the recovery scenario).
    pub timeline: Option<Timeline>,
    pub recovery: Option<Recovery>,
    pub overload: Option<Overload>,
    /// The hedges of a client that hedges.
    pub hedges: Option<HedgeCounts>,
    /// Requests of the load that never ended (the driver waits for all: 0 unless it broke).
    pub unfinished: u64,
}

impl Run {
    pub fn new(
        scenario: &'static str,
        mode: &'static str,
        records: &[Record],
        duration: Duration,
    ) -> Run {
        let mut latency =
            Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).expect("valid histogram bounds");
        let mut failed = BTreeMap::new();
        let mut ok = 0;
        let mut buckets: Vec<(u64, u64)> = Vec::new();
        let mut sorted_micros = Vec::with_capacity(records.len());
        for r in records {
            let micros = u64::try_from(r.latency.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            latency.saturating_record(micros);
            sorted_micros.push(micros);
            let b = (r.start.as_micros() / BUCKET.as_micros()) as usize;
            if buckets.len() <= b {
                buckets.resize(b + 1, (0, 0));
            }
            buckets[b].0 += 1;
            match r.outcome {
                Outcome::Ok => {
                    ok += 1;
                    buckets[b].1 += 1;
                }
                Outcome::Status(status) => {
                    *failed
                        .entry(format!("status_{}", status.as_u16()))
                        .or_default() += 1;
                }
                Outcome::Failed(kind) => *failed.entry(kind.to_string()).or_default() += 1,
            }
        }
        sorted_micros.sort_unstable();
        Run {
            scenario,
            mode,
            requests: records.len() as u64,
            ok,
            failed,
            attempts: 0,
            latency,
            sorted_micros,
            buckets,
            duration,
            endpoints: Vec::new(),
            meshless: None,
            timeline: None,
            recovery: None,
            overload: None,
            hedges: None,
            unfinished: 0,
        }
    }

    /// Share of requests answered 2xx, in percent.
    pub fn success_pct(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        100.0 * self.ok as f64 / self.requests as f64
    }

    pub fn attempts_per_request(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        self.attempts as f64 / self.requests as f64
    }

    /// A latency quantile in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }

    /// Requests that got no answer at all: they ended in an error (a timeout included) rather
    /// than a response, or never ended.
    pub fn lost(&self) -> u64 {
        let errors: u64 = self
            .failed
            .iter()
            .filter(|(reason, _)| !reason.starts_with("status_"))
            .map(|(_, n)| n)
            .sum();
        errors + self.unfinished
    }

    /// Attempts beyond one per request, as a share of the requests, in percent.
    pub fn extra_attempts_pct(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        100.0 * (self.attempts as f64 - self.requests as f64) / self.requests as f64
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
