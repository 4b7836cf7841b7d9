//! The test fleet (`meshless::testing`), over real sockets on 127.0.0.1, seen through a plain
//! hyper-util client.
//!
//! Every assertion is deterministic: fault shares are 0 or 1, and where real time is involved
//! the test waits for a condition (with a generous limit) rather than for a fixed time. The
//! one exception is a hang, where "did not complete within 200 ms" is the assertion itself.

#![cfg(feature = "testing")]

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, Error as ClientError};
use hyper_util::rt::TokioExecutor;
use meshless::testing::{BODY_LEN, Backend, Behavior, Fleet, Latency, Phase};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Long enough never to be reached when things work; bounds a test when they do not.
const LIMIT: Duration = Duration::from_secs(5);

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn h2_client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

fn uri(addr: SocketAddr) -> http::Uri {
    format!("http://{addr}/")
        .parse()
        .expect("an address makes a valid URI")
}

async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
) -> Result<Response<Incoming>, ClientError> {
    timeout(LIMIT, client.get(uri(addr)))
        .await
        .expect("the request completes")
}

async fn body(response: Response<Incoming>) -> Bytes {
    response
        .into_body()
        .collect()
        .await
        .expect("the body arrives")
        .to_bytes()
}

/// Waits (in real time, up to `LIMIT`) until `condition` holds.
async fn eventually(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !condition().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn refused(addr: SocketAddr) -> bool {
    matches!(TcpStream::connect(addr).await, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused)
}

#[tokio::test]
async fn healthy_answers_ok_over_http1_and_http2_and_counts() {
    let fleet = Fleet::builder()
        .backend(Backend::new(Behavior::healthy()))
        .start()
        .await
        .expect("the fleet starts");
    let addr = fleet.backend(0).addr();
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);

    // HTTP/1.1 without a pool: one connection per request, so that the count is exact.
    // HTTP/2: one connection for every request.
    let h1 = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    for client in [h1, h2_client()] {
        for _ in 0..3 {
            let response = get(&client, addr).await.expect("an answer");
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(body(response).await, "ok");
        }
    }
    let counters = fleet.backend(0).counters().snapshot();
    assert_eq!(counters.requests, 6);
    assert_eq!(counters.responses_2xx, 6);
    assert_eq!(counters.responses(), 6);
    assert_eq!(counters.connections, 3 + 1);
    assert_eq!((counters.resets, counters.hangs), (0, 0));
    assert_eq!(fleet.totals(), counters);
    fleet.shutdown().await;
}

#[tokio::test]
async fn errors_answer_with_the_status_given() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().errors(1.0, StatusCode::SERVICE_UNAVAILABLE))
        .backend(Behavior::healthy().errors(0.0, StatusCode::SERVICE_UNAVAILABLE))
        .start()
        .await
        .expect("the fleet starts");
    let client = client();
    for _ in 0..5 {
        let failing = get(&client, fleet.backend(0).addr())
            .await
            .expect("an answer");
        assert_eq!(failing.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(failing.headers().get(RETRY_AFTER).is_none());
        let fine = get(&client, fleet.backend(1).addr())
            .await
            .expect("an answer");
        assert_eq!(fine.status(), StatusCode::OK);
    }
    assert_eq!(fleet.backend(0).counters().responses_5xx(), 5);
    assert_eq!(fleet.backend(0).counters().responses_2xx(), 0);
    assert_eq!(fleet.backend(1).counters().responses_2xx(), 5);
    fleet.shutdown().await;
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after() {
    let throttled = Behavior::healthy()
        .errors(1.0, StatusCode::TOO_MANY_REQUESTS)
        .retry_after(HeaderValue::from_static("7"));
    let fleet = Fleet::builder()
        .backend(throttled)
        .start()
        .await
        .expect("the fleet starts");
    let response = get(&client(), fleet.backend(0).addr())
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response.headers().get(RETRY_AFTER).map(|v| v.as_bytes()),
        Some(&b"7"[..])
    );
    assert_eq!(fleet.backend(0).counters().responses_4xx(), 1);
    fleet.shutdown().await;
}

#[tokio::test]
async fn resets_fail_the_request_over_http1_and_http2() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().resets(1.0))
        .start()
        .await
        .expect("the fleet starts");
    let addr = fleet.backend(0).addr();
    for client in [client(), h2_client()] {
        let result = get(&client, addr).await;
        assert!(result.is_err(), "a reset request got {result:?}");
    }
    let counters = fleet.backend(0).counters().snapshot();
    assert_eq!(counters.resets, 2);
    assert_eq!(counters.responses(), 0);
    fleet.shutdown().await;
}

#[tokio::test]
async fn hangs_never_answer_and_keep_the_connection_open() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().hangs(1.0))
        .start()
        .await
        .expect("the fleet starts");
    // On a raw socket: neither an answer nor a close nor a reset, just silence.
    let mut tcp = TcpStream::connect(fleet.backend(0).addr())
        .await
        .expect("connected");
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: fleet\r\n\r\n")
        .await
        .expect("the request is sent");
    let mut buf = [0u8; 64];
    let read = timeout(Duration::from_millis(200), tcp.read(&mut buf)).await;
    assert!(read.is_err(), "the backend answered or closed: {read:?}");

    // And through the pooled client, the same.
    let pending = timeout(
        Duration::from_millis(200),
        client().get(uri(fleet.backend(0).addr())),
    )
    .await;
    assert!(pending.is_err(), "a hung request completed: {pending:?}");

    let counters = fleet.backend(0).counters();
    eventually("the hangs are counted", async || counters.hangs() == 2).await;
    assert_eq!(counters.resets(), 0);
    assert_eq!(counters.snapshot().responses(), 0);
    fleet.shutdown().await;
}

#[tokio::test]
async fn down_refuses_connections_then_listens_again_on_the_same_port() {
    // Down from the start for 300 ms, then up for good.
    let started = Instant::now();
    let fleet = Fleet::builder()
        .backend(Backend::phases([
            Phase::new(Duration::from_millis(300), Behavior::down()),
            Phase::open_ended(Behavior::healthy()),
        ]))
        .start()
        .await
        .expect("the fleet starts");
    let addr = fleet.backend(0).addr();
    assert!(refused(addr).await, "a down backend accepted a connection");
    let error = get(&client(), addr).await.expect_err("refused");
    assert!(error.is_connect(), "{error:?}");

    eventually("the backend is up again", async || !refused(addr).await).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(fleet.backend(0).phase(), Some(1));
    let response = get(&client(), addr).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    fleet.shutdown().await;
}

#[tokio::test]
async fn going_down_resets_open_connections() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy())
        .start()
        .await
        .expect("the fleet starts");
    let backend = fleet.backend(0);
    let addr = backend.addr();

    // An idle kept-alive HTTP/1.1 connection, and an HTTP/2 connection with a hung request.
    let (mut idle, idle_conn) = connect_http1(addr).await;
    let response = idle
        .send_request(Request::new(Empty::<Bytes>::new()))
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    backend.set_behavior(Behavior::healthy().hangs(1.0)).await;
    let h2 = h2_client();
    let hung = tokio::spawn(async move { h2.get(uri(addr)).await });
    eventually("the request hangs", async || {
        backend.counters().hangs() == 1
    })
    .await;

    backend.set_behavior(Behavior::down()).await;
    // Both connections were reset before `set_behavior` returned.
    assert!(refused(addr).await);
    let ended = timeout(LIMIT, idle_conn).await;
    assert!(ended.is_ok(), "the idle connection is still open");
    let request = Request::new(Empty::<Bytes>::new());
    assert!(idle.send_request(request).await.is_err());
    let hung = timeout(LIMIT, hung).await.expect("the hung request ends");
    assert!(hung.expect("the task completes").is_err());

    backend.set_behavior(Behavior::healthy()).await;
    assert_eq!(backend.addr(), addr);
    let response = get(&client(), addr).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(backend.counters().connections(), 3);
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_port_taken_while_down_is_listened_on_again_once_free() {
    let fleet = Fleet::builder()
        .backend(Behavior::down())
        .start()
        .await
        .expect("the fleet starts");
    let backend = fleet.backend(0);
    let squatter = std::net::TcpListener::bind(backend.addr()).expect("the port is free");
    backend.set_behavior(Behavior::healthy()).await; // cannot listen: retries
    drop(squatter);
    eventually("the backend listens again", async || {
        match timeout(LIMIT, client().get(uri(backend.addr()))).await {
            Ok(Ok(response)) => response.status() == StatusCode::OK,
            _ => false,
        }
    })
    .await;
    fleet.shutdown().await;
}

/// A bare HTTP/1.1 connection, and the task driving it (its result: how it ended).
async fn connect_http1(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tcp = TcpStream::connect(addr).await.expect("connected");
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .expect("handshake");
    (sender, tokio::spawn(conn))
}

#[tokio::test]
async fn set_behavior_switches_at_once_and_ends_the_phases() {
    let fleet = Fleet::builder()
        .backend(Backend::phases([
            Phase::new(Duration::from_secs(60), Behavior::healthy()),
            Phase::open_ended(Behavior::down()),
        ]))
        .start()
        .await
        .expect("the fleet starts");
    let backend = fleet.backend(0);
    let client = client();
    assert_eq!(backend.phase(), Some(0));
    backend
        .set_behavior(Behavior::healthy().errors(1.0, StatusCode::BAD_GATEWAY))
        .await;
    assert_eq!(backend.phase(), None);
    let response = get(&client, backend.addr()).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    backend.set_behavior(Behavior::healthy()).await;
    let response = get(&client, backend.addr()).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    fleet.shutdown().await;
}

/// On tokio's paused clock, phases switch exactly when their time is up. (No request is sent:
/// with the clock paused, the runtime would skip ahead while waiting on a socket.)
#[tokio::test(start_paused = true)]
async fn phases_switch_in_order_on_tokio_time() {
    let fleet = Fleet::builder()
        .backend(
            Backend::phases([
                Phase::new(Duration::from_millis(100), Behavior::healthy()),
                Phase::new(
                    Duration::from_millis(100),
                    Behavior::healthy().errors(1.0, StatusCode::SERVICE_UNAVAILABLE),
                ),
                Phase::new(Duration::from_millis(100), Behavior::down()),
            ])
            .looping(),
        )
        .start()
        .await
        .expect("the fleet starts");
    let backend = fleet.backend(0);
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push((backend.phase(), backend.behavior().is_down()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        tokio::task::yield_now().await;
    }
    let phases: Vec<_> = seen.iter().map(|(phase, _)| phase.unwrap_or(99)).collect();
    assert_eq!(phases, [0, 1, 2, 0, 1, 2, 0]);
    assert!(seen[2].1 && seen[5].1 && !seen[3].1);
    fleet.shutdown().await;
}

#[tokio::test]
async fn phases_switch_in_order_in_real_time() {
    let fleet = Fleet::builder()
        .backend(Backend::phases([
            Phase::new(
                Duration::from_millis(150),
                Behavior::healthy().errors(1.0, StatusCode::SERVICE_UNAVAILABLE),
            ),
            Phase::new(
                Duration::from_millis(150),
                Behavior::healthy().errors(1.0, StatusCode::TOO_MANY_REQUESTS),
            ),
            Phase::open_ended(Behavior::healthy()),
        ]))
        .start()
        .await
        .expect("the fleet starts");
    let client = client();
    let addr = fleet.backend(0).addr();
    let mut statuses = Vec::new();
    eventually("the last phase", async || {
        let status = get(&client, addr).await.expect("an answer").status();
        if statuses.last() != Some(&status) {
            statuses.push(status);
        }
        status == StatusCode::OK
    })
    .await;
    // No status from a later phase before an earlier one. (The middle phase is seen unless a
    // request took longer than it lasts, on a very busy machine.)
    assert_eq!(statuses.first(), Some(&StatusCode::SERVICE_UNAVAILABLE));
    assert!(
        statuses == [503, 429, 200] || statuses == [503, 200],
        "{statuses:?}"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let delay = Duration::from_millis(100);
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().latency(Latency::fixed(delay)))
        .start()
        .await
        .expect("the fleet starts");
    let started = Instant::now();
    let response = get(&client(), fleet.backend(0).addr())
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= delay);
    fleet.shutdown().await;
}

#[tokio::test]
async fn request_bodies_are_checked_and_counted_and_response_bodies_sized() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().body_size(100_000))
        .start()
        .await
        .expect("the fleet starts");
    let addr = fleet.backend(0).addr();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let post = |declared: Option<&'static str>| {
        let mut request = Request::builder().method(Method::POST).uri(uri(addr));
        if let Some(declared) = declared {
            request = request.header(BODY_LEN, declared);
        }
        let request = request
            .body(Full::new(Bytes::from_static(b"hello")))
            .expect("a valid request");
        let client = client.clone();
        async move {
            timeout(LIMIT, client.request(request))
                .await
                .expect("the request completes")
                .expect("an answer")
        }
    };

    let intact = post(Some("5")).await;
    assert_eq!(intact.status(), StatusCode::OK);
    assert_eq!(
        intact.headers().get(BODY_LEN).map(|v| v.as_bytes()),
        Some(&b"5"[..])
    );
    assert_eq!(body(intact).await.len(), 100_000);

    for declared in ["4", "6", "five", ""] {
        let mangled = post(Some(declared)).await;
        assert_eq!(
            mangled.status(),
            StatusCode::BAD_REQUEST,
            "x-body-len: {declared:?}"
        );
        assert_eq!(
            mangled.headers().get(BODY_LEN).map(|v| v.as_bytes()),
            Some(&b"5"[..])
        );
    }

    let unchecked = post(None).await;
    assert_eq!(unchecked.status(), StatusCode::OK);

    let counters = fleet.backend(0).counters().snapshot();
    assert_eq!(counters.body_bytes, 6 * 5);
    assert_eq!((counters.responses_2xx, counters.responses_4xx), (2, 4));
    fleet.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_every_port() {
    let fleet = Fleet::builder()
        .backends(vec![Backend::new(Behavior::healthy()); 3])
        .start()
        .await
        .expect("the fleet starts");
    let addrs = fleet.addrs();
    let (mut open, _conn) = connect_http1(addrs[0]).await;
    fleet.shutdown().await;
    for addr in addrs {
        assert!(refused(addr).await);
    }
    let request = Request::new(Empty::<Bytes>::new());
    assert!(open.send_request(request).await.is_err());
}

/// Throughput of one healthy backend, driven by 64 concurrent client tasks for 3 s.
///
/// ```text
/// cargo test --release --features testing --test testing_fleet -- --ignored --nocapture throughput
/// ```
///
/// The client shares the machine with the backend, so this is a lower bound.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a test: run it on purpose"]
async fn throughput() {
    const TASKS: usize = 64;
    const RUN: Duration = Duration::from_secs(3);
    let fleet = Fleet::builder()
        .backend(Behavior::healthy())
        .start()
        .await
        .expect("the fleet starts");
    let addr = fleet.backend(0).addr();
    let client = client();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + RUN;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (client, done, uri) = (client.clone(), Arc::clone(&done), uri(addr));
            tokio::spawn(async move {
                while Instant::now() < stop {
                    let response = client.get(uri.clone()).await.expect("an answer");
                    assert_eq!(response.status(), StatusCode::OK);
                    body(response).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    for task in tasks {
        task.await.expect("a client task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let done = done.load(Ordering::Relaxed);
    let counters = fleet.backend(0).counters().snapshot();
    println!(
        "throughput: {done} requests in {elapsed:.2} s = {:.0} requests/s over {} connections \
         ({} worker threads)",
        done as f64 / elapsed,
        counters.connections,
        tokio::runtime::Handle::current().metrics().num_workers(),
    );
    assert_eq!(counters.responses_2xx, done);
    fleet.shutdown().await;
}
