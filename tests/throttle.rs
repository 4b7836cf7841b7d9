//! Contract tests of client-side adaptive throttling, on tokio's paused clock.
//!
//! The wrapped service answers each request with what its body (a oneshot channel) receives,
//! so a test decides when every answer arrives and what it is: requests can be held in flight
//! to show they are counted when sent, and accepts only when answered.

use meshless::classify::{Class, Classified, Reason, Retryable};
use meshless::error::{Kind, Layer as ErrorLayer};
use meshless::throttle::{ThrottleConfig, ThrottleLayer};
use meshless::{BoxError, Error};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;
use tower::{Layer, Service, ServiceExt, service_fn};

/// What the upstream does with one request.
#[derive(Debug)]
enum Answer {
    Status(u16),
    /// A 200 that a balancer below classified as failed with this status.
    Classified(u16),
    Error(Kind),
    Io(std::io::ErrorKind),
}

type Req = http::Request<oneshot::Receiver<Answer>>;

/// The upstream, counting the requests that reach it.
fn upstream(
    reached: Arc<AtomicUsize>,
) -> impl Service<Req, Response = http::Response<()>, Error = BoxError, Future: Send> + Clone {
    service_fn(move |req: Req| {
        reached.fetch_add(1, Ordering::SeqCst);
        async move {
            let answer = req.into_body().await.unwrap_or(Answer::Status(500));
            let status = |s: u16| http::Response::builder().status(s).body(()).unwrap();
            match answer {
                Answer::Status(s) => Ok(status(s)),
                Answer::Classified(s) => {
                    let mut res = status(200);
                    let class = Class::failure(Reason::Status(s), Retryable::IfIdempotent);
                    res.extensions_mut().insert(Classified(class));
                    Ok(res)
                }
                Answer::Error(kind) => Err(Error::new(kind).into()),
                Answer::Io(kind) => Err(std::io::Error::from(kind).into()),
            }
        }
    })
}

/// Sends one request answered at once with `answer`.
async fn send<S>(svc: &mut S, answer: Answer) -> Result<http::Response<()>, Error>
where
    S: Service<Req, Response = http::Response<()>, Error = Error>,
{
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(answer);
    svc.ready().await?.call(http::Request::new(rx)).await
}

/// Sends one request and leaves it in flight: the sender answers it.
fn start<S>(
    svc: &mut S,
) -> (
    oneshot::Sender<Answer>,
    impl Future<Output = Result<http::Response<()>, Error>> + use<S>,
)
where
    S: Service<Req, Response = http::Response<()>, Error = Error>,
{
    let (tx, rx) = oneshot::channel();
    let fut = svc.call(http::Request::new(rx));
    (tx, fut)
}

fn counts(handle: &meshless::throttle::ThrottleHandle) -> (u64, u64) {
    let c = handle.counts();
    (c.requests, c.accepts)
}

#[tokio::test(start_paused = true)]
async fn probability_follows_the_formula_requests_at_send_accepts_at_answer() {
    let layer = ThrottleLayer::new().max_probability(1.0).seed(1);
    let handle = layer.handle();
    let mut svc = layer.layer(upstream(Arc::default()));
    for _ in 0..2 {
        send(&mut svc, Answer::Status(200)).await.unwrap();
    }
    assert_eq!(counts(&handle), (2, 2));
    // Three requests in flight: counted as sent…
    let (x, fx) = start(&mut svc);
    let (y, fy) = start(&mut svc);
    let (z, fz) = start(&mut svc);
    assert_eq!(counts(&handle), (5, 2));
    assert_eq!(handle.counts().in_flight, 3);
    // …but neither accepted nor refused until answered: p = max(0, (5 − 3 − 2·2) / 6) = 0.
    assert_eq!(handle.probability(), 0.0);
    x.send(Answer::Status(200)).unwrap();
    fx.await.unwrap();
    assert_eq!(counts(&handle), (5, 3));
    assert_eq!(handle.probability(), 0.0);
    y.send(Answer::Status(503)).unwrap();
    assert_eq!(fy.await.unwrap().status(), 503);
    z.send(Answer::Status(429)).unwrap();
    assert_eq!(fz.await.unwrap().status(), 429);
    assert_eq!(counts(&handle), (5, 3));
    assert_eq!(handle.counts().in_flight, 0);
    // Application errors are accepted: the upstream answered.
    send(&mut svc, Answer::Status(404)).await.unwrap();
    send(&mut svc, Answer::Status(500)).await.unwrap();
    assert_eq!(counts(&handle), (7, 5));
    // Overload refusals and failures without an answer are not.
    send(&mut svc, Answer::Classified(503)).await.unwrap();
    send(&mut svc, Answer::Io(std::io::ErrorKind::ConnectionRefused))
        .await
        .unwrap_err();
    send(&mut svc, Answer::Error(Kind::AttemptTimedOut))
        .await
        .unwrap_err();
    assert_eq!(counts(&handle), (10, 5));
    // p = (10 − 2·5) / 11 = 0; one more refusal: (11 − 10) / 12.
    assert_eq!(handle.probability(), 0.0);
    send(&mut svc, Answer::Error(Kind::NoReadyEndpoint))
        .await
        .unwrap_err();
    assert_eq!(counts(&handle), (11, 5));
    assert_eq!(handle.probability(), 1.0 / 12.0);
}

/// A burst at start, before any answer: nothing is known of the upstream, so nothing is
/// throttled; once the answers are refusals, p is the formula's (and the cap).
#[tokio::test(start_paused = true)]
async fn a_burst_with_no_answer_yet_is_not_throttled_and_refusals_then_count() {
    let layer = ThrottleLayer::new().seed(2);
    let handle = layer.handle();
    let mut svc = layer.layer(upstream(Arc::default()));
    let held: Vec<_> = (0..100).map(|_| start(&mut svc)).collect();
    assert_eq!(handle.rejected(), 0);
    assert_eq!(counts(&handle), (100, 0));
    assert_eq!(handle.probability(), 0.0);
    // Ten refusals answered: p = (10 − 0) / 101 while 90 are still in flight.
    let mut held = held.into_iter();
    for (tx, fut) in held.by_ref().take(10) {
        tx.send(Answer::Status(503)).unwrap();
        assert_eq!(fut.await.unwrap().status(), 503);
    }
    assert_eq!(handle.probability(), 10.0 / 101.0);
    for (tx, fut) in held {
        tx.send(Answer::Status(503)).unwrap();
        assert_eq!(fut.await.unwrap().status(), 503);
    }
    // All answered, all refused: 100 / 101, capped at the default 0.8.
    assert_eq!(handle.counts().in_flight, 0);
    assert_eq!(handle.probability(), 0.8);
}

#[tokio::test(start_paused = true)]
async fn k_scales_the_accepts() {
    for (k, expected) in [(1.0, 3.0 / 7.0), (1.5, 1.5 / 7.0), (2.0, 0.0)] {
        let layer = ThrottleLayer::new().k(k).max_probability(1.0).seed(3);
        let handle = layer.handle();
        let mut svc = layer.layer(upstream(Arc::default()));
        for _ in 0..3 {
            send(&mut svc, Answer::Status(200)).await.unwrap();
        }
        // Held in flight, so that p grows only after the last admission, then refused.
        let held: Vec<_> = (0..3).map(|_| start(&mut svc)).collect();
        assert_eq!(counts(&handle), (6, 3), "k = {k}");
        assert_eq!(handle.probability(), 0.0, "k = {k}: no outcome known yet");
        for (tx, fut) in held {
            tx.send(Answer::Status(503)).unwrap();
            assert_eq!(fut.await.unwrap().status(), 503);
        }
        assert_eq!(handle.probability(), expected, "k = {k}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_cap_bounds_refusals_and_refused_requests_count() {
    let reached = Arc::new(AtomicUsize::new(0));
    let layer = ThrottleLayer::new().max_probability(0.25).seed(11);
    let handle = layer.handle();
    let mut svc = layer.layer(upstream(reached.clone()));
    let mut refused = 0;
    for _ in 0..2000 {
        match send(&mut svc, Answer::Status(503)).await {
            Ok(res) => assert_eq!(res.status(), 503),
            Err(e) => {
                assert_eq!(e.kind(), Kind::Throttled);
                assert_eq!(e.layer(), ErrorLayer::Throttle);
                refused += 1;
            }
        }
    }
    // p = R / (R + 1), capped at 0.25: about a quarter refused, never sent.
    assert_eq!(handle.probability(), 0.25);
    assert!((400..600).contains(&refused), "{refused}");
    assert_eq!(handle.rejected(), refused as u64);
    assert_eq!(reached.load(Ordering::SeqCst), 2000 - refused);
    // Refused requests count as requests, as the SRE book counts them.
    assert_eq!(counts(&handle), (2000, 0));
}

#[tokio::test(start_paused = true)]
async fn the_window_forgets_and_p_returns_to_zero() {
    let window = Duration::from_secs(60);
    let layer = ThrottleLayer::new().window(window).seed(5);
    let handle = layer.handle();
    let mut svc = layer.layer(upstream(Arc::default()));
    for _ in 0..50 {
        let _ = send(&mut svc, Answer::Status(503)).await;
    }
    assert_eq!(handle.probability(), 0.8); // the default cap
    tokio::time::advance(window / 2).await;
    assert_eq!(handle.probability(), 0.8);
    tokio::time::advance(window / 2).await;
    assert_eq!(counts(&handle), (0, 0));
    assert_eq!(handle.probability(), 0.0);
    let before = handle.rejected();
    for _ in 0..10 {
        send(&mut svc, Answer::Status(200)).await.unwrap();
    }
    assert_eq!(handle.rejected(), before);
}

#[tokio::test(start_paused = true)]
async fn shed_and_cancelled_requests_are_taken_back() {
    let layer = ThrottleLayer::new().max_probability(1.0).seed(9);
    let handle = layer.handle();
    let mut svc = layer.layer(upstream(Arc::default()));
    send(&mut svc, Answer::Status(200)).await.unwrap();
    assert_eq!(counts(&handle), (1, 1));
    // Refused by a layer below: nothing was sent, so it was no request.
    for kind in [Kind::CircuitOpen, Kind::ConcurrencyLimited, Kind::Throttled] {
        let err = send(&mut svc, Answer::Error(kind)).await.unwrap_err();
        assert_eq!(err.kind(), kind);
    }
    assert_eq!(counts(&handle), (1, 1));
    // Not sent for the caller's fault (its request body failed): nothing of the upstream.
    let err = send(&mut svc, Answer::Error(Kind::InvalidRequest))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidRequest);
    assert_eq!(counts(&handle), (1, 1));
    // Cancelled before the answer: counted when sent, taken back when dropped.
    let (tx, fut) = start(&mut svc);
    assert_eq!(counts(&handle), (2, 1));
    drop(fut);
    drop(tx);
    assert_eq!(counts(&handle), (1, 1));
    assert_eq!(handle.probability(), 0.0);
    // Cancelled after a bucket turned: the refund still finds its request.
    let (_tx, fut) = start(&mut svc);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(counts(&handle), (2, 1));
    drop(fut);
    assert_eq!(counts(&handle), (1, 1));
}

/// Which of 300 requests to a failing upstream a layer with this seed refuses.
async fn refusals(seed: u64) -> Vec<usize> {
    let layer = ThrottleLayer::new().seed(seed);
    let mut svc = layer.layer(upstream(Arc::default()));
    let mut refused = Vec::new();
    for i in 0..300 {
        if send(&mut svc, Answer::Status(503)).await.is_err() {
            refused.push(i);
        }
    }
    refused
}

#[tokio::test(start_paused = true)]
async fn a_seed_replays_the_same_refusals() {
    let first = refusals(42).await;
    assert!(first.len() > 100, "{}", first.len());
    assert_eq!(refusals(42).await, first);
    assert_ne!(refusals(43).await, first);
}

#[tokio::test(start_paused = true)]
async fn disabled_passes_everything_through_uncounted() {
    let layer = ThrottleLayer::from_config(&ThrottleConfig::default()).unwrap();
    assert!(!layer.config().enabled);
    let handle = layer.handle();
    let reached = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(upstream(reached.clone()));
    for _ in 0..100 {
        assert_eq!(
            send(&mut svc, Answer::Status(503)).await.unwrap().status(),
            503
        );
    }
    assert_eq!(reached.load(Ordering::SeqCst), 100);
    assert_eq!(counts(&handle), (0, 0));
    assert_eq!(handle.probability(), 0.0);
}

#[test]
fn validate_names_the_field() {
    let bad = |f: fn(&mut ThrottleConfig)| {
        let mut config = ThrottleConfig::default();
        f(&mut config);
        ThrottleLayer::from_config(&config).unwrap_err().setting()
    };
    assert_eq!(bad(|c| c.k = 0.9), "throttle.k");
    assert_eq!(bad(|c| c.k = f64::NAN), "throttle.k");
    assert_eq!(bad(|c| c.k = f64::INFINITY), "throttle.k");
    assert_eq!(bad(|c| c.window = Duration::ZERO), "throttle.window");
    assert_eq!(
        bad(|c| c.window = Duration::from_millis(999)),
        "throttle.window"
    );
    assert_eq!(
        bad(|c| c.window = Duration::from_secs(86_401)),
        "throttle.window"
    );
    assert_eq!(
        bad(|c| c.max_probability = -0.1),
        "throttle.max_probability"
    );
    assert_eq!(
        bad(|c| c.max_probability = 1.01),
        "throttle.max_probability"
    );
    assert_eq!(
        bad(|c| c.max_probability = f64::NAN),
        "throttle.max_probability"
    );
    let defaults = ThrottleConfig::default();
    assert_eq!(
        (
            defaults.enabled,
            defaults.k,
            defaults.window,
            defaults.max_probability
        ),
        (false, 2.0, Duration::from_secs(120), 0.8)
    );
    let mut edges = ThrottleConfig::default();
    edges.k = 1.0;
    edges.max_probability = 0.0;
    edges.window = Duration::from_secs(1);
    assert!(ThrottleLayer::from_config(&edges).is_ok());
}

#[test]
fn metrics_show_the_probability_and_the_refusals() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let layer = ThrottleLayer::new().service_name("up").seed(2);
            let mut svc = layer.layer(upstream(Arc::default()));
            for _ in 0..100 {
                let _ = send(&mut svc, Answer::Status(503)).await;
            }
        });
    });
    let mut probability = None;
    let mut rejected = None;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let labels: Vec<_> = key.key().labels().map(|l| (l.key(), l.value())).collect();
        assert_eq!(labels, [("service", "up")]);
        match (key.key().name(), value) {
            ("meshless_throttle_probability", DebugValue::Gauge(v)) => probability = Some(v.0),
            ("meshless_throttle_rejected_total", DebugValue::Counter(n)) => rejected = Some(n),
            _ => {}
        }
    }
    assert_eq!(probability, Some(0.8));
    assert!(rejected.is_some_and(|n| n > 50), "{rejected:?}");
}
