//! Kubernetes discovery churn — flapping readiness, a slice deleted and re-created,
//! a port renamed, duplicates across slices, watch errors — against the mock API server.
#![cfg(all(feature = "kube", feature = "testing"))]

#[path = "kube/support.rs"]
#[allow(dead_code)]
mod support;

use meshless::http::Client;
use meshless::kube::{KubeService, MockApiServer};
use std::time::Duration;
use support::*;

/// One endpoint of a slice: its port is the slice's, so each backend has a slice of its own
/// (all on 127.0.0.1).
struct Ep {
    ready: bool,
    terminating: bool,
    pod: &'static str,
}

fn slice_json(name: &str, rv: u32, port_name: &str, port: u16, eps: &[Ep]) -> String {
    let endpoints: Vec<String> = eps
        .iter()
        .map(|e| {
            format!(
                r#"{{"addresses":["127.0.0.1"],"conditions":{{"ready":{},"serving":{},"terminating":{}}},"targetRef":{{"kind":"Pod","namespace":"shop","name":"{}"}}}}"#,
                e.ready, e.ready, e.terminating, e.pod
            )
        })
        .collect();
    format!(
        r#"{{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{{"name":"{name}","namespace":"shop","resourceVersion":"{rv}","labels":{{"kubernetes.io/service-name":"web"}}}},"addressType":"IPv4","endpoints":[{}],"ports":[{{"name":"{port_name}","protocol":"TCP","port":{port}}}]}}"#,
        endpoints.join(",")
    )
}

fn event(kind: &str, slice: String) -> String {
    format!(r#"{{"type":"{kind}","object":{slice}}}"#)
}

fn list(rv: u32, slices: &[String]) -> String {
    format!(
        r#"{{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{{"resourceVersion":"{rv}"}},"items":[{}]}}"#,
        slices.join(",")
    )
}

fn ready(pod: &'static str) -> Ep {
    Ep {
        ready: true,
        terminating: false,
        pod,
    }
}

fn not_ready(pod: &'static str) -> Ep {
    Ep {
        ready: false,
        terminating: false,
        pod,
    }
}

async fn client_for(api: &MockApiServer) -> Client {
    let service = KubeService::new(api.client().expect("kube"), "shop", "web").port("http");
    let client = Client::builder()
        .kubernetes(service)
        .balance(
            meshless::balance::Balance::builder()
                .default_rtt(Duration::from_micros(1))
                .fail_fast(Duration::from_millis(200)),
        )
        .max_retries(0)
        .deadline(Duration::from_secs(30))
        .build()
        .expect("client");
    watching(api, 1).await;
    client
}

/// A's pod flaps ready / not ready while a request is held on it; a port is renamed away and
/// back; a slice is deleted and re-created; the same address is listed by two slices. Every
/// step is followed, the held request finishes and is counted, and nothing is in flight at
/// the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_renamed_recreated_and_duplicated_slices_are_followed() {
    let gate = Gate::start().await;
    let (fleet_a, fleet_b) = (gate.addr.port(), Gate::start().await);
    fleet_b.release();
    let b = fleet_b.addr.port();
    let a = fleet_a;
    let api = MockApiServer::start().await.expect("mock");
    api.set_list(list(
        100,
        &[
            slice_json("web-a", 90, "http", a, &[ready("pa")]),
            slice_json("web-b", 91, "http", b, &[ready("pb")]),
        ],
    ));
    let client = client_for(&api).await;
    eventually("A and B", || ports(&client) == sorted(&[a, b])).await;

    // A request held at A.
    let mut held = Vec::new();
    while gate.arrived() == 0 {
        held.push(in_flight(client.get("/")));
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Those that went to B finish at once.
    }
    // A flaps 20 times; it ends ready.
    let mut rv = 200;
    for _ in 0..20 {
        rv += 1;
        api.send(&event(
            "MODIFIED",
            slice_json("web-a", rv, "http", a, &[not_ready("pa")]),
        ));
        rv += 1;
        api.send(&event(
            "MODIFIED",
            slice_json("web-a", rv, "http", a, &[ready("pa")]),
        ));
    }
    rv += 1;
    api.send(&event(
        "MODIFIED",
        slice_json("web-a", rv, "http", a, &[not_ready("pa")]),
    ));
    eventually("A out after flapping", || ports(&client) == vec![b]).await;
    rv += 1;
    api.send(&event(
        "MODIFIED",
        slice_json("web-a", rv, "http", a, &[ready("pa")]),
    ));
    eventually("A back", || ports(&client) == sorted(&[a, b])).await;

    // B's port is renamed: B is no endpoint of port "http" any more; renamed back, it is.
    rv += 1;
    api.send(&event(
        "MODIFIED",
        slice_json("web-b", rv, "web", b, &[ready("pb")]),
    ));
    eventually("B out (port renamed)", || ports(&client) == vec![a]).await;
    rv += 1;
    api.send(&event(
        "MODIFIED",
        slice_json("web-b", rv, "http", b, &[ready("pb")]),
    ));
    eventually("B back (port renamed back)", || {
        ports(&client) == sorted(&[a, b])
    })
    .await;

    // B's slice deleted and re-created under the same name.
    rv += 1;
    api.send(&event(
        "DELETED",
        slice_json("web-b", rv, "http", b, &[ready("pb")]),
    ));
    eventually("B out (deleted)", || ports(&client) == vec![a]).await;
    rv += 1;
    api.send(&event(
        "ADDED",
        slice_json("web-b", rv, "http", b, &[ready("pb")]),
    ));
    eventually("B back (re-created)", || ports(&client) == sorted(&[a, b])).await;

    // B listed by a second slice too; the first drops it: it stays until the second does.
    rv += 1;
    api.send(&event(
        "ADDED",
        slice_json("web-b2", rv, "http", b, &[ready("pb")]),
    ));
    rv += 1;
    api.send(&event("MODIFIED", slice_json("web-b", rv, "http", b, &[])));
    // A marker event after, so that we know the ones before were applied.
    rv += 1;
    api.send(&event(
        "ADDED",
        slice_json("web-marker", rv, "other", 1, &[ready("px")]),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ports(&client), sorted(&[a, b]), "B is still in web-b2");
    rv += 1;
    api.send(&event(
        "DELETED",
        slice_json("web-b2", rv, "http", b, &[ready("pb")]),
    ));
    eventually("B out (last slice dropped it)", || {
        ports(&client) == vec![a]
    })
    .await;

    // The watch expires (410) and the relist says A and B: only B is added.
    api.set_list(list(
        rv + 10,
        &[
            slice_json("web-a", rv + 5, "http", a, &[ready("pa")]),
            slice_json("web-b", rv + 6, "http", b, &[ready("pb")]),
        ],
    ));
    api.send(&event(
        "ERROR",
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old","reason":"Expired","code":410}"#.to_string(),
    ));
    eventually("the relist", || ports(&client) == sorted(&[a, b])).await;

    // The held request (its endpoint went and came back many times) finishes and counts.
    gate.release();
    let mut served = 0;
    for h in held {
        let res = h.await.expect("task").expect("answered");
        assert_eq!(res.status(), 200);
        let _ = http_body_util::BodyExt::collect(res.into_body()).await;
        served += 1;
    }
    get_ok(&client, 20).await;
    let stats = client.stats();
    assert_eq!(stats.requests, served + 20, "{stats:?}");
    assert_eq!(stats.successes, served + 20, "{stats:?}");
    for e in client.endpoints() {
        assert_eq!(e.in_flight, 0, "{e:?}");
        assert_eq!(e.failures, 0, "{e:?}");
    }
    // The new A (inserted again after flapping) gets traffic.
    let at_a = client
        .endpoints()
        .iter()
        .find(|e| e.key.port() == a)
        .map(|e| e.requests);
    assert!(
        at_a.is_some_and(|n| n > 0),
        "A got nothing after coming back: {at_a:?}"
    );
}
