//! Kubernetes discovery: every endpoint removed while requests are in flight, requests
//! failing fast (typed) with none, and endpoints re-added while a request waits.
#![cfg(all(feature = "kube", feature = "testing"))]

#[path = "kube/support.rs"]
#[allow(dead_code)] // this file uses part of the shared support
mod support;

use meshless::error::Kind;
use meshless::http::Client;
use meshless::kube::{KubeService, MockApiServer};
use meshless::testing::{Backend, Behavior, Fleet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::*;

async fn client_for(api: &MockApiServer, fail_fast: Option<Duration>) -> Client {
    let service = KubeService::new(api.client().expect("kube"), "shop", "web").port("http");
    let mut balance = meshless::balance::Balance::builder().default_rtt(Duration::from_micros(1));
    if let Some(ff) = fail_fast {
        balance = balance.fail_fast(ff);
    }
    let client = Client::builder()
        .kubernetes(service)
        .balance(balance)
        .max_retries(0)
        .deadline(Duration::from_secs(30))
        .build()
        .expect("client");
    watching(api, 1).await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_removed_in_flight_requests_finish_and_new_ones_fail_fast() {
    let (a, b) = (Gate::start().await, Gate::start().await);
    let fleet = Fleet::builder()
        .backends(vec![Backend::new(Behavior::healthy()); 1])
        .start()
        .await
        .unwrap();
    let c = fleet.addrs()[0].port();
    let p = [a.addr.port(), b.addr.port(), c];
    let api = MockApiServer::start().await.expect("mock");
    api.set_list(fixture("list-initial.json", &p));
    let client = client_for(&api, None).await;
    eventually("A and B", || ports(&client) == sorted(&p[..2])).await;

    // Four requests held in flight across A and B.
    let mut held = Vec::new();
    for _ in 0..4 {
        let cl = client.clone();
        held.push(in_flight(async move {
            let res = cl
                .get("/")
                .await
                .map_err(|e| format!("{:?}: {e}", e.kind()))?;
            let status = res.status();
            let body = http_body_util::BodyExt::collect(res.into_body())
                .await
                .map_err(|e| format!("body: {e}"))?;
            Ok::<_, String>((status, body.to_bytes()))
        }));
    }
    eventually("four held", || a.arrived() + b.arrived() == 4).await;
    eprintln!("held: A {} B {}", a.arrived(), b.arrived());

    // Both slices deleted: no endpoint left.
    api.send(&fixture("watch-a-first-slice-deleted.json", &p));
    api.send(&fixture("watch-b-deleted.json", &p));
    eventually("none", || client.endpoints().is_empty()).await;

    // A new request fails, typed, within the default fail-fast time (3 s), not hangs.
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), client.get("/"))
        .await
        .expect("no hang")
        .expect_err("no endpoint");
    eprintln!(
        "new request: {:?} after {:?}",
        err.kind(),
        started.elapsed()
    );
    assert_eq!(err.kind(), Kind::NoReadyEndpoint);
    assert!(started.elapsed() < Duration::from_secs(4));

    // The held ones still finish, with their bodies.
    a.release();
    b.release();
    for h in held {
        let r = tokio::time::timeout(Duration::from_secs(10), h)
            .await
            .expect("finishes")
            .expect("task");
        let (status, body) = r.expect("an in-flight request of a removed endpoint finishes");
        assert_eq!(status, 200);
        assert_eq!(&body[..], b"finished while draining");
    }
    let stats = client.stats();
    eprintln!(
        "stats: requests {} successes {} failures {}",
        stats.requests, stats.successes, stats.failures
    );
    assert_eq!(stats.successes, 4);

    // Re-added: C becomes ready and serves.
    api.send(&fixture("watch-c-ready.json", &p));
    eventually("C", || ports(&client) == [c]).await;
    get_ok(&client, 5).await;
}

/// A request made while there is no endpoint waits (fail fast 3 s) and is served by an endpoint
/// added during the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_for_an_endpoint_takes_one_added_meanwhile() {
    let fleet = Fleet::builder()
        .backends(vec![Backend::new(Behavior::healthy()); 3])
        .start()
        .await
        .unwrap();
    let p: Vec<u16> = fleet.addrs().iter().map(SocketAddr::port).collect();
    let api = MockApiServer::start().await.expect("mock");
    api.set_list(fixture("list-initial.json", &p));
    let client = client_for(&api, None).await;
    eventually("A and B", || ports(&client) == sorted(&p[..2])).await;
    api.send(&fixture("watch-a-first-slice-deleted.json", &p));
    api.send(&fixture("watch-b-deleted.json", &p));
    eventually("none", || client.endpoints().is_empty()).await;

    let cl = client.clone();
    let waiting = in_flight(async move { cl.get("/").await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "waits for an endpoint (fail fast 3 s)"
    );
    api.send(&fixture("watch-c-ready.json", &p));
    let r = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("no hang")
        .expect("task");
    eprintln!(
        "waiting request: {:?}",
        r.as_ref().map_err(|e| (e.kind(), e.to_string()))
    );
    assert_eq!(r.expect("served by C"), 200);
    assert_eq!(fleet.backend(2).counters().requests(), 1);
}

/// Endpoints removed and re-added in quick succession while requests stream: every request
/// ends once, none is lost (a 200 or a typed error), and the in-flight gauge returns to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn churn_loses_nothing() {
    let fleet = Fleet::builder()
        .backends(vec![Backend::new(Behavior::healthy()); 3])
        .start()
        .await
        .unwrap();
    let p: Vec<u16> = fleet.addrs().iter().map(SocketAddr::port).collect();
    let api = MockApiServer::start().await.expect("mock");
    api.set_list(fixture("list-initial.json", &p));
    let client = client_for(&api, Some(Duration::from_millis(200))).await;
    eventually("A and B", || ports(&client) == sorted(&p[..2])).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let cl = client.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let (mut ok, mut err) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match cl.get("/").await {
                    Ok(r) => {
                        assert_eq!(r.status(), 200);
                        http_body_util::BodyExt::collect(r.into_body())
                            .await
                            .expect("body");
                        ok += 1;
                    }
                    Err(e) => err.push(e.kind()),
                }
            }
            (ok, err)
        }));
    }
    for _ in 0..5 {
        api.send(&fixture("watch-b-deleted.json", &p));
        api.send(&fixture("watch-c-ready.json", &p));
        eventually("B out, C in", || ports(&client) == sorted(&[p[0], p[2]])).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut ok, mut errs) = (0, Vec::new());
    for w in workers {
        let (o, e) = w.await.expect("worker");
        ok += o;
        errs.extend(e);
    }
    let stats = client.stats();
    let served: u64 = fleet
        .backends()
        .iter()
        .map(|b| b.counters().requests())
        .sum();
    eprintln!(
        "ok {ok} errors {errs:?} served {served} stats requests {} successes {} failures {}",
        stats.requests, stats.successes, stats.failures
    );
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(served, ok);
    for e in client.endpoints() {
        assert_eq!(e.in_flight, 0, "{e:?}");
    }
}
