//! One endpoint's health: the gate the balancer consults on every pick.

use super::consecutive::Consecutive;
use super::detector::Fleet;
use super::telemetry::{HealthObserver, State};
use super::{Admit, EjectReason, Status, Window, slow_start};
use crate::classify::Class;
use crate::primitives::clock;
use crate::primitives::gate::{self, ACTIVE, EJECTED, LONG_AGO, PROBING, RETIRED};
use crate::primitives::histogram::Histogram;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The health of one endpoint: whether it may take requests, and what they did to it.
///
/// Cheap to clone (one `Arc`), and safe to share between the balancer and every in-flight
/// request. [`admit`](Health::admit) and [`slow_start_factor`](Health::slow_start_factor), called
/// on every pick, are one atomic load for an active endpoint; [`report`](Health::report), called
/// on every response, is a few relaxed atomic increments. Nothing takes a lock.
///
/// Dropping the last clone retires the endpoint, as [`retire`](Health::retire) does.
#[derive(Clone)]
pub(crate) struct Health {
    inner: Arc<Endpoint>,
}

/// `repr(C)`, in this order: what every pick and every report touch (the gate word, the
/// interval's outcomes, the failure run, the histogram's pointer, the fleet's) shares one cache
/// line with the reference counts, so that a balancer over thousands of endpoints pays one miss
/// per endpoint here, not one per field.
#[repr(C)]
pub(crate) struct Endpoint {
    /// State, ejection reason and timestamp in one word: see [`gate`].
    gate: AtomicU64,
    /// This interval's outcomes: failures in the high half, requests in the low half, so that
    /// a report is one `fetch_add`. (A half overflows after four billion requests in one
    /// interval, which no endpoint serves.)
    outcomes: AtomicU64,
    consecutive: Consecutive,
    /// The next step of the ejection backoff ladder.
    step: AtomicU32,
    latency: Histogram,
    fleet: Arc<Fleet>,
    /// When the endpoint last became active (registered, or returned from ejection): the
    /// ladder starts over once it has been active for `max_ejection_time`.
    active_since: AtomicI64,
    /// When the current ejection began: reports of requests that started earlier are
    /// stragglers, not the probe's outcome.
    ejected_at: AtomicI64,
    ejections: AtomicU64,
    /// Told of every transition: metrics and tracing events.
    observer: HealthObserver,
}

impl Health {
    pub(crate) fn new(
        fleet: Arc<Fleet>,
        now_us: i64,
        ramp: bool,
        observer: HealthObserver,
    ) -> Self {
        let ramp_start = if ramp { now_us } else { LONG_AGO };
        let latency = Histogram::new(fleet.config.latency.is_some());
        observer.joined();
        Health {
            inner: Arc::new(Endpoint {
                gate: AtomicU64::new(active(ramp_start)),
                consecutive: Consecutive::default(),
                step: AtomicU32::new(0),
                active_since: AtomicI64::new(now_us),
                ejected_at: AtomicI64::new(LONG_AGO),
                ejections: AtomicU64::new(0),
                outcomes: AtomicU64::new(0),
                latency,
                observer,
                fleet,
            }),
        }
    }

    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.inner
    }

    /// Whether a request may go to this endpoint now, claiming the probe if one is due.
    ///
    /// [`Admit::Probe`] goes to exactly one caller once an ejection has ended; every other
    /// caller gets [`Admit::No`] until that probe is reported (or, if it never is, until the
    /// probe timeout passes). A retired endpoint is no longer gated: [`Admit::Yes`].
    pub(crate) fn admit(&self, now: Instant) -> Admit {
        let word = self.inner.gate.load(Ordering::Acquire);
        match gate::state(word) {
            ACTIVE | RETIRED => Admit::Yes,
            _ => self.inner.claim(word, now),
        }
    }

    /// What [`admit`](Health::admit) would answer now, without claiming the probe: for a
    /// balancer's readiness check, which must not use up the probe on an endpoint it may not
    /// pick.
    pub(crate) fn peek(&self, now: Instant) -> Admit {
        let e = &*self.inner;
        let word = e.gate.load(Ordering::Acquire);
        match gate::state(word) {
            ACTIVE | RETIRED => Admit::Yes,
            _ if e.probe_due(word, e.fleet.clock.micros(now)) => Admit::Probe,
            _ => Admit::No,
        }
    }

    /// Records how a request to this endpoint ended: `class` from the classifier, `latency`
    /// from sending the request to the end of the response body. Report every request,
    /// whatever its [`Admit`], including probes.
    ///
    /// While the endpoint is active, this feeds the consecutive-failure run (which may eject
    /// it on the spot) and the interval's counts. While it is in probation, the first report of
    /// a request that started after the ejection decides: success returns the endpoint to
    /// active (ramping up), failure ejects it again for the next backoff step. Reports of
    /// requests that started before the ejection are stragglers and change nothing.
    #[inline]
    pub(crate) fn report(&self, now: Instant, class: &Class, latency: Duration) {
        let e = &*self.inner;
        let failure = class.is_failure();
        let word = e.gate.load(Ordering::Acquire);
        match gate::state(word) {
            ACTIVE => e.report_active(now, failure, latency),
            PROBING => e.report_probe(word, now, failure, latency),
            // Ejected: a request admitted before the ejection, which tells nothing new.
            // Retired: no longer tracked.
            _ => {}
        }
    }

    /// Gives back the probe admitted at `admitted` (the instant passed to
    /// [`admit`](Health::admit)) when its request was cancelled by its caller: the cancellation
    /// says nothing of the endpoint, so it stays in probation and the next request becomes the
    /// probe at once, without waiting for the probe timeout. Does nothing if that probe was
    /// already replaced or decided.
    pub(crate) fn release_probe(&self, admitted: Instant) {
        let e = &*self.inner;
        let word = e.gate.load(Ordering::Acquire);
        let admitted_us = e.fleet.clock.micros(admitted);
        if gate::state(word) != PROBING || gate::time(word) != admitted_us {
            return;
        }
        // Still probing, but as if the probe had been lost long ago: the next `admit` claims a
        // new one. The state does not change, so no transition is reported.
        let due = admitted_us.saturating_sub(e.fleet.timing.probe_timeout);
        let released = gate::pack(PROBING, gate::reason(word), due);
        // Losing the race means the probe was decided or replaced meanwhile: nothing to do.
        let _ = e
            .gate
            .compare_exchange(word, released, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The share of its normal traffic the endpoint should get, in `(0, 1]`: rising linearly
    /// from the slow-start floor to 1 over the slow-start window after the endpoint returns
    /// from ejection (or joins an established fleet), 1 otherwise. An ejected endpoint or one
    /// in probation gets the floor.
    #[inline]
    pub(crate) fn slow_start_factor(&self, now: Instant) -> f64 {
        let e = &*self.inner;
        let word = e.gate.load(Ordering::Acquire);
        match gate::state(word) {
            ACTIVE => {
                let since = gate::time(word);
                if since == LONG_AGO {
                    // The common answer, from the gate word alone: the fleet's settings may sit
                    // on another cache line, a miss per pick at thousands of endpoints.
                    return 1.0;
                }
                let f = &*e.fleet;
                let elapsed = f.clock.micros(now).saturating_sub(since);
                slow_start::factor(elapsed, f.timing.slow_start, f.config.slow_start_floor)
            }
            RETIRED => 1.0,
            _ => e.fleet.config.slow_start_floor,
        }
    }

    /// Where the endpoint stands at `now`.
    pub(crate) fn status(&self, now: Instant) -> Status {
        let e = &*self.inner;
        e.status_at(e.fleet.clock.micros(now))
    }

    /// How many times this endpoint has been ejected, re-ejections after failed probes
    /// included.
    pub(crate) fn ejections(&self) -> u64 {
        self.inner.ejections.load(Ordering::Relaxed)
    }

    /// Removes the endpoint from the detector's accounting, when discovery drops it: it no
    /// longer counts towards the fleet's size, its ejected share or its sweeps, and it is no
    /// longer gated. Idempotent; dropping the last clone does the same.
    pub(crate) fn retire(&self) {
        self.inner.retire();
    }
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.inner.gate.load(Ordering::Acquire);
        let state = match gate::state(word) {
            ACTIVE => "active",
            EJECTED => "ejected",
            PROBING => "probing",
            _ => "retired",
        };
        f.debug_struct("Health")
            .field("state", &state)
            .field("ejections", &self.ejections())
            .finish()
    }
}

/// The state word of an active endpoint whose ramp started at `ramp_start`.
fn active(ramp_start: i64) -> u64 {
    // The reason bits mean nothing while active.
    gate::pack(ACTIVE, EjectReason::ConsecutiveFailures.bits(), ramp_start)
}

impl Endpoint {
    pub(crate) fn is_active(&self) -> bool {
        gate::state(self.gate.load(Ordering::Acquire)) == ACTIVE
    }

    pub(crate) fn is_retired(&self) -> bool {
        gate::state(self.gate.load(Ordering::Acquire)) == RETIRED
    }

    pub(crate) fn status_at(&self, now_us: i64) -> Status {
        let word = self.gate.load(Ordering::Acquire);
        match gate::state(word) {
            ACTIVE => Status::Active,
            EJECTED if now_us < gate::time(word) => Status::Ejected {
                until: self.fleet.clock.instant(gate::time(word)),
                reason: EjectReason::from_bits(gate::reason(word)),
            },
            EJECTED | PROBING => Status::Probation,
            _ => Status::Retired,
        }
    }

    /// Whether a probe may be claimed from state `word` at `now_us`: the ejection is over,
    /// and no probe was admitted within the probe timeout.
    fn probe_due(&self, word: u64, now_us: i64) -> bool {
        match gate::state(word) {
            EJECTED => now_us >= gate::time(word),
            PROBING => now_us >= gate::time(word).saturating_add(self.fleet.timing.probe_timeout),
            _ => false,
        }
    }

    fn claim(&self, mut word: u64, now: Instant) -> Admit {
        let now_us = self.fleet.clock.micros(now);
        loop {
            if matches!(gate::state(word), ACTIVE | RETIRED) {
                return Admit::Yes;
            }
            if !self.probe_due(word, now_us) {
                return Admit::No;
            }
            // Only the caller whose swap succeeds gets the probe; the others see PROBING.
            let probing = gate::pack(PROBING, gate::reason(word), now_us);
            match self
                .gate
                .compare_exchange(word, probing, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // From PROBING, a lost probe is replaced: the state does not change.
                    if gate::state(word) == EJECTED {
                        self.observer.probing();
                    }
                    return Admit::Probe;
                }
                Err(actual) => word = actual,
            }
        }
    }

    #[inline]
    fn report_active(&self, now: Instant, failure: bool, latency: Duration) {
        self.outcomes
            .fetch_add(1 | (u64::from(failure) << 32), Ordering::Relaxed);
        self.latency.record(latency);
        if !failure {
            self.consecutive.success();
            return;
        }
        if let Some(threshold) = self.fleet.config.consecutive_failures {
            if self.consecutive.failure(threshold) {
                let now_us = self.fleet.clock.micros(now);
                self.try_eject(now_us, EjectReason::ConsecutiveFailures);
            }
        }
    }

    fn report_probe(&self, word: u64, now: Instant, failure: bool, latency: Duration) {
        let fleet = &*self.fleet;
        let now_us = fleet.clock.micros(now);
        let started = now_us.saturating_sub(clock::micros(latency));
        if started < self.ejected_at.load(Ordering::Acquire) {
            return; // a straggler from before the ejection, not the probe
        }
        if failure {
            let step = self.step.load(Ordering::Relaxed);
            let until = now_us.saturating_add(fleet.ejection_length(step));
            let reason = EjectReason::from_bits(gate::reason(word));
            let ejected = gate::pack(EJECTED, reason.bits(), until);
            if self
                .gate
                .compare_exchange(word, ejected, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Still unavailable: the fleet's count does not change.
                self.ejected(now_us, step, reason);
                self.observer
                    .ejected(reason, micros_between(now_us, until), true);
            }
        } else {
            let ramp_start = if fleet.timing.slow_start > 0 {
                now_us
            } else {
                LONG_AGO
            };
            // Published by the swap below, for the ladder reset in `try_eject`.
            self.active_since.store(now_us, Ordering::Release);
            if self
                .gate
                .compare_exchange(
                    word,
                    active(ramp_start),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                self.consecutive.reset();
                fleet.release();
                self.observer.returned();
            }
        }
    }

    /// Ejects an active endpoint, if the fleet's max ejected share allows. True if it did.
    pub(crate) fn try_eject(&self, now_us: i64, reason: EjectReason) -> bool {
        let word = self.gate.load(Ordering::Acquire);
        if gate::state(word) != ACTIVE {
            return false;
        }
        // Reserve the fleet's slot first, so that concurrent ejections of different endpoints
        // can never exceed the share between their checks and their swaps.
        if !self.fleet.reserve_ejection() {
            return false;
        }
        let mut step = self.step.load(Ordering::Relaxed);
        let active_for = now_us.saturating_sub(self.active_since.load(Ordering::Acquire));
        if active_for >= self.fleet.timing.max_ejection {
            step = 0; // it served long enough unejected: this is a new incident
        }
        let until = now_us.saturating_add(self.fleet.ejection_length(step));
        let ejected = gate::pack(EJECTED, reason.bits(), until);
        if self
            .gate
            .compare_exchange(word, ejected, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            self.fleet.release(); // someone else ejected or retired it first
            return false;
        }
        self.ejected(now_us, step, reason);
        self.observer
            .ejected(reason, micros_between(now_us, until), false);
        true
    }

    /// Bookkeeping after this thread's swap ejected the endpoint using ladder step `step`.
    fn ejected(&self, now_us: i64, step: u32, reason: EjectReason) {
        self.step.store(step.saturating_add(1), Ordering::Relaxed);
        self.ejected_at.store(now_us, Ordering::Release);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        self.consecutive.reset();
        // Forget this interval's reports: they led to this ejection, and must not judge the
        // endpoint a second time when the next sweep finds it back (nothing is recorded while
        // it is out, so its next window holds only what it did after its return).
        self.outcomes.store(0, Ordering::Relaxed);
        self.latency.clear();
        self.fleet.count_ejection(reason);
    }

    /// This interval's counts and median latency; starts the next interval.
    pub(crate) fn take_window(&self) -> Window {
        let outcomes = self.outcomes.swap(0, Ordering::Relaxed);
        Window {
            requests: outcomes & 0xFFFF_FFFF,
            failures: outcomes >> 32,
            median_micros: self.latency.take_median(),
        }
    }

    pub(crate) fn retire(&self) {
        let retired = gate::pack(RETIRED, EjectReason::ConsecutiveFailures.bits(), 0);
        let old = self.gate.swap(retired, Ordering::AcqRel);
        match gate::state(old) {
            RETIRED => {}
            state => {
                if state != ACTIVE {
                    self.fleet.release();
                }
                self.fleet.leave();
                self.observer.left(match state {
                    ACTIVE => State::Active,
                    EJECTED => State::Ejected,
                    _ => State::Probation,
                });
            }
        }
    }
}

/// The time from `from` to `to` (microseconds on the fleet's clock), zero if `to` is earlier.
fn micros_between(from: i64, to: i64) -> Duration {
    Duration::from_micros(u64::try_from(to.saturating_sub(from)).unwrap_or(0))
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.retire();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Reason, Retryable};
    use crate::outlier::{Detector, OutlierConfig};

    const SEC: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn fail() -> Class {
        Class::failure(Reason::Status(503), Retryable::IfIdempotent)
    }

    /// Only the consecutive-failure policy, so that the tests below see nothing else.
    fn consecutive_only() -> OutlierConfig {
        OutlierConfig::builder()
            .success_rate(None)
            .failure_percentage(None)
            .latency(None)
            .build()
            .unwrap()
    }

    fn fleet(config: OutlierConfig, n: usize) -> (Detector, Vec<Health>, Instant) {
        let detector = Detector::new(config);
        // The detector's own origin: offsets from it are whole microseconds, so ejection
        // lengths read back exactly.
        let t0 = detector.origin();
        let endpoints = (0..n).map(|_| detector.register(t0)).collect();
        (detector, endpoints, t0)
    }

    fn until(h: &Health, now: Instant) -> Instant {
        match h.status(now) {
            Status::Ejected { until, .. } => until,
            other => panic!("not ejected: {other:?}"),
        }
    }

    /// Fails `h` until it is ejected; the ejection's length.
    fn eject(h: &Health, now: Instant) -> Duration {
        for _ in 0..5 {
            h.report(now, &fail(), MS);
        }
        until(h, now) - now
    }

    #[test]
    fn ejects_after_exactly_n_consecutive_failures() {
        let (_d, eps, t0) = fleet(consecutive_only(), 3);
        let h = &eps[0];
        for _ in 0..4 {
            h.report(t0, &fail(), MS);
        }
        assert_eq!(h.status(t0), Status::Active, "4 failures are not enough");
        assert_eq!(h.admit(t0), Admit::Yes);
        h.report(t0, &fail(), MS);
        assert!(matches!(
            h.status(t0),
            Status::Ejected {
                reason: EjectReason::ConsecutiveFailures,
                ..
            }
        ));
        assert_eq!(h.admit(t0), Admit::No);
        assert_eq!(h.ejections(), 1);
    }

    #[test]
    fn a_success_resets_the_run() {
        let (_d, eps, t0) = fleet(consecutive_only(), 3);
        let h = &eps[0];
        for _ in 0..3 {
            for _ in 0..4 {
                h.report(t0, &fail(), MS);
            }
            h.report(t0, &Class::success(), MS);
        }
        assert_eq!(h.status(t0), Status::Active);
        assert_eq!(h.ejections(), 0);
    }

    #[test]
    fn ejections_grow_from_one_to_sixty_seconds_within_the_jitter() {
        let (_d, eps, t0) = fleet(consecutive_only(), 3);
        let h = &eps[0];
        let mut now = t0;
        let mut first = eject(h, now);
        assert!((SEC..=SEC * 3 / 2).contains(&first), "{first:?}");
        for step in 1..10u32 {
            now += first;
            assert_eq!(h.admit(now), Admit::Probe);
            h.report(now, &fail(), MS);
            let length = until(h, now) - now;
            let nominal = (SEC * 2u32.pow(step)).min(60 * SEC);
            let low = (nominal / 2).max(SEC);
            let high = (nominal * 3 / 2).min(60 * SEC);
            assert!(
                (low..=high).contains(&length),
                "step {step}: {length:?} not in {low:?}..={high:?}"
            );
            first = length;
        }
        assert_eq!(h.ejections(), 10);
    }

    #[test]
    fn exactly_one_probe_is_admitted_after_the_ejection() {
        let (_d, eps, t0) = fleet(consecutive_only(), 3);
        let h = &eps[0];
        let length = eject(h, t0);
        assert_eq!(h.admit(t0 + length - MS), Admit::No, "still ejected");
        let later = t0 + length;
        assert_eq!(h.status(later), Status::Probation);
        assert_eq!(h.peek(later), Admit::Probe);
        assert_eq!(h.peek(later), Admit::Probe, "peeking claims nothing");
        assert_eq!(h.admit(later), Admit::Probe);
        for _ in 0..10 {
            assert_eq!(h.admit(later + MS), Admit::No);
        }
        assert_eq!(h.peek(later), Admit::No);
        assert_eq!(h.status(later), Status::Probation);
    }

    #[test]
    fn racing_threads_get_one_probe() {
        for _ in 0..20 {
            let (_d, eps, t0) = fleet(consecutive_only(), 3);
            let h = &eps[0];
            let later = t0 + eject(h, t0);
            let barrier = std::sync::Barrier::new(4);
            let probes: usize = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            (0..100).filter(|_| h.admit(later) == Admit::Probe).count()
                        })
                    })
                    .collect();
                handles.into_iter().map(|t| t.join().unwrap()).sum()
            });
            assert_eq!(probes, 1);
        }
    }

    #[test]
    fn a_successful_probe_returns_the_endpoint_with_a_ramp() {
        let (d, eps, t0) = fleet(consecutive_only(), 3);
        let h = &eps[0];
        let back = t0 + eject(h, t0);
        assert_eq!(h.slow_start_factor(t0), 0.1, "ejected: the floor");
        assert_eq!(h.admit(back), Admit::Probe);
        h.report(back, &Class::success(), MS);
        assert_eq!(h.status(back), Status::Active);
        assert_eq!(h.admit(back), Admit::Yes);
        assert_eq!(h.slow_start_factor(back), 0.1);
        let halfway = h.slow_start_factor(back + 5 * SEC);
        assert!((halfway - 0.55).abs() < 1e-6, "{halfway}");
        assert_eq!(h.slow_start_factor(back + 10 * SEC), 1.0);
        assert_eq!(d.stats_at(back).ejected, 0);
        assert!(!d.panicking());
    }

    #[test]
    fn a_failed_probe_ejects_again_for_longer() {
        let config = OutlierConfig::builder()
            .ejection_jitter(0.0)
            .success_rate(None)
            .failure_percentage(None)
            .latency(None)
            .build()
            .unwrap();
        let (_d, eps, t0) = fleet(config, 3);
        let h = &eps[0];
        assert_eq!(eject(h, t0), SEC);
        let probe = t0 + SEC;
        assert_eq!(h.admit(probe), Admit::Probe);
        h.report(probe, &fail(), MS);
        assert_eq!(until(h, probe) - probe, 2 * SEC);
        assert_eq!(h.admit(probe + SEC), Admit::No);
        let probe = probe + 2 * SEC;
        assert_eq!(h.admit(probe), Admit::Probe);
        h.report(probe, &fail(), MS);
        assert_eq!(until(h, probe) - probe, 4 * SEC);
    }

    #[test]
    fn stragglers_do_not_decide_the_probation() {
        let (_d, eps, t0) = fleet(consecutive_only(), 3);
        let h = &eps[0];
        let back = t0 + eject(h, t0);
        assert_eq!(h.admit(back), Admit::Probe);
        // A request sent just before the ejection ends now: not the probe.
        let straggler = back + MS - t0 + MS;
        h.report(back + MS, &Class::success(), straggler);
        h.report(back + MS, &fail(), straggler);
        assert_eq!(h.status(back + MS), Status::Probation);
        // Reports while ejected change nothing either.
        h.report(t0, &Class::success(), MS);
        // The probe itself decides.
        h.report(back + 2 * MS, &Class::success(), MS);
        assert_eq!(h.status(back + 2 * MS), Status::Active);
    }

    #[test]
    fn a_released_probe_is_replaced_at_once() {
        let (_d, hs, t0) = fleet(consecutive_only(), 3);
        let h = &hs[0];
        let back = t0 + eject(h, t0);
        assert_eq!(h.admit(back), Admit::Probe);
        assert_eq!(h.admit(back + MS), Admit::No);
        // A release naming another admission (a replaced probe) changes nothing.
        h.release_probe(back + MS);
        assert_eq!(h.admit(back + 2 * MS), Admit::No);
        h.release_probe(back);
        assert_eq!(h.status(back + 2 * MS), Status::Probation);
        assert_eq!(h.admit(back + 2 * MS), Admit::Probe);
        assert_eq!(h.admit(back + 3 * MS), Admit::No);
        assert_eq!(h.ejections(), 1, "released, not re-ejected");
    }

    #[test]
    fn a_lost_probe_is_replaced_after_the_probe_timeout() {
        let (_d, eps, t0) = fleet(consecutive_only(), 3);
        let h = &eps[0];
        let back = t0 + eject(h, t0);
        assert_eq!(h.admit(back), Admit::Probe);
        assert_eq!(h.admit(back + 10 * SEC - MS), Admit::No);
        assert_eq!(h.admit(back + 10 * SEC), Admit::Probe);
        assert_eq!(h.admit(back + 10 * SEC), Admit::No);
    }

    #[test]
    fn the_backoff_starts_over_after_a_long_healthy_run() {
        let config = OutlierConfig::builder()
            .ejection_jitter(0.0)
            .success_rate(None)
            .failure_percentage(None)
            .latency(None)
            .build()
            .unwrap();
        let (_d, eps, t0) = fleet(config, 3);
        let h = &eps[0];
        // Ejected, back, ejected again soon after: the second ejection is one step up.
        assert_eq!(eject(h, t0), SEC);
        let back = t0 + SEC;
        assert_eq!(h.admit(back), Admit::Probe);
        h.report(back, &Class::success(), MS);
        let soon = back + 30 * SEC;
        assert_eq!(eject(h, soon), 2 * SEC);
        // After 60 s active, the ladder starts over.
        let back = soon + 2 * SEC;
        assert_eq!(h.admit(back), Admit::Probe);
        h.report(back, &Class::success(), MS);
        assert_eq!(eject(h, back + 60 * SEC), SEC);
    }

    #[test]
    fn new_endpoints_ramp_once_the_fleet_is_established() {
        let (d, eps, t0) = fleet(OutlierConfig::default(), 2);
        assert_eq!(
            eps[1].slow_start_factor(t0),
            1.0,
            "the first batch never ramps"
        );
        let early = d.register(t0 + 5 * SEC);
        assert_eq!(early.slow_start_factor(t0 + 5 * SEC), 1.0);
        let late = d.register(t0 + 10 * SEC);
        assert_eq!(late.slow_start_factor(t0 + 10 * SEC), 0.1);
        assert_eq!(late.slow_start_factor(t0 + 20 * SEC), 1.0);
        let config = OutlierConfig::builder()
            .slow_start_new_endpoints(false)
            .build()
            .unwrap();
        let (d, _eps, t0) = fleet(config, 2);
        assert_eq!(
            d.register(t0 + 60 * SEC).slow_start_factor(t0 + 60 * SEC),
            1.0
        );
    }

    #[test]
    fn without_slow_start_a_returning_endpoint_gets_its_full_share() {
        let config = OutlierConfig::builder()
            .slow_start(Duration::ZERO)
            .build()
            .unwrap();
        let (_d, eps, t0) = fleet(config, 3);
        let h = &eps[0];
        let back = t0 + eject(h, t0);
        assert_eq!(h.admit(back), Admit::Probe);
        h.report(back, &Class::success(), MS);
        assert_eq!(h.slow_start_factor(back), 1.0);
    }

    #[test]
    fn a_lone_endpoint_is_never_ejected() {
        let (d, eps, t0) = fleet(consecutive_only(), 1);
        for _ in 0..100 {
            eps[0].report(t0, &fail(), MS);
        }
        assert_eq!(eps[0].status(t0), Status::Active);
        assert_eq!(d.stats_at(t0).ejected, 0);
    }

    #[test]
    fn retiring_releases_the_endpoint() {
        let (d, eps, t0) = fleet(consecutive_only(), 3);
        eject(&eps[0], t0);
        assert_eq!(d.stats_at(t0).ejected, 1);
        eps[0].retire();
        eps[0].retire(); // idempotent
        assert_eq!(eps[0].status(t0), Status::Retired);
        assert_eq!(eps[0].admit(t0), Admit::Yes, "no longer gated");
        eps[0].report(t0, &fail(), MS);
        assert_eq!(eps[0].slow_start_factor(t0), 1.0);
        let stats = d.stats_at(t0);
        assert_eq!((stats.endpoints, stats.ejected, stats.active), (2, 0, 2));
        // The freed slot lets another endpoint go (2 endpoints: one may be ejected).
        eject(&eps[1], t0);
        assert_eq!(d.stats_at(t0).ejected, 1);
        // Dropping the last clone retires too.
        drop(eps);
        assert_eq!(d.stats_at(t0).endpoints, 0);
        assert!(!d.panicking());
    }

    #[test]
    fn debug_names_the_state() {
        let (_d, eps, t0) = fleet(consecutive_only(), 3);
        assert!(format!("{:?}", eps[0]).contains("active"));
        eject(&eps[0], t0);
        assert!(format!("{:?}", eps[0]).contains("ejected"));
    }
}
