//! The adaptive limit's learning wait (src/limit/state.rs, layer.rs, adaptive.rs).

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use meshless::error::Kind;
use meshless::limit::{AimdConfig, Algorithm, LimitLayer};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

/// An upstream whose latency (`x-ms`) and status (`x-status`) each request names: no queue,
/// whatever the concurrency.
async fn upstream(req: Request<()>) -> Result<Response<Empty<Bytes>>, std::io::Error> {
    let header = |name: &str| -> Option<u64> {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    };
    let ms = header("x-ms").unwrap_or(10);
    let status = header("x-status").unwrap_or(200) as u16;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let mut response = Response::new(Empty::new());
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    Ok(response)
}

fn ask(ms: u64, status: u16) -> Request<()> {
    Request::builder()
        .header("x-ms", ms)
        .header("x-status", status)
        .body(())
        .unwrap()
}

/// The upstream's answer, boxed so that the service's type can be named.
type Answer =
    std::pin::Pin<Box<dyn Future<Output = Result<Response<Empty<Bytes>>, std::io::Error>> + Send>>;

type Svc = meshless::limit::Limit<tower::util::ServiceFn<fn(Request<()>) -> Answer>>;

fn boxed(req: Request<()>) -> Answer {
    Box::pin(upstream(req))
}

fn limited(layer: &LimitLayer) -> Svc {
    layer.layer(service_fn(boxed as fn(_) -> _))
}

async fn call(mut svc: Svc, ms: u64, status: u16) -> Result<StatusCode, meshless::Error> {
    let response = svc.ready().await?.call(ask(ms, status)).await?;
    Ok(response.status())
}

fn aimd(initial: u32) -> LimitLayer {
    let mut config = AimdConfig::default();
    config.initial = initial;
    config.min = 1;
    LimitLayer::new(Algorithm::Aimd(config))
}

/// A request that waited because the AIMD limit was still learning, turned away when the
/// limit's first drop ends the learning, is a refusal like any other: `LimitHandle::rejected`
/// ("requests refused so far") and the refusal metric must count it. `turn_away_waiters`
/// clears the queue and the waiter fails with a bare `ConcurrencyLimited` that nobody counts.
#[tokio::test(start_paused = true)]
async fn a_waiter_turned_away_when_the_limit_has_learnt_is_counted_as_refused() {
    let layer = aimd(2);
    let handle = layer.handle();
    let svc = limited(&layer);
    let slow = tokio::spawn(call(svc.clone(), 100, 200));
    let drop503 = tokio::spawn(call(svc.clone(), 10, 503));
    tokio::time::sleep(MS).await;
    assert_eq!(handle.in_flight(), 2);
    let started = Instant::now();
    let waiter = tokio::spawn(call(svc.clone(), 1, 200));
    tokio::time::sleep(MS).await;
    assert_eq!(
        handle.waiting(),
        1,
        "the request over the learning limit waits"
    );

    let outcome = waiter.await.unwrap();
    assert!(
        matches!(&outcome, Err(e) if e.kind() == Kind::ConcurrencyLimited),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < 50 * MS,
        "turned away at the drop (10 ms), not after the slow one: {:?}",
        started.elapsed()
    );
    assert_eq!(
        drop503.await.unwrap().unwrap(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(slow.await.unwrap().unwrap(), StatusCode::OK);
    assert_eq!(handle.waiting(), 0);
    assert_eq!(
        handle.rejected(),
        1,
        "the waiter turned away when the limit learnt was refused (ConcurrencyLimited, nothing \
         sent), but LimitHandle::rejected() does not count it (refusal: {:?}, source {:?})",
        outcome.as_ref().err(),
        outcome
            .as_ref()
            .err()
            .and_then(|e| std::error::Error::source(e).map(|s| s.to_string()))
    );
}

/// The gradient limit stops learning once `min_samples` successes in a row are slower than
/// `tolerance` (1.25) × the fastest success seen, while it has no baseline yet. One fast
/// answer (a cache hit, a 304, a warm connection: 4 ms) against an upstream whose ordinary
/// answer takes 10 ms, whatever the load, is enough: ten ordinary answers, sent one at a time
/// (nothing queued, one in flight), and the limit counts as having "seen the upstream queue".
/// A burst over the starting 20 is then refused at once: exactly the shedding over a guess
/// that the change set out to remove (the same burst against a flat 10 ms upstream is served
/// whole, tests/limit/learning.rs).
#[tokio::test(start_paused = true)]
async fn one_fast_answer_then_ordinary_ones_one_at_a_time_end_the_learning() {
    let layer = LimitLayer::adaptive();
    let handle = layer.handle();
    let svc = limited(&layer);
    assert_eq!(call(svc.clone(), 4, 200).await.unwrap(), StatusCode::OK);
    for _ in 0..10 {
        assert_eq!(call(svc.clone(), 10, 200).await.unwrap(), StatusCode::OK);
    }
    assert_eq!(handle.rejected(), 0);
    let limit = handle.limit() as usize;
    let tasks: Vec<_> = (0..limit + 30)
        .map(|_| tokio::spawn(call(svc.clone(), 10, 200)))
        .collect();
    let mut refused = 0;
    for task in tasks {
        if let Err(e) = task.await.unwrap() {
            assert_eq!(e.kind(), Kind::ConcurrencyLimited, "{e}");
            refused += 1;
        }
    }
    assert_eq!(
        refused,
        0,
        "a burst of {} over a gradient limit of {limit} that never saw a queue (latency \
         independent of load; the only 'late' answers were late against one fast outlier) \
         was refused instead of waiting",
        limit + 30
    );
}

/// Once a run of late successes has ended the gradient's learning (and the waiters were
/// turned away as "the limit has learnt"), a success on time does not make it learn again:
/// requests over it are refused at once, as AIMD's after its first drop.
#[tokio::test(start_paused = true)]
async fn a_gradient_limit_that_has_learnt_does_not_start_learning_again() {
    let layer = LimitLayer::adaptive();
    let handle = layer.handle();
    let svc = limited(&layer);
    // Load that keeps the limit at least half used: on time at 10 ms, then late at 20 ms
    // (later than 1.25 x the fastest, 10 ms): the limit has learnt.
    sustain(&svc, 20, 10, 50 * MS).await;
    sustain(&svc, 20, 20, 100 * MS).await;
    assert!(
        refused_at_once(&svc, &handle).await,
        "precondition: a request over the limit is refused at once once the limit has learnt"
    );
    sustain(&svc, 20, 10, 50 * MS).await;
    assert!(
        refused_at_once(&svc, &handle).await,
        "after on-time successes the gradient limit is 'learning' again: a request over it \
         waits instead of being refused (learnt -> learning flaps)"
    );
}

/// `workers` callers, each sending requests answered after `ms` one after the other, for
/// `duration`; every one sent succeeds (none is over the limit, which is at least 20).
async fn sustain(svc: &Svc, workers: usize, ms: u64, duration: Duration) {
    let end = Instant::now() + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                while Instant::now() < end {
                    assert_eq!(call(svc.clone(), ms, 200).await.unwrap(), StatusCode::OK);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Fills the limit with requests that hold their permits, then tries one more: whether it
/// was refused at its first poll. The holders are aborted (permits back) before returning.
async fn refused_at_once(svc: &Svc, handle: &meshless::limit::LimitHandle) -> bool {
    let holders: Vec<_> = (0..handle.limit())
        .map(|_| tokio::spawn(call(svc.clone(), 3_600_000, 200)))
        .collect();
    tokio::time::sleep(MS).await;
    assert_eq!(handle.in_flight(), handle.limit());
    let mut one = svc.clone();
    std::future::poll_fn(|cx| one.poll_ready(cx)).await.unwrap();
    let refused = {
        let mut future = std::pin::pin!(one.call(ask(10, 200)));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let polled = future.as_mut().poll(&mut cx);
        matches!(
            polled,
            std::task::Poll::Ready(Err(ref e)) if e.kind() == Kind::ConcurrencyLimited
        )
    };
    for h in holders {
        h.abort();
        let _ = h.await;
    }
    tokio::time::sleep(MS).await;
    assert_eq!(
        handle.in_flight(),
        0,
        "refused {refused}, limit {}",
        handle.limit()
    );
    assert_eq!(handle.waiting(), 0);
    refused
}
