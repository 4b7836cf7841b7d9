//! The fleet: every endpoint of one balancer, the share that may be ejected, and the sweeps.

#[cfg(test)]
use super::Status;
#[cfg(test)]
use super::health::Health;
use super::health::{Endpoint, Tracked};
use super::telemetry::HealthObserver;
use super::{EjectReason, OutlierConfig};
use crate::primitives::clock::{self, Clock};
use crate::primitives::ladder;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::time::Instant;

/// `next_sweep` before the first endpoint registers: nothing to analyse yet.
const UNARMED: i64 = i64::MIN;

/// Watches the endpoints of one balancer: registers them, runs the periodic analysis, and
/// keeps the share of ejected endpoints within bounds. Cheap to clone (one `Arc`); clones
/// share everything.
///
/// Each endpoint gets its health ([`Endpoint`]) when it [`join`](Detector::join)s, and is
/// swept once [`track`](Detector::track)ed. What the balancer must do with them:
///
/// - Call [`sweep_if_due`](Detector::sweep_if_due) often (on every pick is fine: it is one
///   atomic load when nothing is due).
/// - When [`panicking`](Detector::panicking) is true, ignore `Admit::No` and treat every
///   endpoint as ready (fail open), but still call `admit` so that probes keep running.
/// - [`Endpoint::peek`] tells readiness without claiming the probe; [`Endpoint::admit`] claims it,
///   once the endpoint is chosen. A request that got `Admit::Probe` must be sent and reported
///   (or given back with [`Endpoint::release_probe`] if its caller cancels it); a probe that
///   never reports is replaced after the probe timeout.
/// - An ejected endpoint's `Status::Ejected` carries `until`: a timer for it wakes the
///   balancer when the endpoint can be probed.
/// - Report every finished request ([`Endpoint::report`]), with the latency up to the end of
///   the response body, and retire endpoints that discovery removes ([`Endpoint::retire`]).
#[derive(Clone)]
pub(crate) struct Detector {
    fleet: Arc<Fleet>,
}

pub(crate) struct Fleet {
    pub(crate) config: OutlierConfig,
    pub(crate) clock: Clock,
    pub(crate) timing: Timing,
    /// When the next sweep is due (µs on `clock`), or [`UNARMED`].
    next_sweep: AtomicI64,
    /// When the first endpoint registered, or [`UNARMED`]: endpoints that join within the
    /// first slow-start window are the founding batch and do not ramp.
    founded: AtomicI64,
    /// Endpoints registered and not retired.
    total: AtomicUsize,
    /// Endpoints ejected or in probation, plus ejections reserved but not yet swapped in.
    unavailable: AtomicUsize,
    /// Every registered endpoint, for sweeps and stats. Weak, so that dropping an endpoint's
    /// owner frees it; pruned as it goes.
    endpoints: Mutex<Vec<Weak<dyn Tracked>>>,
    /// Ejections by reason and sweeps run: rare events, counted for the detector's own tests
    /// (`stats_at`); the balancer's metrics count ejections on their own.
    ejections: [AtomicU64; 4],
    sweeps: AtomicU64,
}

/// The config's durations in microseconds, converted once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) interval: i64,
    pub(crate) base_ejection: i64,
    pub(crate) max_ejection: i64,
    pub(crate) probe_timeout: i64,
    pub(crate) slow_start: i64,
}

/// A snapshot of a [`Detector`]'s fleet, for tests: the balancer reads the same from its
/// endpoints' [`Endpoint::status`].
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct DetectorStats {
    /// Endpoints registered and not retired.
    pub(crate) endpoints: usize,
    /// Endpoints serving traffic (ramping ones included).
    pub(crate) active: usize,
    /// Endpoints ejected, whose ejection has not ended.
    pub(crate) ejected: usize,
    /// Endpoints whose ejection has ended, waiting for or serving their probe.
    pub(crate) probation: usize,
    /// Analysis sweeps run so far.
    pub(crate) sweeps: u64,
    /// Ejections so far, by reason.
    pub(crate) ejections: EjectionCounts,
}

/// Ejections so far by reason, re-ejections after failed probes included (under the reason
/// of the first ejection).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct EjectionCounts {
    /// After consecutive failures.
    pub(crate) consecutive_failures: u64,
    /// For a low success rate.
    pub(crate) success_rate: u64,
    /// For a high failure percentage.
    pub(crate) failure_percentage: u64,
    /// For high latency.
    pub(crate) latency: u64,
}

#[cfg(test)]
impl EjectionCounts {
    /// The count for one reason.
    pub(crate) fn get(&self, reason: EjectReason) -> u64 {
        match reason {
            EjectReason::ConsecutiveFailures => self.consecutive_failures,
            EjectReason::SuccessRate => self.success_rate,
            EjectReason::FailurePercentage => self.failure_percentage,
            EjectReason::Latency => self.latency,
        }
    }

    /// All reasons together.
    pub(crate) fn total(&self) -> u64 {
        self.consecutive_failures + self.success_rate + self.failure_percentage + self.latency
    }
}

#[cfg(test)]
impl Default for Detector {
    /// A detector with the documented defaults.
    fn default() -> Self {
        Detector::new(OutlierConfig::default())
    }
}

impl Detector {
    /// A detector for one balancer's fleet.
    pub(crate) fn new(config: OutlierConfig) -> Self {
        let timing = Timing {
            interval: clock::micros(config.interval),
            base_ejection: clock::micros(config.base_ejection_time),
            max_ejection: clock::micros(config.max_ejection_time),
            probe_timeout: clock::micros(config.probe_timeout),
            slow_start: clock::micros(config.slow_start),
        };
        Detector {
            fleet: Arc::new(Fleet {
                config,
                // Only an origin for timestamps: every decision uses the callers' `now`.
                clock: Clock::new(Instant::now()),
                timing,
                next_sweep: AtomicI64::new(UNARMED),
                founded: AtomicI64::new(UNARMED),
                total: AtomicUsize::new(0),
                unavailable: AtomicUsize::new(0),
                endpoints: Mutex::new(Vec::new()),
                ejections: Default::default(),
                sweeps: AtomicU64::new(0),
            }),
        }
    }

    /// The settings.
    #[cfg(test)]
    pub(crate) fn config(&self) -> &OutlierConfig {
        &self.fleet.config
    }

    /// Adds an endpoint to the fleet, active. The first registration starts the first
    /// analysis interval.
    ///
    /// A new endpoint ramps up over the slow-start window (like one returning from ejection)
    /// when the fleet is established: its first endpoint registered at least one slow-start
    /// window ago. Endpoints of the founding batch start at their full share, since ramping
    /// all of them would leave every endpoint with the same share anyway. Turn ramping of new
    /// endpoints off with
    /// [`slow_start_new_endpoints(false)`](super::OutlierConfigBuilder::slow_start_new_endpoints).
    #[cfg(test)]
    pub(crate) fn register(&self, now: Instant) -> Health {
        self.register_observed(now, HealthObserver::unnamed())
    }

    /// Adds an endpoint, as `register` does, with an observer told of its transitions (the
    /// balancer's: its metrics and named events).
    #[cfg(test)]
    pub(crate) fn register_observed(&self, now: Instant, observer: HealthObserver) -> Health {
        let health = Health::from(self.join(now, observer));
        let tracked: Weak<Endpoint> = Arc::downgrade(health.endpoint());
        self.track(tracked);
        health
    }

    /// A new endpoint's health, counted in the fleet from now on, to be [`track`]ed once it
    /// has a home: for the balancer, which keeps it inside its own record of the endpoint.
    ///
    /// [`track`]: Detector::track
    pub(crate) fn join(&self, now: Instant, observer: HealthObserver) -> Endpoint {
        let fleet = &self.fleet;
        let now_us = fleet.clock.micros(now);
        let founded = match fleet.founded.compare_exchange(
            UNARMED,
            now_us,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => now_us,
            Err(founded) => founded,
        };
        let _ = fleet.next_sweep.compare_exchange(
            UNARMED,
            now_us.saturating_add(fleet.timing.interval),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        let ramp = fleet.timing.slow_start > 0
            && fleet.config.slow_start_new_endpoints
            && now_us.saturating_sub(founded) >= fleet.timing.slow_start;
        let health = Endpoint::new(fleet.clone(), now_us, ramp, observer);
        fleet.total.fetch_add(1, Ordering::AcqRel);
        health
    }

    /// Puts an endpoint that [`join`](Detector::join)ed in the sweeps. Weak: dropping its
    /// last owner retires it and frees it.
    pub(crate) fn track(&self, endpoint: Weak<dyn Tracked>) {
        let fleet = &self.fleet;
        let mut endpoints = fleet.lock();
        // Prune retired endpoints now and then, so that churn without sweeps cannot grow the
        // list without bound (amortised: only once it is twice the live size).
        if endpoints.len() >= 2 * fleet.total.load(Ordering::Acquire) + 16 {
            endpoints.retain(|e| e.upgrade().is_some_and(|e| !e.health().is_retired()));
        }
        endpoints.push(endpoint);
    }

    /// Runs the interval analysis (success rate, failure percentage, latency) if an interval
    /// has passed since the last one; true if this call ran it. When nothing is due this is
    /// one atomic load; when something is, exactly one of the concurrent callers runs it.
    ///
    /// The analysis judges the endpoints that are active, over the requests they reported
    /// since the previous sweep, and ejects the outliers worst-first within the max ejected
    /// share. Ejections end on their own (see [`Endpoint::admit`]); sweeps never un-eject.
    pub(crate) fn sweep_if_due(&self, now: Instant) -> bool {
        let fleet = &self.fleet;
        let due = fleet.next_sweep.load(Ordering::Acquire);
        if due == UNARMED {
            return false;
        }
        let now_us = fleet.clock.micros(now);
        if now_us < due {
            return false;
        }
        // From now rather than from `due`: after a quiet spell, the next sweep still gets a
        // full interval of reports instead of running at once on an empty one.
        let next = now_us.saturating_add(fleet.timing.interval);
        if fleet
            .next_sweep
            .compare_exchange(due, next, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false; // another caller is running this sweep
        }
        self.sweep(now_us);
        true
    }

    /// When the next sweep is due, `None` while none is armed (no endpoint has joined): a
    /// caller may skip [`sweep_if_due`](Detector::sweep_if_due) until then.
    pub(crate) fn next_sweep(&self) -> Option<Instant> {
        let fleet = &self.fleet;
        match fleet.next_sweep.load(Ordering::Acquire) {
            UNARMED => None,
            due => Some(fleet.clock.instant(due)),
        }
    }

    fn sweep(&self, now_us: i64) {
        let fleet = &*self.fleet;
        fleet.sweeps.fetch_add(1, Ordering::Relaxed);
        let live = fleet.live();
        let mut judged = Vec::with_capacity(live.len());
        let mut windows = Vec::with_capacity(live.len());
        for endpoint in live.iter().map(|e| e.health()) {
            // Every window restarts, judged or not, so an endpoint back from ejection starts
            // its next interval clean.
            let window = endpoint.take_window();
            if endpoint.is_active() {
                judged.push(endpoint);
                windows.push(window);
            }
        }
        let config = &fleet.config;
        // Worst-first across policies too: when the share leaves room for only some
        // ejections, the endpoints that fail outright go before the merely worse or slower.
        let mut verdicts = Vec::with_capacity(3);
        if let Some(policy) = &config.failure_percentage {
            verdicts.push((EjectReason::FailurePercentage, policy.outliers(&windows)));
        }
        if let Some(policy) = &config.success_rate {
            verdicts.push((EjectReason::SuccessRate, policy.outliers(&windows)));
        }
        if let Some(policy) = &config.latency {
            verdicts.push((EjectReason::Latency, policy.outliers(&windows)));
        }
        for (reason, outliers) in verdicts {
            for i in outliers {
                if let Some(endpoint) = judged.get(i) {
                    // Refused when the share is used up or it is already ejected: both fine.
                    endpoint.try_eject(now_us, reason);
                }
            }
        }
    }

    /// True when fewer than the panic threshold's share of the endpoints are available (not
    /// ejected, not in probation). The balancer should then ignore ejections and use every
    /// endpoint (fail open), as Envoy does below its healthy panic threshold: a fleet that
    /// mostly looks broken more likely has a broken client, network or classifier than broken
    /// endpoints. False for an empty fleet.
    pub(crate) fn panicking(&self) -> bool {
        let fleet = &self.fleet;
        let total = fleet.total.load(Ordering::Acquire);
        let unavailable = fleet.unavailable.load(Ordering::Acquire);
        let available = total.saturating_sub(unavailable);
        total > 0 && (available as f64) < fleet.config.panic_threshold * total as f64
    }

    /// A snapshot of the fleet now. (Uses `Instant::now()`; see
    /// [`stats_at`](Detector::stats_at).)
    #[cfg(test)]
    pub(crate) fn stats(&self) -> DetectorStats {
        self.stats_at(Instant::now())
    }

    /// A snapshot of the fleet at `now`: which ejections have ended depends on the time.
    /// Walks every endpoint: for tests, not for the request path.
    #[cfg(test)]
    pub(crate) fn stats_at(&self, now: Instant) -> DetectorStats {
        let fleet = &*self.fleet;
        let now_us = fleet.clock.micros(now);
        let mut stats = DetectorStats {
            sweeps: fleet.sweeps.load(Ordering::Relaxed),
            ejections: fleet.ejection_counts(),
            ..DetectorStats::default()
        };
        for endpoint in fleet.live() {
            stats.endpoints += 1;
            match endpoint.health().status_at(now_us) {
                Status::Active => stats.active += 1,
                Status::Ejected { .. } => stats.ejected += 1,
                Status::Probation => stats.probation += 1,
                Status::Retired => stats.endpoints -= 1, // retired since `live` looked
            }
        }
        stats
    }

    #[cfg(test)]
    pub(crate) fn origin(&self) -> Instant {
        self.fleet.clock.instant(0)
    }

    #[cfg(test)]
    pub(crate) fn unavailable(&self) -> usize {
        self.fleet.unavailable.load(Ordering::Acquire)
    }

    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.fleet.total.load(Ordering::Acquire)
    }
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detector")
            .field("config", &self.fleet.config)
            .field("endpoints", &self.fleet.total.load(Ordering::Relaxed))
            .field(
                "unavailable",
                &self.fleet.unavailable.load(Ordering::Relaxed),
            )
            .finish()
    }
}

/// How many of `total` endpoints may be ejected at once: the share rounded down, but at
/// least one of two or more (as Envoy), so that small fleets can eject at all.
fn allowed_ejections(total: usize, share: f64) -> usize {
    // f64 → usize saturates; `share` is within [0, 1].
    let by_share = (share * total as f64).floor() as usize;
    if total >= 2 {
        by_share.max(1)
    } else {
        by_share
    }
}

impl Fleet {
    fn lock(&self) -> MutexGuard<'_, Vec<Weak<dyn Tracked>>> {
        // The list is consistent between statements, so a poisoned lock is safe to use.
        self.endpoints.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The endpoints registered and not retired; prunes the rest from the list.
    fn live(&self) -> Vec<Arc<dyn Tracked>> {
        let mut live = Vec::new();
        self.lock().retain(|weak| match weak.upgrade() {
            Some(endpoint) if !endpoint.health().is_retired() => {
                live.push(endpoint);
                true
            }
            _ => false,
        });
        live
    }

    /// Takes one ejection slot if the max ejected share has one free.
    pub(crate) fn reserve_ejection(&self) -> bool {
        let total = self.total.load(Ordering::Acquire);
        let allowed = allowed_ejections(total, self.config.max_ejected_share);
        self.unavailable
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < allowed).then_some(n + 1)
            })
            .is_ok()
    }

    /// Frees an ejection slot: the endpoint is active again, retired, or lost its swap.
    pub(crate) fn release(&self) {
        let _ = self
            .unavailable
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// An endpoint retired.
    pub(crate) fn leave(&self) {
        let _ = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// How long the `step`-th consecutive ejection of an endpoint lasts, in microseconds.
    pub(crate) fn ejection_length(&self, step: u32) -> i64 {
        ladder::ejection_micros(
            self.timing.base_ejection,
            self.timing.max_ejection,
            self.config.ejection_jitter,
            step,
        )
    }

    pub(crate) fn count_ejection(&self, reason: EjectReason) {
        if let Some(counter) = self.ejections.get(reason.bits() as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[cfg(test)]
    fn ejection_counts(&self) -> EjectionCounts {
        let get = |reason: EjectReason| {
            self.ejections
                .get(reason.bits() as usize)
                .map_or(0, |c| c.load(Ordering::Relaxed))
        };
        EjectionCounts {
            consecutive_failures: get(EjectReason::ConsecutiveFailures),
            success_rate: get(EjectReason::SuccessRate),
            failure_percentage: get(EjectReason::FailurePercentage),
            latency: get(EjectReason::Latency),
        }
    }
}
