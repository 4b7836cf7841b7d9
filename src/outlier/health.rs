//! One endpoint's health: the gate the balancer consults on every pick.

use super::consecutive::Consecutive;
use super::detector::Fleet;
use super::telemetry::{HealthObserver, State};
use super::{Admit, EjectReason, Status, Window, slow_start};
use crate::classify::{Class, Pushback, Reason};
use crate::primitives::clock;
use crate::primitives::gate::{self, ACTIVE, Claim, EJECTED, Gate, LONG_AGO, PROBING, RETIRED};
use crate::primitives::histogram::Histogram;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// An endpoint's health in an allocation of its own: what the detector's tests register. The
/// balancer keeps each [`Endpoint`] inside its own record of the endpoint instead (see
/// [`Tracked`]).
///
/// Dropping the last clone retires the endpoint, as [`retire`](Endpoint::retire) does.
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct Health {
    inner: Arc<Endpoint>,
}

/// The health of one endpoint: whether it may take requests, and what they did to it.
///
/// Safe to share between the balancer and every in-flight request.
/// [`admit`](Endpoint::admit), [`peek`](Endpoint::peek) and
/// [`slow_start_factor`](Endpoint::slow_start_factor), called on every pick, are one atomic
/// load for an active endpoint; [`report`](Endpoint::report), called on every response, is a
/// few relaxed atomic increments. Nothing takes a lock. Dropping it retires the endpoint.
///
/// `repr(C)`, in this order: the gate word first, so that an owner can place it on the cache
/// line of its own hot words (the balancer's meter ends its first line with it); then what
/// every report touches (the interval's outcomes, the failure run, the histogram's pointer,
/// the fleet's), within the next 64 bytes; then what only transitions touch.
#[repr(C)]
pub(crate) struct Endpoint {
    /// State, ejection reason and timestamp in one word, and its transitions: see [`gate`].
    gate: Gate,
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

#[cfg(test)]
impl Health {
    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.inner
    }
}

#[cfg(test)]
impl From<Endpoint> for Health {
    fn from(endpoint: Endpoint) -> Self {
        Health {
            inner: Arc::new(endpoint),
        }
    }
}

#[cfg(test)]
impl std::ops::Deref for Health {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.inner
    }
}

/// What the detector keeps of an endpoint: its health, wherever it lives (in a [`Health`] of
/// its own, or inside the balancer's record of the endpoint, next to the load words a pick
/// reads with its gate).
pub(crate) trait Tracked: Send + Sync {
    /// The endpoint's health.
    fn health(&self) -> &Endpoint;
}

impl Tracked for Endpoint {
    fn health(&self) -> &Endpoint {
        self
    }
}

impl Endpoint {
    /// A new endpoint's health, active; `ramp`: it starts its slow start at `now_us`. The
    /// detector's `join` makes it; it counts in the fleet from then on, and in sweeps once
    /// tracked.
    pub(crate) fn new(
        fleet: Arc<Fleet>,
        now_us: i64,
        ramp: bool,
        observer: HealthObserver,
    ) -> Self {
        let ramp_start = if ramp { now_us } else { LONG_AGO };
        let latency = Histogram::new(fleet.config.latency.is_some());
        observer.joined();
        Endpoint {
            gate: Gate::new(ramp_start),
            consecutive: Consecutive::default(),
            step: AtomicU32::new(0),
            active_since: AtomicI64::new(now_us),
            ejected_at: AtomicI64::new(LONG_AGO),
            ejections: AtomicU64::new(0),
            outcomes: AtomicU64::new(0),
            latency,
            observer,
            fleet,
        }
    }
    /// Whether a request may go to this endpoint now, claiming the probe if one is due.
    ///
    /// [`Admit::Probe`] goes to exactly one caller once an ejection has ended; every other
    /// caller gets [`Admit::No`] until that probe is reported (or, if it never is, until the
    /// probe timeout passes). A retired endpoint is no longer gated: [`Admit::Yes`].
    pub(crate) fn admit(&self, now: Instant) -> Admit {
        let word = self.gate.load();
        match gate::state(word) {
            ACTIVE | RETIRED => Admit::Yes,
            _ => self.claim(word, now),
        }
    }

    /// What [`admit`](Endpoint::admit) would answer now, without claiming the probe: for a
    /// balancer's readiness check, which must not use up the probe on an endpoint it may not
    /// pick.
    pub(crate) fn peek(&self, now: Instant) -> Admit {
        let e = self;
        let word = e.gate.load();
        match gate::state(word) {
            ACTIVE | RETIRED => Admit::Yes,
            _ if Gate::probe_due(
                word,
                e.fleet.clock.micros(now),
                e.fleet.timing.probe_timeout,
            ) =>
            {
                Admit::Probe
            }
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
    /// requests that started before the ejection are stragglers and change nothing. An answer
    /// that sheds load (429, or one with pushback) counts for nothing while the endpoint is
    /// active, and as a success for a probe: the endpoint is up.
    #[inline]
    pub(crate) fn report(&self, now: Instant, class: &Class, latency: Duration) {
        let e = self;
        // A server that says "slow down" (429, or any answer with pushback) is alive and has
        // said how long to stay away, which the balancer keeps as quiet: not a sign of ill
        // health, as Envoy's and linkerd's detectors count 5xx only. Counted, it would eject
        // the endpoints of a rate-limited fleet one after the other.
        // A "do not retry" says nothing of when to come back, and keeps no quiet: counted.
        let shed = class.is_failure()
            && (matches!(class.pushback(), Some(Pushback::After(_)))
                || class.reason() == Reason::Status(429));
        let failure = class.is_failure() && !shed;
        let word = e.gate.load();
        match gate::state(word) {
            ACTIVE if shed => {}
            ACTIVE => e.report_active(now, failure, latency),
            PROBING => e.report_probe(word, now, failure, latency),
            // Ejected: a request admitted before the ejection, which tells nothing new.
            // Retired: no longer tracked.
            _ => {}
        }
    }

    /// Gives back the probe admitted at `admitted` (the instant passed to
    /// [`admit`](Endpoint::admit)) when its request was cancelled by its caller: the cancellation
    /// says nothing of the endpoint, so it stays in probation and the next request becomes the
    /// probe at once, without waiting for the probe timeout. Does nothing if that probe was
    /// already replaced or decided.
    pub(crate) fn release_probe(&self, admitted: Instant) {
        let e = self;
        let admitted_us = e.fleet.clock.micros(admitted);
        // Still probing, but as if the probe had been lost long ago: the next `admit` claims a
        // new one. The state does not change, so no transition is reported; a probe decided or
        // replaced meanwhile is left alone.
        let _ = e
            .gate
            .release_probe(admitted_us, e.fleet.timing.probe_timeout);
    }

    /// The share of its normal traffic the endpoint should get, in `(0, 1]`: rising linearly
    /// from the slow-start floor to 1 over the slow-start window after the endpoint returns
    /// from ejection (or joins an established fleet), 1 otherwise. An ejected endpoint or one
    /// in probation gets the floor.
    #[inline]
    pub(crate) fn slow_start_factor(&self, now: Instant) -> f64 {
        let e = self;
        let word = e.gate.load();
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
        let e = self;
        e.status_at(e.fleet.clock.micros(now))
    }

    /// How many times this endpoint has been ejected, re-ejections after failed probes
    /// included.
    pub(crate) fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.gate.load();
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

#[cfg(test)]
impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.inner, f)
    }
}

impl Endpoint {
    pub(crate) fn is_active(&self) -> bool {
        gate::state(self.gate.load()) == ACTIVE
    }

    pub(crate) fn is_retired(&self) -> bool {
        gate::state(self.gate.load()) == RETIRED
    }

    pub(crate) fn status_at(&self, now_us: i64) -> Status {
        let word = self.gate.load();
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

    fn claim(&self, word: u64, now: Instant) -> Admit {
        let now_us = self.fleet.clock.micros(now);
        match self
            .gate
            .claim(word, now_us, self.fleet.timing.probe_timeout)
        {
            Claim::Pass => Admit::Yes,
            Claim::Shut => Admit::No,
            Claim::Probe { first } => {
                // A lost probe replaced (`first` false) is no transition: nothing to report.
                if first {
                    self.observer.probing();
                }
                Admit::Probe
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
            if self.gate.probe_failed(word, until) {
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
            if self.gate.probe_succeeded(word, ramp_start) {
                self.consecutive.reset();
                fleet.release();
                self.observer.returned();
            }
        }
    }

    /// Ejects an active endpoint, if the fleet's max ejected share allows. True if it did.
    pub(crate) fn try_eject(&self, now_us: i64, reason: EjectReason) -> bool {
        let word = self.gate.load();
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
        if !self.gate.eject(word, reason.bits(), until) {
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
        let old = self.gate.retire();
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
#[path = "health_tests.rs"]
mod tests;
