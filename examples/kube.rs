//! Kubernetes discovery without a cluster: a `meshless::http::Client` following the Service
//! `shop/web` through kube's own client and watcher, against a mock API server that serves
//! recorded EndpointSlice responses (tests/fixtures/kube/), in front of four real backends on
//! 127.0.0.1. It follows a pod becoming ready, a scale-up, a terminating pod (drained: its
//! request in flight finishes) and a watch restart (410 Gone, relist), printing each step.
//!
//! ```text
//! cargo run --example kube --features kube
//! ```
//!
//! Against a real cluster, from a pod whose service account may `list` and `watch`
//! `endpointslices` (group `discovery.k8s.io`) in the namespace, the whole setup is:
//!
//! ```text
//! let kube = kube::Client::try_default().await?; // in-cluster config, or ~/.kube/config
//! let client = meshless::http::Client::builder()
//!     .kubernetes(KubeService::new(kube, "shop", "web").port("http"))
//!     .authority("web.shop.svc")
//!     .build()?;
//! ```
//!
//! with, in your Cargo.toml, `kube` (its default features bring rustls for the API server's
//! TLS) and `k8s-openapi` with the feature of your cluster's version, e.g. `["v1_33"]`.

use meshless::balance::Balance;
use meshless::http::Client;
use meshless::kube::{KubeService, MockApiServer};
use meshless::testing::{Backend, Behavior, Fleet, Latency};
use std::time::{Duration, Instant};

/// The recorded responses, their slices' ports replaced by the backends' ({{A}}..{{D}}).
fn fixture(text: &str, ports: &[u16]) -> String {
    let mut text = text.to_string();
    for (slot, port) in ["{{A}}", "{{B}}", "{{C}}", "{{D}}"].iter().zip(ports) {
        text = text.replace(slot, &port.to_string());
    }
    text
}

const LIST: &str = include_str!("../tests/fixtures/kube/list-initial.json");
const C_READY: &str = include_str!("../tests/fixtures/kube/watch-c-ready.json");
const D_ADDED: &str = include_str!("../tests/fixtures/kube/watch-d-added.json");
const B_TERMINATING: &str = include_str!("../tests/fixtures/kube/watch-b-terminating.json");
const GONE: &str = include_str!("../tests/fixtures/kube/watch-gone.json");
const RELIST: &str = include_str!("../tests/fixtures/kube/list-relist.json");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fleet = Fleet::builder()
        .backends(vec![Backend::new(Behavior::healthy()); 4])
        .start()
        .await?;
    let ports: Vec<u16> = fleet.addrs().iter().map(|a| a.port()).collect();
    let name = |port: u16| ["A", "B", "C", "D"][ports.iter().position(|p| *p == port).unwrap_or(0)];

    let api = MockApiServer::start().await?;
    api.set_list(fixture(LIST, &ports));
    println!(
        "mock API server at {}; Service shop/web, port \"http\"",
        api.url()
    );
    println!("pods A..D on 127.0.0.1 ports {ports:?}\n");

    let client = Client::builder()
        .kubernetes(KubeService::new(api.client()?, "shop", "web").port("http"))
        // A new pod is tried soon: the default first guess of its round trip, 30 ms, would
        // keep it idle for long beside pods measured at a fraction of a millisecond here.
        .balance(Balance::builder().default_rtt(Duration::from_millis(1)))
        .build()?;
    let show = |client: &Client| {
        let mut names: Vec<&str> = client
            .endpoints()
            .iter()
            .map(|e| name(e.key.port()))
            .collect();
        names.sort();
        names.join(", ")
    };

    wait_until(|| client.endpoints().len() == 2).await?;
    println!(
        "[list]    endpoints: {}   (C's pod is not ready yet)",
        show(&client)
    );
    requests(&client, &fleet, 20).await?;

    api.send(&fixture(C_READY, &ports));
    wait_until(|| client.endpoints().len() == 3).await?;
    println!(
        "[watch]   C ready           -> endpoints: {}",
        show(&client)
    );
    api.send(&fixture(D_ADDED, &ports));
    wait_until(|| client.endpoints().len() == 4).await?;
    println!(
        "[watch]   D added (scale-up) -> endpoints: {}",
        show(&client)
    );
    requests(&client, &fleet, 40).await?;

    // B slows down to 300 ms, so that a request to it is still in flight when its pod
    // terminates: requests until one is.
    let slow = Behavior::healthy().latency(Latency::fixed(Duration::from_millis(300)));
    fleet.backend(1).set_behavior(slow).await;
    let mut in_flight = Vec::new();
    let b_busy = |client: &Client| {
        client
            .endpoints()
            .iter()
            .any(|e| e.key.port() == ports[1] && e.in_flight > 0)
    };
    while !b_busy(&client) && in_flight.len() < 200 {
        let c = client.clone();
        in_flight.push(tokio::spawn(async move { c.get("/").await }));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let on_b = client
        .endpoints()
        .iter()
        .find(|e| e.key.port() == ports[1])
        .map_or(0, |e| e.in_flight);
    let sent = Instant::now();
    api.send(&fixture(B_TERMINATING, &ports));
    wait_until(|| client.endpoints().len() == 3).await?;
    println!(
        "[watch]   B terminating     -> endpoints: {}   (removed with {on_b} request(s) in flight on it)",
        show(&client)
    );
    let mut ok = 0;
    for request in in_flight {
        if request.await?.is_ok_and(|res| res.status() == 200) {
            ok += 1;
        }
    }
    println!(
        "          the {} requests sent meanwhile finished, B's too: {ok} OK, the last {:?} after the event",
        ok,
        sent.elapsed()
    );
    let b_before = fleet.backend(1).counters().requests();
    requests(&client, &fleet, 20).await?;
    println!(
        "          B got {} of those new requests",
        fleet.backend(1).counters().requests() - b_before
    );

    let before: Vec<(u16, u64)> = client
        .endpoints()
        .iter()
        .map(|e| (e.key.port(), e.requests))
        .collect();
    api.set_list(fixture(RELIST, &ports));
    api.send(GONE);
    let (seen, _) = api.wait(Duration::from_secs(10), |s| s.lists >= 2).await;
    wait_until(|| client.endpoints().len() == 3).await?;
    println!(
        "\n[watch]   410 Gone -> relist #{} -> endpoints: {}",
        seen.lists,
        show(&client)
    );
    for (port, requests) in before {
        let now = client
            .endpoints()
            .iter()
            .find(|e| e.key.port() == port)
            .map_or(0, |e| e.requests);
        println!(
            "          {}: {requests} requests measured before, {now} after: kept, not removed and re-added",
            name(port)
        );
    }
    Ok(())
}

/// Sends `n` GETs and prints where they went.
async fn requests(
    client: &Client,
    fleet: &Fleet,
    n: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let before: Vec<u64> = fleet
        .backends()
        .iter()
        .map(|b| b.counters().requests())
        .collect();
    for _ in 0..n {
        let res = client.get("/").await?;
        http_body_util::BodyExt::collect(res.into_body())
            .await
            .map_err(|e| e.to_string())?;
    }
    let split: Vec<String> = fleet
        .backends()
        .iter()
        .zip(before)
        .zip(["A", "B", "C", "D"])
        .map(|((b, before), name)| format!("{name} {}", b.counters().requests() - before))
        .collect();
    println!("          {n} GETs: {}", split.join(", "));
    Ok(())
}

/// Waits until `check` holds, at most 10 s.
async fn wait_until(check: impl Fn() -> bool) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        if Instant::now() > deadline {
            return Err("the client did not follow in 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
