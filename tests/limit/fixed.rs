//! The fixed limit: refusal, first-come-first-served waiting bounded by `max_wait` and the
//! deadline, and permits held to the end of the body.

use super::*;
use meshless::deadline::RequestDeadline;
use meshless::error::{Kind, Layer as ErrorLayer};
use std::error::Error as _;

fn refused(err: &Error) -> bool {
    err.kind() == Kind::ConcurrencyLimited && err.layer() == ErrorLayer::Limit
}

#[tokio::test(start_paused = true)]
async fn a_full_limit_refuses_the_next_request_at_once_with_the_typed_error() {
    let upstream = Upstream::flat(Duration::from_secs(1));
    let (mut svc, handle) = limited(LimitLayer::fixed(2), &upstream);
    let a = spawn_fetch(svc.clone(), Ask::default());
    let b = spawn_fetch(svc.clone(), Ask::default());
    tokio::task::yield_now().await;
    assert_eq!(handle.in_flight(), 2);

    let start = Instant::now();
    let err = send(&mut svc, Ask::default()).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "refused at once");
    assert!(refused(&err), "{err:?}");
    let why = err.source().map(|s| s.to_string()).unwrap_or_default();
    assert!(
        why.contains("limit 2") && why.contains("2 in flight"),
        "{why}"
    );
    assert_eq!(upstream.ids().len(), 2, "nothing sent");
    assert_eq!(handle.rejected(), 1);

    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert_eq!(handle.in_flight(), 0);
    fetch(&mut svc, Ask::default()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn waiters_get_freed_permits_first_come_first_served() {
    let upstream = Upstream::flat(Duration::from_millis(30));
    let layer = LimitLayer::fixed(1).max_wait(Duration::from_millis(100));
    let (svc, handle) = limited(layer, &upstream);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for id in 0..3 {
        tasks.push(spawn_fetch(
            svc.clone(),
            Ask {
                id,
                ..Ask::default()
            },
        ));
        // Each call is made (and queued) before the next.
        tokio::task::yield_now().await;
    }
    assert_eq!(handle.waiting(), 2);
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let log = upstream.log.lock().unwrap().clone();
    let sent: Vec<_> = log.iter().map(|(id, at)| (*id, *at - start)).collect();
    assert_eq!(
        sent,
        vec![
            (0, Duration::ZERO),
            (1, Duration::from_millis(30)),
            (2, Duration::from_millis(60)),
        ]
    );
    assert_eq!(
        (handle.rejected(), handle.in_flight(), handle.waiting()),
        (0, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_ends_at_max_wait_with_the_typed_error() {
    let upstream = Upstream::flat(Duration::from_secs(1));
    let layer = LimitLayer::fixed(1).max_wait(Duration::from_millis(50));
    let (mut svc, handle) = limited(layer, &upstream);
    let _busy = spawn_fetch(svc.clone(), Ask::default());
    tokio::task::yield_now().await;
    let start = Instant::now();
    let err = send(&mut svc, Ask::default()).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert!(refused(&err), "{err:?}");
    assert_eq!(upstream.ids().len(), 1, "nothing sent");
    assert_eq!(handle.rejected(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_wait_never_passes_the_deadline() {
    let upstream = Upstream::flat(Duration::from_secs(1));
    let layer = LimitLayer::fixed(1).max_wait(Duration::from_millis(100));
    let (mut svc, handle) = limited(layer, &upstream);
    let _busy = spawn_fetch(svc.clone(), Ask::default());
    tokio::task::yield_now().await;

    // Deadline already past: refused at once rather than queued to fail.
    let mut req = request(Ask::default());
    req.extensions_mut().insert(RequestDeadline(Instant::now()));
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(refused(&err), "{err:?}");

    // Deadline nearer than max_wait: the wait is cut there.
    let mut req = request(Ask::default());
    req.extensions_mut()
        .insert(RequestDeadline::after(Duration::from_millis(30)));
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(30));
    assert!(refused(&err), "{err:?}");
    let why = err.source().map(|s| s.to_string()).unwrap_or_default();
    assert!(why.contains("deadline"), "{why}");
    assert_eq!(handle.rejected(), 2);
    assert_eq!(handle.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_permit_is_held_until_the_body_ends() {
    let upstream = Upstream::flat(Duration::from_millis(10));
    let (mut svc, handle) = limited(LimitLayer::fixed(2), &upstream);
    let with_body = Ask {
        body: true,
        ..Ask::default()
    };
    let a = send(&mut svc, with_body).await.unwrap();
    let b = send(&mut svc, with_body).await.unwrap();
    assert_eq!(handle.in_flight(), 2, "unread bodies keep their permits");
    let err = send(&mut svc, with_body).await.unwrap_err();
    assert!(refused(&err), "{err:?}");

    // Read to the end: released.
    let bytes = a.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, "body");
    assert_eq!(handle.in_flight(), 1);
    // Dropped unread (the caller cancels): released.
    drop(b);
    assert_eq!(handle.in_flight(), 0);

    // An empty body ends with its head.
    let c = send(&mut svc, Ask::default()).await.unwrap();
    assert_eq!(handle.in_flight(), 0);
    drop(c);
}

#[tokio::test(start_paused = true)]
async fn cancellation_and_inner_errors_release_the_permit() {
    let upstream = Upstream::flat(Duration::from_millis(10));
    let layer = LimitLayer::fixed(1).max_wait(Duration::from_secs(1));
    let (mut svc, handle) = limited(layer, &upstream);

    // The future dropped before its response.
    let future = svc.ready().await.unwrap().call(request(Ask::default()));
    assert_eq!(handle.in_flight(), 1);
    drop(future);
    assert_eq!(handle.in_flight(), 0);

    // An error from inside.
    let failing = Ask {
        fail: true,
        ..Ask::default()
    };
    let err = send(&mut svc, failing).await.unwrap_err();
    assert_eq!(err.kind(), Kind::Service);
    assert_eq!(handle.in_flight(), 0);

    // A waiter that gives up leaves its place: the next one gets the permit.
    let holder = send(
        &mut svc,
        Ask {
            body: true,
            ..Ask::default()
        },
    )
    .await
    .unwrap();
    let quitter = svc.ready().await.unwrap().call(request(Ask {
        id: 1,
        ..Ask::default()
    }));
    let stayer = spawn_fetch(
        svc.clone(),
        Ask {
            id: 2,
            ..Ask::default()
        },
    );
    tokio::task::yield_now().await;
    assert_eq!(handle.waiting(), 2);
    drop(quitter);
    drop(holder);
    stayer.await.unwrap().unwrap();
    assert_eq!(upstream.ids(), vec![0, 0, 0, 2]);
    assert_eq!((handle.in_flight(), handle.waiting()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_permit_handed_to_a_waiter_that_then_gives_up_comes_back() {
    let upstream = Upstream::flat(Duration::from_millis(10));
    let layer = LimitLayer::fixed(1).max_wait(Duration::from_secs(1));
    let (mut svc, handle) = limited(layer, &upstream);
    let holder = send(
        &mut svc,
        Ask {
            body: true,
            ..Ask::default()
        },
    )
    .await
    .unwrap();
    let waiter = svc.ready().await.unwrap().call(request(Ask::default()));
    // The permit passes to the waiter, which is dropped before it is polled again.
    drop(holder);
    assert_eq!(handle.in_flight(), 1);
    drop(waiter);
    assert_eq!((handle.in_flight(), handle.waiting()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_contention_every_permit_comes_back() {
    // Callers on two threads admitted, queued, refused at the end of their wait and cancelled
    // at random points: once all are done, nothing is in flight and nobody waits.
    let upstream = Upstream::new(|_, id| Duration::from_micros(100 + id % 7 * 150));
    let layer = LimitLayer::fixed(4).max_wait(Duration::from_millis(2));
    let (svc, handle) = limited(layer, &upstream);
    let tasks: Vec<_> = (0..32u64)
        .map(|task| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                for i in 0..40u64 {
                    let id = task * 40 + i;
                    let ask = Ask {
                        id,
                        body: id % 3 == 0,
                        ..Ask::default()
                    };
                    let cancel_after = Duration::from_micros(id % 11 * 120);
                    let _ = tokio::time::timeout(cancel_after, fetch(&mut svc, ask)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!((handle.in_flight(), handle.waiting()), (0, 0));
    assert!(upstream.ids().len() > 100, "requests went through");
}

/// A request the circuit breaker below will refuse does not wait for a permit: with the limit
/// full and waiting allowed, it fails at once with `CircuitOpen`, sending nothing; neither
/// late, after the wait, nor as the limit's own refusal.
#[tokio::test(start_paused = true)]
async fn a_request_the_breaker_below_refuses_does_not_wait_for_a_permit() {
    let upstream = Upstream::flat(Duration::from_secs(10));
    let breaker = meshless::breaker::BreakerLayer::new();
    let breaker_handle = breaker.handle();
    let limit = LimitLayer::fixed(1).max_wait(Duration::from_secs(2));
    let handle = limit.handle();
    let mut svc = limit.layer(breaker.layer(upstream.clone()));
    // The one permit, held by a request the upstream answers in 10 s.
    let mut holder = svc.clone();
    let held = tokio::spawn(async move {
        let res = holder.ready().await?.call(request(Ask::default())).await;
        res.map(|r| r.status())
    });
    tokio::task::yield_now().await;
    assert_eq!(handle.in_flight(), 1);

    breaker_handle.isolate();
    let start = Instant::now();
    let err = svc
        .ready()
        .await
        .expect("ready")
        .call(request(Ask::default()))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "refused at once");
    assert_eq!(err.kind(), Kind::CircuitOpen, "{err:?}");
    assert_eq!(handle.rejected(), 0, "not the limit's refusal");
    assert_eq!(upstream.ids().len(), 1, "nothing sent");
    held.abort();
}
