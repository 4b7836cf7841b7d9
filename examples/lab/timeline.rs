//! Traffic over time, as the fleet saw it: its counters sampled while the load runs, turned
//! into requests received per bucket beside the requests the client was offered; and what the
//! outage and recovery scenario reads from that.

use super::common::Outcome;
use super::target::Record;
use meshless::testing::Fleet;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// Width of a traffic bucket.
pub const BUCKET: Duration = Duration::from_millis(100);

/// A request counts as "probes only" in a bucket where the fleet received at most this share
/// of the requests offered (the acceptance: ≤ 5%).
pub const PROBES_ONLY: f64 = 0.05;
/// Traffic is "back to full" from the first of `FULL_RUN` buckets in a row where the fleet
/// received at least this share of the requests offered.
pub const FULL: f64 = 0.9;
pub const FULL_RUN: usize = 3;

/// The fleet's request counter over time: (since the start, requests received so far).
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<(Duration, u64)>);

impl Samples {
    /// Samples `fleet`'s counters every few milliseconds until dropped (run it beside the load
    /// in a `select!`), then `finish` adds the last sample.
    pub async fn record(&mut self, fleet: &Fleet, start: Instant) {
        let mut tick = tokio::time::interval(BUCKET / 4);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.0.push((start.elapsed(), fleet.totals().requests));
        }
    }

    pub fn finish(&mut self, fleet: &Fleet, start: Instant) {
        self.0.push((start.elapsed(), fleet.totals().requests));
    }

    /// Requests received by `at`, interpolated between the samples around it.
    fn at(&self, at: Duration) -> f64 {
        let after = self.0.partition_point(|(t, _)| *t < at);
        match (
            after.checked_sub(1).and_then(|i| self.0.get(i)),
            self.0.get(after),
        ) {
            (Some(&(t0, n0)), Some(&(t1, n1))) if t1 > t0 => {
                let f = (at - t0).as_secs_f64() / (t1 - t0).as_secs_f64();
                n0 as f64 + f * (n1 as f64 - n0 as f64)
            }
            (_, Some(&(_, n))) | (Some(&(_, n)), None) => n as f64,
            (None, None) => 0.0,
        }
    }
}

/// Per bucket of time since the start: requests offered (started by the client) and received
/// (read by the fleet).
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub offered: Vec<u64>,
    pub received: Vec<f64>,
}

impl Timeline {
    pub fn new(records: &[Record], samples: &Samples) -> Timeline {
        let index = |d: Duration| (d.as_micros() / BUCKET.as_micros()) as usize;
        let mut offered: Vec<u64> = Vec::new();
        for r in records {
            let b = index(r.start);
            if offered.len() <= b {
                offered.resize(b + 1, 0);
            }
            offered[b] += 1;
        }
        let received = (0..offered.len() as u32)
            .map(|b| (samples.at(BUCKET * (b + 1)) - samples.at(BUCKET * b)).max(0.0))
            .collect();
        Timeline { offered, received }
    }

    fn bucket(at: Duration) -> usize {
        (at.as_micros() / BUCKET.as_micros()) as usize
    }

    /// (offered, received) over the buckets from `from` to `to` (whole buckets that start in
    /// that span).
    fn sums(&self, from: Duration, to: Duration) -> (u64, f64) {
        let range = Self::bucket(from)..Self::bucket(to).min(self.offered.len());
        let offered = self.offered.get(range.clone()).unwrap_or(&[]).iter().sum();
        let received = self.received.get(range).unwrap_or(&[]).iter().sum();
        (offered, received)
    }

    fn share(&self, b: usize) -> f64 {
        match (self.offered.get(b), self.received.get(b)) {
            (Some(&o), Some(&r)) if o > 0 => r / o as f64,
            _ => 0.0,
        }
    }
}

/// What the outage and recovery scenario measures, in one run.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// Over the whole outage.
    pub offered: u64,
    pub received: f64,
    /// From the outage's start to the first bucket with probes only; `None`: never.
    pub time_to_open: Option<Duration>,
    /// From then to the end of the outage.
    pub open_offered: u64,
    pub open_received: f64,
    /// The first good answer after the outage ended, from its end.
    pub first_good: Option<Duration>,
    /// From the first good answer to traffic back to full; `None`: never in the run.
    pub back_to_full: Option<Duration>,
}

impl Recovery {
    pub fn new(
        timeline: &Timeline,
        records: &[Record],
        outage_at: Duration,
        outage: Duration,
    ) -> Recovery {
        let healed = outage_at + outage;
        let (offered, received) = timeline.sums(outage_at, healed);
        let open_bucket = (Timeline::bucket(outage_at)..Timeline::bucket(healed))
            .find(|&b| timeline.share(b) <= PROBES_ONLY);
        let (open_offered, open_received) = match open_bucket {
            Some(b) => timeline.sums(BUCKET * b as u32, healed),
            None => (0, 0.0),
        };
        // The first answer that is good and came after the fleet healed.
        let first_good = records
            .iter()
            .filter(|r| r.outcome == Outcome::Ok)
            .map(|r| r.start + r.latency)
            .filter(|end| *end >= healed)
            .min();
        let back_to_full = first_good.and_then(|good| {
            let from = Timeline::bucket(healed);
            (from..timeline.offered.len().saturating_sub(FULL_RUN - 1))
                .find(|&b| (b..b + FULL_RUN).all(|b| timeline.share(b) >= FULL))
                .map(|b| (BUCKET * b as u32).saturating_sub(good))
        });
        Recovery {
            offered,
            received,
            time_to_open: open_bucket.map(|b| (BUCKET * b as u32).saturating_sub(outage_at)),
            open_offered,
            open_received,
            first_good: first_good.map(|good| good - healed),
            back_to_full,
        }
    }

    /// Share of the offered requests the fleet received over the whole outage.
    pub fn outage_share(&self) -> f64 {
        ratio(self.received, self.offered)
    }

    /// Share of the offered requests the fleet received while the client held back.
    pub fn open_share(&self) -> f64 {
        ratio(self.open_received, self.open_offered)
    }
}

fn ratio(received: f64, offered: u64) -> f64 {
    if offered == 0 {
        0.0
    } else {
        received / offered as f64
    }
}
