//! Who is to blame for a drop: meshless's own timer, or the caller.
//!
//! Work in progress (an attempt, a response body) holds an endpoint's in-flight slot, and the
//! slot has to know why it is being released. When one of meshless's timers fires (the total
//! deadline, an attempt timeout, a body timeout) the endpoint took too long and is charged with
//! a timeout. When the caller gives up (a `select!`, `tokio::time::timeout`, a dropped future)
//! the endpoint did nothing wrong. Drops are synchronous, so a thread-local flag raised around
//! the timer's own drop tells the two apart at no cost to the success path.

use std::cell::Cell;

thread_local! {
    static EXPIRING: Cell<bool> = const { Cell::new(false) };
    static OUTRUN: Cell<bool> = const { Cell::new(false) };
    static CUT: Cell<bool> = const { Cell::new(false) };
    static CALLERS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, which drops work in progress (in place, `Pin::set(None)`, since it is pinned), as
/// the consequence of a meshless timer firing: everything dropped inside sees [`expiring`]
/// return `true`.
pub(crate) fn while_expiring<R>(f: impl FnOnce() -> R) -> R {
    // The previous value is restored, so a timer firing inside another timer's drop (a body
    // inside a future) does not clear the outer one's flag early.
    // A guard, so that a panicking drop does not leave the flag raised for the next one.
    let _restore = Restore(EXPIRING.with(|flag| flag.replace(true)));
    f()
}

struct Restore(bool);

impl Drop for Restore {
    fn drop(&mut self) {
        EXPIRING.with(|flag| flag.set(self.0));
    }
}

/// Whether the current drop was caused by a meshless timer rather than by the caller.
pub(crate) fn expiring() -> bool {
    EXPIRING.with(Cell::get)
}

/// As [`while_expiring`] for a timer that fired at the caller's own deadline (see
/// [`DeadlineFromCaller`](super::DeadlineFromCaller)), or at the client's when `callers` is
/// false. The caller's patience running out says less about the upstream than the client's
/// own limit would: the endpoint is not charged ([`callers_deadline`]), and neither the
/// breaker, the throttle nor the adaptive limit count it, as for a cancellation; the balancer
/// still learns that the endpoint had not answered by then.
pub(crate) fn while_deadline_expiring<R>(callers: bool, f: impl FnOnce() -> R) -> R {
    if !callers {
        return while_expiring(f);
    }
    let _restore = RestoreCallers(CALLERS.with(|flag| flag.replace(true)));
    while_expiring(f)
}

struct RestoreCallers(bool);

impl Drop for RestoreCallers {
    fn drop(&mut self) {
        CALLERS.with(|flag| flag.set(self.0));
    }
}

/// Whether the current drop is [`expiring`] at the caller's own deadline.
pub(crate) fn callers_deadline() -> bool {
    CALLERS.with(Cell::get)
}

/// Whether the current drop is charged to the endpoint: a meshless timer fired at a limit of
/// the client's own.
pub(crate) fn charges_endpoint() -> bool {
    expiring() && !callers_deadline()
}

/// Runs `f`, which drops the attempts a sibling outran (the losers of a hedge race): everything
/// dropped inside sees [`outrun`] return `true`. Like a caller's cancellation, such a drop
/// charges no endpoint; unlike it, it says the endpoint had not answered in the time it took a
/// sibling to, which the balancer's latency estimate may take in.
pub(crate) fn while_outrun<R>(f: impl FnOnce() -> R) -> R {
    let _restore = RestoreOutrun(OUTRUN.with(|flag| flag.replace(true)));
    f()
}

struct RestoreOutrun(bool);

impl Drop for RestoreOutrun {
    fn drop(&mut self) {
        OUTRUN.with(|flag| flag.set(self.0));
    }
}

/// Whether the current drop is that of an attempt a sibling outran.
pub(crate) fn outrun() -> bool {
    OUTRUN.with(Cell::get)
}

/// Runs `f`, which drops a response body that a meshless limit ended without blame: a frame
/// that had arrived in time but was read after the deadline (the reader's lateness), or a
/// stream silent for the default idle limit its caller never chose. No endpoint is charged
/// (everything dropped inside sees [`expiring`] `false`, as for a caller's drop), but the
/// request did end in an error, so it is not the success its head was either: the retry layer
/// counts it as cancelled.
pub(crate) fn while_cut<R>(f: impl FnOnce() -> R) -> R {
    let _restore = RestoreCut(CUT.with(|flag| flag.replace(true)));
    f()
}

struct RestoreCut(bool);

impl Drop for RestoreCut {
    fn drop(&mut self) {
        CUT.with(|flag| flag.set(self.0));
    }
}

/// Whether the current drop is that of a body a meshless limit ended without blame.
pub(crate) fn cut() -> bool {
    CUT.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe(std::rc::Rc<Cell<Option<bool>>>);

    impl Drop for Probe {
        fn drop(&mut self) {
            self.0.set(Some(expiring()));
        }
    }

    #[test]
    fn the_flag_is_raised_only_inside_while_expiring() {
        let seen = std::rc::Rc::new(Cell::new(None));
        drop(Probe(seen.clone()));
        assert_eq!(seen.get(), Some(false));
        while_expiring(|| drop(Probe(seen.clone())));
        assert_eq!(seen.get(), Some(true));
        assert!(!expiring());
        assert!(!outrun());
        while_outrun(|| drop(Probe(seen.clone())));
        assert_eq!(seen.get(), Some(false), "outrun is not expiring");
        assert!(while_outrun(outrun));
        assert!(!outrun());
    }

    #[test]
    fn nesting_restores_the_outer_flag() {
        struct Outer(std::rc::Rc<Cell<Option<bool>>>);
        impl Drop for Outer {
            fn drop(&mut self) {
                while_expiring(|| ());
                self.0.set(Some(expiring()));
            }
        }
        let seen = std::rc::Rc::new(Cell::new(None));
        while_expiring(|| drop(Outer(seen.clone())));
        assert_eq!(seen.get(), Some(true));
        assert!(!expiring());
    }
}
