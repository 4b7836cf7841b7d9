//! One clock reading per step: a step is one synchronous pass through the layers, down them
//! (a `call` that goes through the deadline, the breaker, the retry layer, the attempt timeout
//! and the balancer's pick) or up them (a `poll` in which an answer comes back through each).
//!
//! Every layer needs "now" at those moments (the deadline's start, the breaker's bucket, the
//! request statistics, the attempt's end, the pick's decay, the endpoint's latency), and a
//! read of the clock costs about 20 ns on a virtual machine: seven of them were an eighth of
//! the default stack's time. Within one step the layers are a few hundred nanoseconds apart,
//! so one reading serves them all.
//!
//! How: a layer that reads the clock enters a [`Step`] for the length of its `call` or `poll`;
//! the outermost one opens it, the ones inside join it. The first [`now`] in an open step reads
//! the clock and keeps the reading for the rest of the step; the step ends when the layer that
//! opened it returns. Outside a step, [`now`] reads the clock.
//!
//! The reading is taken the first time a layer asks for it, never earlier: a layer reads "now"
//! when its inner service has answered, so an answer's latency includes the inner poll that
//! produced it (an answer that comes back within the very pass that sent it, from a service in
//! memory, measures zero). A reading used later in the same step is that step old, and only
//! ever *earlier* than the truth: an end computed from it (an attempt's, a deadline's) comes
//! sooner. Where an earlier "now" could lengthen something, the layer reads the clock itself:
//! the limit an attempt tells downstream (`grpc-timeout`), the balancer's picks after a wait,
//! the checks made when a request is dropped.
//!
//! A reading serves [`MAX_USES`] askers at most, then the clock is read again: one pass of the
//! default stack asks five times or fewer, and a step that lasts (a runtime blocked on inside a
//! poll, which runs whole requests within it) cannot freeze the time for long.

use std::cell::Cell;
use tokio::time::Instant;

#[derive(Clone, Copy)]
enum Reading {
    /// No step is open on this thread.
    Outside,
    /// A step is open and nothing in it has asked for the time yet.
    Unread,
    /// A step is open and this is its reading, with how many times it was handed out.
    Read(Instant, u8),
}

/// How many times one reading is handed out before the clock is read again.
const MAX_USES: u8 = 8;

thread_local! {
    static STEP: Cell<Reading> = const { Cell::new(Reading::Outside) };
    /// The earliest end of the timers armed in the poll under way, by the futures a
    /// [`Cover`] watches (see there).
    static ARMED: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Whether an armed timer was dropped during the watch: what was reported may be gone.
    static DROPPED: Cell<bool> = const { Cell::new(false) };
}

/// Held for the length of a layer's `call` or `poll`: opens a step if none is open on this
/// thread and closes it when dropped (also when unwinding), or joins the open one.
#[must_use = "the step lasts as long as the guard"]
pub(crate) struct Step {
    opened: bool,
}

impl Step {
    #[inline]
    pub(crate) fn enter() -> Step {
        STEP.with(|step| match step.get() {
            Reading::Outside => {
                step.set(Reading::Unread);
                Step { opened: true }
            }
            Reading::Unread | Reading::Read(..) => Step { opened: false },
        })
    }
}

impl Drop for Step {
    #[inline]
    fn drop(&mut self) {
        if self.opened {
            STEP.with(|step| step.set(Reading::Outside));
        }
    }
}

/// The current step's reading of the clock, taken now if it is the step's first; outside a
/// step, a fresh reading.
#[inline]
pub(crate) fn now() -> Instant {
    STEP.with(|step| match step.get() {
        Reading::Outside => Instant::now(),
        Reading::Read(now, uses) if uses < MAX_USES => {
            step.set(Reading::Read(now, uses + 1));
            now
        }
        Reading::Unread | Reading::Read(..) => {
            let now = Instant::now();
            step.set(Reading::Read(now, 1));
            now
        }
    })
}

/// Watches, for the length of a future's poll, the timers its inner futures arm: a timer that
/// an inner future armed in this poll wakes this task by its end, and so wakes this future too
/// (each wake polls the task from its root down, through every ancestor of the timer's
/// future). A future with a timer of its own that would end no sooner need not arm it: the
/// deadline layer leaves its timer unarmed while an attempt's (which ends by the deadline at
/// the latest) is armed below it, and so a request that waits costs the runtime one timer
/// instead of two.
///
/// Only a timer armed while the watched future polls its inner one counts: the record is
/// set aside when the watch begins and merged back, for the watchers above, when it ends. An
/// armed timer dropped during the watch (an attempt abandoned in the same poll, a retry's
/// previous attempt) voids the record: what was reported may be what was dropped.
#[must_use = "the watch lasts as long as the guard"]
pub(crate) struct Cover {
    before: Option<Instant>,
    dropped_before: bool,
}

impl Cover {
    #[inline]
    pub(crate) fn watch() -> Cover {
        Cover {
            before: ARMED.with(|armed| armed.replace(None)),
            dropped_before: DROPPED.with(|dropped| dropped.replace(false)),
        }
    }

    /// The earliest end among the timers armed since the watch began and still armed: `None`
    /// if an armed timer was dropped meanwhile.
    #[inline]
    pub(crate) fn below(&self) -> Option<Instant> {
        if DROPPED.with(Cell::get) {
            return None;
        }
        ARMED.with(Cell::get)
    }
}

impl Drop for Cover {
    #[inline]
    fn drop(&mut self) {
        let before = self.before;
        ARMED.with(|armed| armed.set(earlier(before, armed.get())));
        let dropped_before = self.dropped_before;
        DROPPED.with(|dropped| dropped.set(dropped_before || dropped.get()));
    }
}

/// Records that an armed timer was dropped: the watches under way stop trusting their record.
#[inline]
pub(crate) fn disarmed() {
    DROPPED.with(|dropped| dropped.set(true));
}

/// Records a timer armed in this poll, waking the polling task at `end`.
#[inline]
pub(crate) fn armed(end: Instant) {
    ARMED.with(|armed| armed.set(earlier(armed.get(), Some(end))));
}

fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_step_reads_the_clock_once_and_ends_with_its_opener() {
        let outer = Step::enter();
        let before = Instant::now();
        // Nothing asked yet: the first reading is taken when asked, not when entered.
        tokio::time::advance(Duration::from_millis(5)).await;
        let first = now();
        assert_eq!(first, before + Duration::from_millis(5));
        tokio::time::advance(Duration::from_millis(5)).await;
        {
            let inner = Step::enter();
            assert_eq!(now(), first, "a step joined inside keeps the reading");
            drop(inner);
        }
        assert_eq!(now(), first, "the inner guard does not end the step");
        drop(outer);
        assert_eq!(
            now(),
            first + Duration::from_millis(5),
            "outside a step the clock is read"
        );
        let again = Step::enter();
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            now(),
            first + Duration::from_millis(6),
            "a new step reads anew"
        );
        drop(again);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cover_sees_the_timers_armed_under_it_and_hands_them_up() {
        let t = Instant::now();
        let outer = Cover::watch();
        armed(t + Duration::from_millis(30));
        {
            let inner = Cover::watch();
            assert_eq!(inner.below(), None, "a new watch starts empty");
            armed(t + Duration::from_millis(20));
            armed(t + Duration::from_millis(40));
            assert_eq!(inner.below(), Some(t + Duration::from_millis(20)));
        }
        assert_eq!(
            outer.below(),
            Some(t + Duration::from_millis(20)),
            "the inner watch's timers count for the outer one, with its own"
        );
        drop(outer);
        let next = Cover::watch();
        assert_eq!(next.below(), None, "a later poll starts empty");
        armed(t + Duration::from_millis(10));
        {
            let inner = Cover::watch();
            armed(t + Duration::from_millis(20));
            disarmed();
            assert_eq!(inner.below(), None, "a dropped timer voids the record");
        }
        assert_eq!(
            next.below(),
            None,
            "and the outer watch's, which saw it dropped too"
        );
        drop(next);
        assert_eq!(Cover::watch().below(), None, "a later watch starts clean");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reading_is_handed_out_a_few_times_then_taken_again() {
        let _step = Step::enter();
        let first = now();
        tokio::time::advance(Duration::from_millis(1)).await;
        for _ in 1..MAX_USES {
            assert_eq!(now(), first);
        }
        assert_eq!(
            now(),
            first + Duration::from_millis(1),
            "used up: read anew"
        );
    }

    #[test]
    fn a_panic_inside_a_step_closes_it() {
        let result = std::panic::catch_unwind(|| {
            let _step = Step::enter();
            let _ = now();
            panic!("inside a step");
        });
        assert!(result.is_err());
        let step = Step::enter();
        assert!(step.opened, "the unwound guard closed its step");
    }
}
