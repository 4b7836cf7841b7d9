//! The permits: a count of requests in flight against the limit, a FIFO of waiters when
//! waiting is allowed, and the algorithm that moves the limit.

use super::adaptive::{Aimd, Gradient, Sample};
use super::config::{Algorithm, LimitConfig};
use super::telemetry::Telemetry;
use crate::observe::Settings;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// What moves the limit.
pub(crate) enum Controller {
    Fixed,
    Gradient(Gradient),
    Aimd(Aimd),
}

/// State shared by a layer, its services, their futures and their bodies.
pub(crate) struct Shared {
    in_flight: AtomicU32,
    limit: AtomicU32,
    /// Waiters in the queue (some may have given up); read before taking a permit so that no
    /// newcomer overtakes them.
    waiting: AtomicU32,
    rejected: AtomicU64,
    pub(crate) max_wait: Duration,
    /// Whether requests may wait for a permit: `max_wait` allows it, or the limit is adaptive
    /// (which queues while it is still learning, see [`Shared::learning`]).
    queues: bool,
    queue: Mutex<VecDeque<oneshot::Sender<()>>>,
    pub(crate) controller: Controller,
    telemetry: Option<Telemetry>,
    /// [`Algorithm::Unlimited`]: requests pass without a permit.
    pub(crate) unlimited: bool,
}

impl Shared {
    pub(crate) fn new(config: LimitConfig, settings: &Settings) -> Arc<Self> {
        let now = Instant::now();
        let controller = match &config.algorithm {
            Algorithm::Fixed { .. } | Algorithm::Unlimited => Controller::Fixed,
            Algorithm::Gradient(g) => Controller::Gradient(Gradient::new(g.clone(), now)),
            Algorithm::Aimd(a) => Controller::Aimd(Aimd::new(a.clone())),
        };
        let limit = match (&config.algorithm, &controller) {
            (Algorithm::Fixed { max }, _) => *max,
            (Algorithm::Unlimited, _) => u32::MAX,
            (_, Controller::Gradient(g)) => g.starting_limit(),
            (_, Controller::Aimd(a)) => a.initial(),
            (_, Controller::Fixed) => 1,
        };
        let unlimited = config.algorithm == Algorithm::Unlimited;
        let queues = !config.max_wait.is_zero() || !matches!(controller, Controller::Fixed);
        // No limit, no gauges: a limit of 4 billion would only puzzle a dashboard.
        let telemetry = if unlimited {
            None
        } else {
            Telemetry::register(settings)
        };
        if let Some(t) = &telemetry {
            t.limit(limit);
            t.in_flight_touch();
        }
        Arc::new(Shared {
            in_flight: AtomicU32::new(0),
            limit: AtomicU32::new(limit),
            waiting: AtomicU32::new(0),
            rejected: AtomicU64::new(0),
            max_wait: config.max_wait,
            queues,
            queue: Mutex::new(VecDeque::new()),
            controller,
            telemetry,
            unlimited,
        })
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub(crate) fn is_adaptive(&self) -> bool {
        !matches!(self.controller, Controller::Fixed)
    }

    /// Whether an adaptive limit is still learning: it has not yet seen the upstream queue or
    /// drop (gradient: slow start; AIMD: no drop yet), so its value is a guess that grows as
    /// fast as it is used. Refusing over a guess would shed load nobody showed to be too much
    /// (callers over a starting limit of 20 would fail while it doubles): a request over it
    /// waits its turn instead.
    pub(crate) fn learning(&self) -> bool {
        match &self.controller {
            Controller::Fixed => false,
            Controller::Gradient(g) => g.learning(),
            Controller::Aimd(a) => a.learning(),
        }
    }

    /// Takes a permit if one is free and nobody waits for it.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        if self.queues && self.waiting.load(Ordering::SeqCst) != 0 {
            return false;
        }
        self.grab()
    }

    /// One compare-and-swap loop: in flight + 1, if below the limit.
    #[inline]
    fn grab(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            if current >= limit {
                return false;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if let Some(t) = &self.telemetry {
                        t.in_flight_up();
                    }
                    return true;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Queues for a permit: `Ok(())` if one was free after all, else the receiver that a
    /// freed permit is handed to, in arrival order.
    pub(crate) fn enqueue(&self) -> Result<(), oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.is_empty() && self.grab() {
            return Ok(());
        }
        queue.push_back(tx);
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // A permit freed between the first try and the push saw nobody waiting: hand it over.
        self.drain(&mut queue);
        Err(rx)
    }

    /// Hands free permits to the waiters at the front of the queue.
    fn drain(&self, queue: &mut VecDeque<oneshot::Sender<()>>) {
        while let Some(front) = queue.front() {
            if !front.is_closed() && !self.grab() {
                return;
            }
            let granted = !front.is_closed();
            if let Some(tx) = queue.pop_front() {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                if granted && tx.send(()).is_err() {
                    self.put_back();
                }
            }
        }
    }

    /// Gives a permit back, and passes it on to a waiter if there is one.
    pub(crate) fn release(&self) {
        self.put_back();
        if self.waiting.load(Ordering::SeqCst) != 0 {
            self.wake();
        }
    }

    fn put_back(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(t) = &self.telemetry {
            t.in_flight_down();
        }
    }

    /// A waiter gave up: its place goes, so that newcomers do not queue behind nobody.
    pub(crate) fn leave(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let before = queue.len();
        queue.retain(|tx| !tx.is_closed());
        let gone = (before - queue.len()) as u32;
        self.waiting.fetch_sub(gone, Ordering::SeqCst);
    }

    /// Refuses every request still waiting: each finds its place closed and fails as refused
    /// by the full limit.
    fn turn_away_waiters(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let gone = queue.len() as u32;
        queue.clear();
        self.waiting.fetch_sub(gone, Ordering::SeqCst);
    }

    fn wake(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        self.drain(&mut queue);
    }

    /// Counts a refusal.
    pub(crate) fn rejected_one(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = &self.telemetry {
            t.rejected();
        }
    }

    /// Feeds the algorithm a sample taken at `now` (while this request still holds its permit).
    pub(crate) fn sample(&self, sample: Sample, now: Instant) {
        let in_flight = self.in_flight();
        let new = match &self.controller {
            Controller::Fixed => None,
            Controller::Gradient(g) => g.on_sample(sample, now, in_flight),
            Controller::Aimd(a) => a.on_sample(sample, in_flight),
        };
        // Requests that waited because the limit was still learning wait no more once it has
        // learnt: it has seen the upstream queue or drop, and a queue would only add that
        // latency to theirs (the lab's overload: p99 of successes 2.9× the uncongested one,
        // against 1.9× when they are refused). Those with `max_wait` keep their place.
        if self.max_wait.is_zero() && self.waiting.load(Ordering::SeqCst) != 0 && !self.learning() {
            self.turn_away_waiters();
        }
        if let Some(new) = new {
            let old = self.limit.swap(new, Ordering::SeqCst);
            if let Some(t) = &self.telemetry {
                t.limit(new);
            }
            if new > old && self.waiting.load(Ordering::SeqCst) != 0 {
                self.wake();
            }
        }
    }
}

/// A permit: given back when dropped.
pub(crate) struct Permit(pub(crate) Arc<Shared>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Permit")
    }
}
