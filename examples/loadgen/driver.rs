//! Drives the load: closed loop (C workers) or open loop (a schedule at `--rate`, at most C in
//! flight), and tallies what happened.

use super::Target;
use super::common::{Outcome, Spec};
use super::schedule;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The longest latency the histogram tells apart (an hour); longer ones count as an hour.
/// Three significant digits: exact to the microsecond up to 2 ms, within 0.1% above.
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// Everything measured in a run.
pub struct Tally {
    pub requests: u64,
    pub ok: u64,
    /// Failures by reason: `status_<code>` or an error kind.
    pub failed: BTreeMap<String, u64>,
    /// End-to-end latency of every request, success or failure, in microseconds.
    pub latency: Histogram<u64>,
    /// The slowest request's latency exactly, in microseconds: the histogram keeps three
    /// significant digits and reports the top of a value's bucket, which can exceed the run.
    pub max_micros: u64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            requests: 0,
            ok: 0,
            failed: BTreeMap::new(),
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)
                .expect("valid histogram bounds"),
            max_micros: 0,
        }
    }

    fn record(&mut self, outcome: Outcome, elapsed: Duration) {
        self.requests += 1;
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros);
        self.max_micros = self.max_micros.max(micros);
        let reason = match outcome {
            Outcome::Ok => {
                self.ok += 1;
                return;
            }
            Outcome::Status(status) => format!("status_{}", status.as_u16()),
            Outcome::Failed(kind) => kind.to_string(),
        };
        *self.failed.entry(reason).or_default() += 1;
    }
}

type Shared = Arc<Mutex<Tally>>;

/// Sends one request and records it.
async fn one(target: &Target, spec: &Spec, tally: &Shared) {
    let start = Instant::now();
    let outcome = target.send(spec).await;
    let elapsed = start.elapsed();
    tally
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .record(outcome, elapsed);
}

/// Runs the whole load; returns the tally and how long it took, from the first start to the
/// last end.
pub async fn run(
    target: Arc<Target>,
    spec: Arc<Spec>,
    requests: u64,
    concurrency: usize,
    rate: Option<f64>,
) -> (Tally, Duration) {
    let tally: Shared = Arc::new(Mutex::new(Tally::new()));
    let start = Instant::now();
    match rate {
        None => closed_loop(&target, &spec, &tally, requests, concurrency).await,
        Some(rate) => open_loop(&target, &spec, &tally, requests, concurrency, rate).await,
    }
    let duration = start.elapsed();
    let tally = std::mem::replace(
        &mut *tally.lock().unwrap_or_else(PoisonError::into_inner),
        Tally::new(),
    );
    (tally, duration)
}

/// C workers; each sends its next request as soon as the previous one ends, until N requests
/// have been started in all.
async fn closed_loop(
    target: &Arc<Target>,
    spec: &Arc<Spec>,
    tally: &Shared,
    requests: u64,
    concurrency: usize,
) {
    let started = Arc::new(AtomicU64::new(0));
    // A worker with no request to send would only cost its task.
    let workers = concurrency.min(usize::try_from(requests).unwrap_or(usize::MAX));
    let workers: Vec<_> = (0..workers)
        .map(|_| {
            let (target, spec, tally, started) =
                (target.clone(), spec.clone(), tally.clone(), started.clone());
            tokio::spawn(async move {
                while started.fetch_add(1, Ordering::Relaxed) < requests {
                    one(&target, &spec, &tally).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a load worker panicked");
    }
}

/// Request i is due at `start + i / rate`. A request starts when it is due and one of the C
/// slots is free; if all C are taken it waits for a slot, and the requests due meanwhile go
/// out as slots free up, so the schedule catches up. Latency counts from the actual start.
async fn open_loop(
    target: &Arc<Target>,
    spec: &Arc<Spec>,
    tally: &Shared,
    requests: u64,
    concurrency: usize,
    rate: f64,
) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let start = Instant::now();
    for i in 0..requests {
        match schedule::due(start, i, rate) {
            Some(due) if Instant::now() < due => tokio::time::sleep_until(due).await,
            Some(_) => {}
            // Due past the end of the clock: it never starts, nor does any after it. Ending the
            // run here reports what was sent rather than waiting forever.
            None => break,
        }
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (target, spec, tally) = (target.clone(), spec.clone(), tally.clone());
        tokio::spawn(async move {
            one(&target, &spec, &tally).await;
            drop(slot);
        });
    }
    // Every slot back means every request has ended.
    let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}
