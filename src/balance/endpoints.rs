//! The endpoint set that requests pick from, and the changes that replace it.

use super::endpoint::{Endpoint, Meter, MeterConfig, MeterSettings};
use super::ewma::{CostModel, PeakEwma};
use super::telemetry::BalancerMetrics;
use super::{Balance, BalanceBuilder, Change};
use crate::classify::Classify;
use crate::outlier::{Detector, HealthObserver};
use crate::primitives::clock::Clock;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use tokio::time::Instant;

/// An immutable view of the endpoint set: requests pick from it without holding any lock.
pub(crate) type Snapshot<K, S> = Arc<Endpoints<K, S>>;

/// The endpoint set, as one array of what a pick reads of each endpoint: a pick reaches each
/// candidate's meter one pointer away from this contiguous array, instead of hopping through
/// the endpoint first, and finds the endpoint it takes in the entry it already read. With it,
/// what every meter of the balancer shares, so that a pick reads it here rather than from each
/// meter.
pub(crate) struct Endpoints<K, S> {
    pub(crate) candidates: Box<[Candidate<K, S>]>,
    /// Every meter's clock: `now` is converted once per pick.
    pub(crate) clock: Clock,
    /// Every meter's cost model (the RTT's decay time, a miss's wait).
    pub(crate) model: CostModel,
}

/// One endpoint as a pick sees it: its meter, its weight (fixed for the snapshot: a new
/// weight comes with a new snapshot), and the endpoint, for the one taken. Aligned so that no
/// entry straddles two cache lines: one line per candidate compared.
#[repr(C, align(32))]
pub(crate) struct Candidate<K, S> {
    pub(crate) meter: Arc<Meter>,
    pub(crate) weight: f64,
    pub(crate) endpoint: Arc<Endpoint<K, S>>,
}

impl<K, S> Endpoints<K, S> {
    pub(super) fn new(all: Vec<Arc<Endpoint<K, S>>>, clock: Clock, model: CostModel) -> Self {
        Endpoints {
            candidates: all
                .into_iter()
                .map(|e| Candidate {
                    meter: e.meter.clone(),
                    weight: f64::from_bits(e.meter.weight.load(Ordering::Relaxed)),
                    endpoint: e,
                })
                .collect(),
            clock,
            model,
        }
    }

    /// Every endpoint, in order.
    pub(crate) fn all(&self) -> impl ExactSizeIterator<Item = &Arc<Endpoint<K, S>>> {
        self.candidates.iter().map(|c| &c.endpoint)
    }

    /// How many endpoints there are.
    pub(crate) fn len(&self) -> usize {
        self.candidates.len()
    }
}

pub(crate) struct Shared<K, S> {
    pub(super) endpoints: RwLock<Snapshot<K, S>>,
    /// Bumped after each new snapshot is stored: handles compare it with the one they cached.
    pub(super) generation: AtomicU64,
    /// Where every endpoint's clock starts: their times are nanoseconds since it, so that a
    /// pick converts `now` once for all the endpoints it looks at.
    pub(super) origin: Instant,
    pub(crate) detector: Detector,
    pub(crate) classifier: Arc<dyn Classify>,
    pub(crate) config: BalanceBuilder,
    pub(crate) fail_fast_events: AtomicU64,
    /// `None` when metrics are off.
    pub(crate) metrics: Option<BalancerMetrics>,
    /// What every meter of the balancer reads at the end of a request.
    pub(crate) meters: Arc<MeterSettings>,
}

impl<K, S> Shared<K, S> {
    pub(crate) fn snapshot(&self) -> Snapshot<K, S> {
        // Writers only swap the pointer, so a poisoned lock still holds a whole snapshot.
        self.endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Publishes every endpoint's EWMA gauge: run once per outlier sweep.
    pub(super) fn publish_rtt(&self, now: Instant) {
        if self.metrics.is_none() {
            return;
        }
        for endpoint in self.snapshot().all() {
            if let Some(metrics) = &endpoint.meter.metrics {
                metrics.rtt(endpoint.meter.rtt(now));
            }
        }
    }
}

impl<K, S> Balance<K, S>
where
    K: Clone + Eq + Hash + fmt::Display,
{
    /// Adds an endpoint, or replaces the service of the one with the same key, which keeps
    /// its measurements and outlier state.
    ///
    /// ```
    /// # use tower::service_fn;
    /// let balance = meshless::balance::Balance::builder().build();
    /// balance.insert(1, service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) }));
    /// ```
    pub fn insert(&self, key: K, service: S) {
        self.apply([Change::Insert(key, service)]);
    }

    /// Adds an endpoint with a static weight: it gets about `weight` times the traffic of a
    /// weight-1 endpoint of the same latency. Weights that are not finite and positive count
    /// as 1.
    ///
    /// ```
    /// # use tower::service_fn;
    /// let balance = meshless::balance::Balance::builder().build();
    /// balance.insert_weighted("big", service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) }), 4.0);
    /// ```
    pub fn insert_weighted(&self, key: K, service: S, weight: f64) {
        let weight = if weight.is_finite() && weight > 0.0 {
            weight
        } else {
            1.0
        };
        self.apply_weighted([(Change::Insert(key, service), weight)]);
    }

    /// Removes an endpoint. Requests already sent to it finish normally.
    ///
    /// ```
    /// # use tower::service_fn;
    /// let balance = meshless::balance::Balance::builder().build();
    /// balance.insert(1, service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) }));
    /// balance.remove(&1);
    /// assert!(balance.is_empty());
    /// ```
    pub fn remove(&self, key: &K) {
        self.apply([Change::Remove(key.clone())]);
    }

    /// Applies a batch of changes at once: one new snapshot of the endpoint set, however many
    /// changes.
    ///
    /// ```
    /// use meshless::balance::{Balance, Change};
    /// # use tower::service_fn;
    /// # let svc = service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let balance = Balance::builder().build();
    /// balance.apply([Change::Insert(1, svc.clone()), Change::Insert(2, svc), Change::Remove(1)]);
    /// assert_eq!(balance.len(), 1);
    /// ```
    pub fn apply(&self, changes: impl IntoIterator<Item = Change<K, S>>) {
        self.apply_weighted(changes.into_iter().map(|c| (c, 1.0)));
    }

    fn apply_weighted(&self, changes: impl IntoIterator<Item = (Change<K, S>, f64)>) {
        let shared = &*self.shared;
        let now = Instant::now();
        let mut slot = shared.endpoints.write().unwrap_or_else(|e| e.into_inner());
        let mut by_key: HashMap<K, Arc<Endpoint<K, S>>> =
            slot.all().map(|e| (e.key.clone(), e.clone())).collect();
        let mut order: Vec<K> = slot.all().map(|e| e.key.clone()).collect();
        // Where a new endpoint's estimate starts: the default, or the lowest latency measured
        // of the endpoints already here when that is lower, so that the new one is tried
        // rather than left idle beside peers measured faster than the guess (its first slower
        // answer raises it at once). As measured, not decayed: a peer idle for a while decays
        // towards zero, and a new endpoint starting there would take every request until its
        // first answer. Worked out once per batch.
        let start = slot
            .candidates
            .iter()
            .map(|c| c.meter.rtt.measured())
            .fold(super::ewma::nanos(shared.config.default_rtt), f64::min);
        for (change, weight) in changes {
            match change {
                Change::Insert(key, service) => {
                    // An endpoint inserted again (a discovery refresh, a new connection
                    // handle) keeps its measurements, ejection and quiet: only the service
                    // and the weight are new. Forgetting them would hand an ejected endpoint
                    // its traffic back.
                    let (meter, label) = match by_key.get(&key) {
                        Some(old) => {
                            old.meter.weight.store(weight.to_bits(), Ordering::Relaxed);
                            (old.meter.clone(), old.label.clone())
                        }
                        None => {
                            order.push(key.clone());
                            // The endpoint's label in metrics and spans, written once.
                            let label: Arc<str> = Arc::from(key.to_string());
                            let meter = Arc::new(self.meter(now, weight, &label, start));
                            // Swept from now on; weak, so that the meter still goes with
                            // its last endpoint and request.
                            let tracked: Weak<Meter> = Arc::downgrade(&meter);
                            shared.detector.track(tracked);
                            (meter, label)
                        }
                    };
                    let endpoint = Arc::new(Endpoint {
                        meter,
                        key: key.clone(),
                        service,
                        label,
                    });
                    by_key.insert(key, endpoint);
                }
                Change::Remove(key) => {
                    if let Some(old) = by_key.remove(&key) {
                        old.meter.health.retire();
                    }
                }
            }
        }
        // Taken out as they are listed, so that a key removed and inserted again in one batch
        // is listed once.
        let next: Vec<_> = order.iter().filter_map(|k| by_key.remove(k)).collect();
        let clock = Clock::new(shared.origin);
        *slot = Arc::new(Endpoints::new(next, clock, shared.config.cost_model()));
        // Still under the write lock: a handle that sees the new generation reads this
        // snapshot or a newer one.
        shared.generation.fetch_add(1, Ordering::Release);
    }

    /// A meter for a new endpoint, its estimate starting at `start_nanos`.
    fn meter(&self, now: Instant, weight: f64, label: &Arc<str>, start_nanos: f64) -> Meter {
        let shared = &*self.shared;
        let config = &shared.config;
        // The request handles first: they hold the label's series (see `forget_series`), so
        // that a removed namesake cannot drop them after the observer registered its own.
        let metrics = shared.metrics.as_ref().map(|m| {
            let (each, rest) = m.endpoint(label);
            rest.rtt(start_nanos);
            (each, rest)
        });
        let observer = HealthObserver::new(
            &config.observe,
            label.clone(),
            shared.metrics.as_ref().map(BalancerMetrics::by_state),
        );
        Meter::new(MeterConfig {
            rtt: PeakEwma::starting(start_nanos, shared.meters.clock.nanos(now)),
            health: shared.detector.join(now, observer),
            weight,
            metrics,
            settings: shared.meters.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_is_half_a_line() {
        // Two to a line, none across two: a candidate compared costs one line of the array,
        // and the endpoint taken is in the line its comparison read.
        assert_eq!(std::mem::size_of::<Candidate<u32, ()>>(), 32);
        assert_eq!(std::mem::align_of::<Candidate<u32, ()>>(), 32);
        assert_eq!(std::mem::offset_of!(Candidate<u32, ()>, endpoint), 16);
    }
}
