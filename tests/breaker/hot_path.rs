//! The closed breaker's hot path allocates nothing: admission, the call and the outcome's
//! record, counted by an allocator that tallies this thread's allocations.

use crate::support::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// `GlobalAlloc` can only be implemented with `unsafe impl`. The library forbids unsafe code;
/// this test is a separate crate, and the impl only forwards to `System` unchanged (as
/// `benches/balance.rs` does).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to `System` unchanged; the tally is a thread-local `Cell`
// with a const initialiser, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn a_closed_breaker_allocates_nothing_per_request() {
    let layer = BreakerLayer::from_config(&config()).unwrap().metrics(false);
    let handle = layer.handle();
    let mut svc = layer.layer(tower::service_fn(|_: Request<()>| {
        std::future::ready(Ok::<_, std::convert::Infallible>(Response::new(())))
    }));
    let mut cx = Context::from_waker(Waker::noop());
    let mut send = |svc: &mut Breaker<_>| {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let future = pin!(svc.call(Request::new(())));
        assert!(matches!(future.poll(&mut cx), Poll::Ready(Ok(_))));
    };
    send(&mut svc); // warm up: first-use initialisation is not the hot path
    let before = allocations();
    for _ in 0..1000 {
        send(&mut svc);
    }
    assert_eq!(
        allocations() - before,
        0,
        "allocations on the closed hot path"
    );
    assert_eq!(handle.stats().calls, 1001);
}
