//! Cancellation is not failure: a request its caller gives up on (`tokio::time::timeout`,
//! `select!`, a dropped future) releases its endpoint and is counted apart, never as a failure,
//! a miss or an ejection. meshless's own timers still charge the endpoint.

mod common;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use meshless::balance::Balance;
use meshless::error::Kind;
use meshless::http::Client;
use meshless::outlier::{OutlierConfig, Status};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tower::{Service, ServiceExt, service_fn};

/// A healthy endpoint: `/` answers in 50 ms, `/slow` in 5 s. Each request head received is
/// announced on the returned channel.
async fn server() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = common::serve_heads(move |head| {
        let _ = tx.send(());
        async move {
            let wait = if head.starts_with(b"GET /slow") {
                5_000
            } else {
                50
            };
            sleep(Duration::from_millis(wait)).await;
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
        }
    })
    .await;
    (addr, rx)
}

#[tokio::test]
async fn cancelled_requests_are_not_charged_to_the_endpoint() {
    let (a, mut received_a) = server().await;
    let (b, mut received_b) = server().await;
    let client = Client::builder()
        .endpoints([a.to_string(), b.to_string()])
        .metrics(false)
        .build()
        .unwrap();

    // By `tokio::time::timeout`: the endpoint would answer in 5 s.
    for _ in 0..4 {
        let gave_up = timeout(Duration::from_millis(10), client.get("/slow")).await;
        assert!(gave_up.is_err(), "the caller gave up first");
    }
    // By `select!`, once the request has reached an endpoint.
    let drain = |rx: &mut mpsc::UnboundedReceiver<()>| while rx.try_recv().is_ok() {};
    for _ in 0..3 {
        drain(&mut received_a);
        drain(&mut received_b);
        let call = client.get("/slow");
        tokio::pin!(call);
        tokio::select! {
            // The call first, so that it has reached the balancer whatever the signals say.
            biased;
            _ = &mut call => panic!("answered before the caller gave up"),
            _ = received_a.recv() => {}
            _ = received_b.recv() => {}
        }
    }
    // By dropping the future (its task aborted) once the request has reached an endpoint.
    for _ in 0..2 {
        drain(&mut received_a);
        drain(&mut received_b);
        let task = tokio::spawn(client.get("/slow"));
        tokio::select! {
            _ = received_a.recv() => {}
            _ = received_b.recv() => {}
        }
        // A late signal of an earlier request must not abort this one before it started.
        let in_flight = || client.endpoints().iter().map(|e| e.in_flight).sum::<u32>();
        for _ in 0..10_000 {
            if in_flight() > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(in_flight(), 1);
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    }

    let endpoints = client.endpoints();
    let cancelled: u64 = endpoints.iter().map(|e| e.cancelled).sum();
    assert_eq!(cancelled, 9, "{endpoints:?}");
    for e in &endpoints {
        assert_eq!(e.failures, 0, "{e:?}");
        assert_eq!(e.requests, 0, "{e:?}");
        assert_eq!(e.ejections, 0, "{e:?}");
        assert_eq!(e.in_flight, 0, "{e:?}");
        assert_eq!(e.status, Status::Active, "{e:?}");
        assert!(e.rtt < Duration::from_millis(500), "no miss: {e:?}");
    }
    assert_eq!(client.stats().cancelled, 9);

    // Both endpoints still serve.
    for _ in 0..4 {
        assert_eq!(client.get("/").await.unwrap().status(), 200);
    }
    let failures: u64 = client.endpoints().iter().map(|e| e.failures).sum();
    assert_eq!(failures, 0);
}

#[tokio::test]
async fn an_attempt_timeout_still_charges_the_endpoint() {
    let (addr, _received) = server().await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .attempt_timeout(Duration::from_millis(100))
        .max_retries(0)
        .metrics(false)
        .build()
        .unwrap();
    let err = timeout(Duration::from_secs(5), client.get("/slow"))
        .await
        .expect("the attempt timeout ends the request")
        .unwrap_err();
    // The retry layer reports that no retry was allowed; the attempt's timeout is underneath.
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut kinds = Vec::new();
    while let Some(e) = next {
        if let Some(ours) = e.downcast_ref::<meshless::Error>() {
            kinds.push(ours.kind());
        }
        next = e.source();
    }
    assert!(kinds.contains(&Kind::AttemptTimedOut), "{kinds:?}");
    let endpoint = &client.endpoints()[0];
    assert_eq!(endpoint.failures, 1, "{endpoint:?}");
    assert_eq!(endpoint.cancelled, 0, "{endpoint:?}");
    assert_eq!(endpoint.in_flight, 0, "{endpoint:?}");
}

type Req = Request<Empty<Bytes>>;

/// An in-memory endpoint: `503` at once while failing, else `200` after `latency`.
fn endpoint(
    failing: Arc<AtomicBool>,
    latency: Duration,
    hits: Arc<AtomicUsize>,
) -> impl Service<Req, Response = Response<Empty<Bytes>>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    service_fn(move |_req: Req| {
        let failing = failing.load(Ordering::SeqCst);
        hits.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut res = Response::new(Empty::new());
            if failing {
                *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            } else {
                sleep(latency).await;
            }
            Ok(res)
        }
    })
}

/// A probation probe its caller gives up on neither re-ejects the endpoint nor leaves it
/// waiting for the probe timeout (10 s): the next request to reach it is a new probe.
#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_leaves_the_endpoint_in_probation_for_the_next_probe() {
    let outlier = OutlierConfig::builder()
        .success_rate(None)
        .failure_percentage(None)
        .latency(None)
        .ejection_jitter(0.0)
        .build()
        .unwrap();
    let balance = Balance::builder().outlier(outlier).miss_weight(0.0).build();
    let failing = Arc::new(AtomicBool::new(true));
    let bad_hits = Arc::new(AtomicUsize::new(0));
    balance.insert(
        0,
        endpoint(
            failing.clone(),
            Duration::from_millis(200),
            bad_hits.clone(),
        ),
    );
    for key in 1..3 {
        let healthy = Arc::new(AtomicBool::new(false));
        balance.insert(
            key,
            endpoint(healthy, Duration::from_millis(100), Arc::default()),
        );
    }
    let status = |balance: &Balance<_, _>| balance.endpoints()[0].status;

    // Ejected by five failures in a row.
    for sent in 0.. {
        if matches!(status(&balance), Status::Ejected { .. }) {
            break;
        }
        assert!(sent < 100, "never ejected");
        let _ = balance.clone().oneshot(Request::new(Empty::new())).await;
    }
    let Status::Ejected { until, .. } = status(&balance) else {
        unreachable!()
    };
    failing.store(false, Ordering::SeqCst);
    sleep_until(until).await;
    assert_eq!(status(&balance), Status::Probation);

    // The probe goes out (200 ms) and its caller gives up after 10 ms.
    let hits = bad_hits.load(Ordering::SeqCst);
    for sent in 0.. {
        assert!(sent < 100, "never probed");
        let call = balance.clone().oneshot(Request::new(Empty::new()));
        let _ = timeout(Duration::from_millis(10), call).await;
        if bad_hits.load(Ordering::SeqCst) > hits {
            break;
        }
    }
    let probed_at = Instant::now();
    let stats = &balance.endpoints()[0];
    assert_eq!(stats.status, Status::Probation, "not re-ejected: {stats:?}");
    assert_eq!(stats.ejections, 1, "{stats:?}");
    assert_eq!(stats.cancelled, 1, "{stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");

    // The next requests find a probe due at once, long before the 10 s probe timeout.
    while bad_hits.load(Ordering::SeqCst) == hits + 1 {
        assert!(probed_at.elapsed() < Duration::from_secs(5), "no new probe");
        balance
            .clone()
            .oneshot(Request::new(Empty::new()))
            .await
            .unwrap();
    }
    assert_eq!(status(&balance), Status::Active, "the new probe succeeded");
    assert_eq!(balance.endpoints()[0].ejections, 1);
}
