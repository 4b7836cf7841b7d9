//! The test fleet's finite capacity (`Backend::capacity`), over real sockets on 127.0.0.1.
//!
//! Deterministic by structure: workers are held by requests that hang (or take far longer
//! than the test), and each step waits for the backend's own counters to show the request
//! where it should be before sending the next. The only timing assertions are lower bounds
//! that the backend's own timers guarantee.

#![cfg(feature = "testing")]

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, Error as ClientError};
use hyper_util::rt::TokioExecutor;
use meshless::testing::{Backend, Behavior, Counters, Fleet, Latency, Phase, Refusal};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

/// Long enough never to be reached when things work; bounds a test when they do not.
const LIMIT: Duration = Duration::from_secs(5);

type Response = http::Response<Incoming>;

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn h2_client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

fn send(
    client: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
) -> JoinHandle<Result<Response, ClientError>> {
    let uri: http::Uri = format!("http://{addr}/").parse().expect("a valid URI");
    tokio::spawn(client.get(uri))
}

/// Waits (in real time, up to `LIMIT`) until `condition` holds.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn finished(
    request: JoinHandle<Result<Response, ClientError>>,
) -> Result<Response, ClientError> {
    timeout(LIMIT, request)
        .await
        .expect("the request completes")
        .expect("the task does not panic")
}

fn state(c: &Counters) -> (u64, u64, u64, u64, u64) {
    (
        c.served(),
        c.queued(),
        c.refused(),
        c.in_service(),
        c.queue_depth(),
    )
}

#[tokio::test]
async fn beyond_the_workers_requests_queue_and_beyond_the_queue_they_are_refused_at_once() {
    // Two workers held for good by hanging requests, a queue of one.
    let fleet = Fleet::builder()
        .backend(Backend::new(Behavior::healthy().hangs(1.0)).capacity(2, 1))
        .start()
        .await
        .unwrap();
    let (addr, counters) = (fleet.backend(0).addr(), fleet.backend(0).counters());
    let client = client();
    let _in_service = [send(&client, addr), send(&client, addr)];
    eventually("two requests in service", || counters.in_service() == 2).await;
    let _queued = send(&client, addr);
    eventually("one request queued", || counters.queue_depth() == 1).await;
    assert_eq!(state(counters), (2, 1, 0, 2, 1));

    // The fourth finds the workers busy and the queue full: refused, with no worker ever
    // freed (the others hang), so the answer cannot have waited for one.
    let refused = finished(send(&client, addr)).await.expect("an answer");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let s = counters.snapshot();
    assert_eq!(
        (s.served, s.queued, s.refused, s.max_queue_depth),
        (2, 1, 1, 1)
    );
    assert_eq!((s.requests, s.responses_5xx, s.hangs), (4, 1, 2));
    fleet.shutdown().await;
}

#[tokio::test]
async fn the_queue_is_first_in_first_out_and_queueing_adds_to_latency() {
    const SERVICE: Duration = Duration::from_millis(30);
    // One worker, held by a request that hangs until its client gives up on it.
    let fleet = Fleet::builder()
        .backend(Backend::new(Behavior::healthy().hangs(1.0)).capacity(1, 8))
        .start()
        .await
        .unwrap();
    let (addr, counters) = (fleet.backend(0).addr(), fleet.backend(0).counters());
    let holder = send(&h2_client(), addr);
    eventually("the worker is busy", || counters.in_service() == 1).await;
    let client = client();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut requests = Vec::new();
    for i in 1..=3u64 {
        let (client, order) = (client.clone(), Arc::clone(&order));
        requests.push(tokio::spawn(async move {
            let response = finished(send(&client, addr)).await.expect("an answer");
            order.lock().unwrap().push(i);
            (response.status(), Instant::now())
        }));
        // The next is sent only once this one waits in the queue: the order of arrival is
        // the order of sending.
        eventually("the request is queued", || counters.queued() == i).await;
    }
    // Queued requests get the behavior in force when a worker takes them up.
    let slow = Behavior::healthy().latency(Latency::fixed(SERVICE));
    fleet.backend(0).set_behavior(slow).await;
    let released = Instant::now();
    holder.abort();

    let mut ends = Vec::new();
    for request in requests {
        let (status, end) = timeout(LIMIT, request).await.unwrap().unwrap();
        assert_eq!(status, StatusCode::OK);
        ends.push(end - released);
    }
    // One worker: each request is answered after every request before it was served.
    assert_eq!(*order.lock().unwrap(), [1, 2, 3]);
    assert!(ends[2] >= SERVICE * 3, "{ends:?}");
    let s = counters.snapshot();
    assert_eq!(
        (s.served, s.queued, s.refused, s.max_queue_depth),
        (4, 3, 0, 3)
    );
    assert_eq!((counters.in_service(), counters.queue_depth()), (0, 0));
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_refusal_can_reset_the_connection_instead() {
    let fleet = Fleet::builder()
        .backend(
            Backend::new(Behavior::healthy().hangs(1.0))
                .capacity(1, 0)
                .refusal(Refusal::Reset),
        )
        .start()
        .await
        .unwrap();
    let (addr, counters) = (fleet.backend(0).addr(), fleet.backend(0).counters());
    let client = client();
    let _in_service = send(&client, addr);
    eventually("one request in service", || counters.in_service() == 1).await;
    assert!(finished(send(&client, addr)).await.is_err());
    let s = counters.snapshot();
    assert_eq!((s.served, s.queued, s.refused, s.resets), (1, 0, 1, 1));
    assert_eq!(s.responses(), 0);
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_client_that_gives_up_leaves_the_queue_and_frees_its_worker() {
    // HTTP/2, so that dropping a request resets its stream and the backend sees it go.
    let fleet = Fleet::builder()
        .backend(Backend::new(Behavior::healthy().hangs(1.0)).capacity(1, 1))
        .start()
        .await
        .unwrap();
    let (addr, counters) = (fleet.backend(0).addr(), fleet.backend(0).counters());
    let client = h2_client();
    let in_service = send(&client, addr);
    eventually("one request in service", || counters.in_service() == 1).await;
    let queued = send(&client, addr);
    eventually("one request queued", || counters.queue_depth() == 1).await;

    queued.abort();
    eventually("the queue is empty again", || counters.queue_depth() == 0).await;
    in_service.abort();
    eventually("the worker is free again", || counters.in_service() == 0).await;
    // The worker went to nobody (the queue was empty), and is free for the next request.
    let _next = send(&client, addr);
    eventually("the next request in service", || counters.in_service() == 1).await;
    assert_eq!(state(counters), (2, 1, 0, 1, 0));
    fleet.shutdown().await;
}

#[tokio::test]
async fn the_capacity_holds_across_phases() {
    let fleet = Fleet::builder()
        .backend(
            Backend::phases([
                Phase::new(Duration::from_millis(1), Behavior::healthy()),
                Phase::open_ended(Behavior::healthy().hangs(1.0)),
            ])
            .capacity(1, 0),
        )
        .start()
        .await
        .unwrap();
    let (addr, counters) = (fleet.backend(0).addr(), fleet.backend(0).counters());
    eventually("the second phase", || fleet.backend(0).phase() == Some(1)).await;
    let client = client();
    let _hung = send(&client, addr);
    eventually("one request in service", || counters.in_service() == 1).await;
    let refused = finished(send(&client, addr)).await.expect("an answer");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    // And through a switch: the hung request keeps its worker.
    fleet.backend(0).set_behavior(Behavior::healthy()).await;
    let refused = finished(send(&client, addr)).await.expect("an answer");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(counters.refused(), 2);
    fleet.shutdown().await;
}

#[tokio::test]
async fn without_a_capacity_every_request_is_served_at_once() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().hangs(1.0))
        .start()
        .await
        .unwrap();
    let (addr, counters) = (fleet.backend(0).addr(), fleet.backend(0).counters());
    let client = h2_client();
    let _hung: Vec<_> = (0..50).map(|_| send(&client, addr)).collect();
    eventually("every request hangs", || counters.hangs() == 50).await;
    assert_eq!(state(counters), (0, 0, 0, 0, 0));
    fleet.shutdown().await;
}
