//! Kubernetes discovery against kube's own client and watcher, over a mock API server that
//! serves recorded EndpointSlice list and watch responses (tests/fixtures/kube/), with real
//! backends behind a `meshless::http::Client`.
#![cfg(all(feature = "kube", feature = "testing"))]

#[path = "kube/support.rs"]
mod support;

use futures_core::Stream;
use meshless::balance::Change;
use meshless::error::Kind;
use meshless::http::Client;
use meshless::kube::{KubeService, MockApiServer};
use meshless::testing::{Backend, Behavior, Fleet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;
use support::*;
use tokio::sync::mpsc;

async fn fleet(n: usize) -> (Fleet, Vec<u16>) {
    let fleet = Fleet::builder()
        .backends(vec![Backend::new(Behavior::healthy()); n])
        .start()
        .await
        .expect("fleet");
    let ports = fleet.addrs().iter().map(SocketAddr::port).collect();
    (fleet, ports)
}

#[tokio::test]
async fn ready_endpoints_are_in_and_not_ready_ones_out() {
    let (fleet, p) = fleet(3).await;
    let (api, client) = follow(fixture("list-initial.json", &p)).await;
    // Slice A and B are ready; C's pod is not (its readiness probe fails).
    eventually("A and B", || ports(&client) == sorted(&p[..2])).await;
    get_ok(&client, 40).await;
    let served: Vec<u64> = fleet
        .backends()
        .iter()
        .map(|b| b.counters().requests())
        .collect();
    assert_eq!(served[0] + served[1], 40);
    assert_eq!(
        served[2], 0,
        "the not-ready endpoint got requests: {served:?}"
    );

    // The slices of the Service, in its namespace, by the label their controller sets.
    let requests = api.requests();
    assert!(
        requests.iter().all(|r| {
            r.starts_with("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?")
                && r.contains("labelSelector=kubernetes.io%2Fservice-name%3Dweb")
        }),
        "{requests:?}"
    );
}

#[tokio::test]
async fn readiness_and_scale_up_are_followed() {
    let (fleet, p) = fleet(4).await;
    let (api, client) = follow(fixture("list-initial.json", &p)).await;
    eventually("A and B", || ports(&client) == sorted(&p[..2])).await;

    assert_eq!(api.send(&fixture("watch-c-ready.json", &p)), 1);
    eventually("C ready", || ports(&client) == sorted(&p[..3])).await;
    assert_eq!(api.send(&fixture("watch-d-added.json", &p)), 1);
    eventually("D added", || ports(&client) == sorted(&p)).await;

    get_ok(&client, 200).await;
    for (i, backend) in fleet.backends().iter().enumerate() {
        assert!(backend.counters().requests() > 0, "backend {i} got nothing");
    }
}

#[tokio::test]
async fn a_terminating_endpoint_is_drained_while_its_request_finishes() {
    let (fleet, p) = fleet(2).await;
    let gate = Gate::start().await;
    // B is the gate: whatever reaches it stays in flight until released.
    let ports_abc = [p[0], gate.addr.port(), p[1]];
    let (api, client) = follow(fixture("list-initial.json", &ports_abc)).await;
    eventually("A and B", || ports(&client) == sorted(&ports_abc[..2])).await;

    // Requests until one is held by B (each has even odds of going there).
    let mut held = None;
    for _ in 0..64 {
        let c = client.clone();
        let request = in_flight(async move { c.get("/").await });
        eventually("the request to land", || {
            request.is_finished() || gate.arrived() == 1
        })
        .await;
        if gate.arrived() == 1 {
            held = Some(request);
            break;
        }
        assert_eq!(
            request.await.expect("task").expect("A answers").status(),
            200
        );
    }
    let held = held.expect("a request reached B");

    // B's pod terminates: out of the balancer, its request still in flight.
    assert_eq!(
        api.send(&fixture("watch-b-terminating.json", &ports_abc)),
        1
    );
    eventually("B drained", || ports(&client) == [p[0]]).await;
    assert!(!held.is_finished());

    let before = fleet.backend(0).counters().requests();
    get_ok(&client, 20).await;
    assert_eq!(fleet.backend(0).counters().requests() - before, 20);
    assert_eq!(gate.arrived(), 1, "a draining endpoint got a new request");

    gate.release();
    let res = held
        .await
        .expect("task")
        .expect("the drained request finishes");
    assert_eq!(res.status(), 200);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .expect("body");
    assert_eq!(&body.to_bytes()[..], b"finished while draining");
}

#[tokio::test]
async fn deleted_slices_take_their_endpoints_and_an_address_in_two_slices_counts_once() {
    let (_fleet, p) = fleet(3).await;
    let api = MockApiServer::start().await.expect("mock");
    api.set_list(fixture("list-initial.json", &p));
    let service = KubeService::new(api.client().expect("kube"), "shop", "web").port("http");
    let client = Client::builder()
        .kubernetes(service)
        .balance(meshless::balance::Balance::builder().fail_fast(Duration::from_millis(50)))
        .max_retries(0)
        .build()
        .expect("client");
    watching(&api, 1).await;
    eventually("A and B", || ports(&client) == sorted(&p[..2])).await;

    // A's address also in a second slice (the controller moving it): one endpoint still.
    api.send(&fixture("watch-a-second-slice.json", &p));
    api.send(&fixture("watch-b-deleted.json", &p));
    eventually("B deleted", || ports(&client) == [p[0]]).await;
    // Its first slice deleted: the second still lists it.
    api.send(&fixture("watch-a-first-slice-deleted.json", &p));
    // The next event is applied after this one: once it shows, this one has been too.
    api.send(&fixture("watch-c-ready.json", &p));
    eventually("C ready", || ports(&client) == sorted(&[p[0], p[2]])).await;
    assert_eq!(client.endpoints().len(), 2);

    api.send(&fixture("watch-a-second-slice-deleted.json", &p));
    eventually("A gone", || ports(&client) == [p[2]]).await;
    get_ok(&client, 5).await;
}

#[tokio::test]
async fn a_service_scaled_to_zero_fails_fast() {
    let (_fleet, p) = fleet(3).await;
    let api = MockApiServer::start().await.expect("mock");
    api.set_list(fixture("list-initial.json", &p));
    let client = Client::builder()
        .kubernetes(KubeService::new(api.client().expect("kube"), "shop", "web"))
        .balance(meshless::balance::Balance::builder().fail_fast(Duration::from_millis(50)))
        .build()
        .expect("client");
    watching(&api, 1).await;
    eventually("A and B", || ports(&client) == sorted(&p[..2])).await;
    api.send(&fixture("watch-a-first-slice-deleted.json", &p));
    api.send(&fixture("watch-b-deleted.json", &p));
    eventually("none", || client.endpoints().is_empty()).await;
    let err = client.get("/").await.expect_err("no endpoint");
    assert_eq!(err.kind(), Kind::NoReadyEndpoint);
}

/// The stream's changes as `+port` / `-port`, from a task that keeps polling it (the watcher
/// only moves on while polled).
fn changes_of(
    mut changes: impl Stream<Item = Result<Change<SocketAddr, SocketAddr>, Infallible>>
    + Unpin
    + Send
    + 'static,
) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(change) =
            std::future::poll_fn(|cx| Pin::new(&mut changes).poll_next(cx)).await
        {
            let shown = match change {
                Ok(Change::Insert(addr, service)) => {
                    assert_eq!(addr, service);
                    format!("+{}", addr.port())
                }
                Ok(Change::Remove(addr)) => format!("-{}", addr.port()),
                Err(never) => match never {},
            };
            if tx.send(shown).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next change, within [`PATIENCE`].
async fn next(changes: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(PATIENCE, changes.recv())
        .await
        .expect("a change in time")
        .expect("the stream never ends")
}

#[tokio::test]
async fn a_relist_changes_only_what_changed() {
    let (_fleet, p) = fleet(4).await;
    let api = MockApiServer::start().await.expect("mock");
    api.set_list(fixture("list-initial.json", &p));
    let service = KubeService::new(api.client().expect("kube"), "shop", "web").port("http");
    let mut changes = changes_of(service.discover().expect("valid names"));
    let mut seen = vec![next(&mut changes).await, next(&mut changes).await];
    seen.sort();
    let mut expected = [format!("+{}", p[0]), format!("+{}", p[1])];
    expected.sort();
    assert_eq!(seen, expected);
    watching(&api, 1).await;
    api.send(&fixture("watch-d-added.json", &p));
    assert_eq!(next(&mut changes).await, format!("+{}", p[3]));

    // The watch expires (410 Gone): the watcher relists. Meanwhile B's slice was deleted and
    // C became ready; A and D are listed again and must not be touched.
    api.set_list(fixture("list-relist.json", &p));
    api.send(&fixture("watch-gone.json", &p));
    let after = [next(&mut changes).await, next(&mut changes).await];
    assert_eq!(after, [format!("-{}", p[1]), format!("+{}", p[2])]);
    watching(&api, 2).await;
    assert_eq!(api.seen().lists, 2);
    // Nothing else came: the next event's change is the next one out.
    api.send(&fixture("watch-b-deleted.json", &p));
    api.send(&fixture("watch-a-first-slice-deleted.json", &p));
    assert_eq!(next(&mut changes).await, format!("-{}", p[0]));
}

#[tokio::test]
async fn a_relist_keeps_the_measurements_of_live_endpoints() {
    let (_fleet, p) = fleet(4).await;
    let (api, client) = follow(fixture("list-initial.json", &p)).await;
    api.send(&fixture("watch-d-added.json", &p));
    eventually("A, B and D", || {
        ports(&client) == sorted(&[p[0], p[1], p[3]])
    })
    .await;
    get_ok(&client, 60).await;
    let requests_of = |client: &Client, port: u16| {
        client
            .endpoints()
            .iter()
            .find(|e| e.key.port() == port)
            .map(|e| e.requests)
    };
    let (a, d) = (requests_of(&client, p[0]), requests_of(&client, p[3]));
    assert!(
        a.is_some_and(|n| n > 0) && d.is_some_and(|n| n > 0),
        "{a:?} {d:?}"
    );

    api.set_list(fixture("list-relist.json", &p));
    api.send(&fixture("watch-gone.json", &p));
    eventually("the relist", || {
        ports(&client) == sorted(&[p[0], p[2], p[3]])
    })
    .await;
    // Removed and inserted again, they would have started over from zero.
    assert_eq!(requests_of(&client, p[0]), a);
    assert_eq!(requests_of(&client, p[3]), d);
}

#[tokio::test]
async fn api_server_errors_keep_the_last_endpoints() {
    let (fleet, p) = fleet(4).await;
    let (api, client) = follow(fixture("list-initial.json", &p)).await;
    eventually("A and B", || ports(&client) == sorted(&p[..2])).await;

    // The watch expires and the relist fails twice: the watcher backs off and tries again.
    api.fail_next(http::StatusCode::INTERNAL_SERVER_ERROR, 2);
    api.set_list(fixture("list-relist.json", &p));
    api.send(&fixture("watch-gone.json", &p));
    let (seen, held) = api.wait(PATIENCE, |s| s.failures >= 1).await;
    assert!(held, "{seen:?}");
    assert_eq!(ports(&client), sorted(&p[..2]));
    get_ok(&client, 20).await;
    assert_eq!(
        fleet.backend(0).counters().requests() + fleet.backend(1).counters().requests(),
        20
    );

    let (seen, held) = api.wait(PATIENCE, |s| s.lists >= 2).await;
    assert!(held, "{seen:?}");
    assert_eq!(seen.failures, 2);
    eventually("the relist", || {
        ports(&client) == sorted(&[p[0], p[2], p[3]])
    })
    .await;
}

#[tokio::test]
async fn a_closed_watch_resumes_without_a_relist() {
    let (_fleet, p) = fleet(4).await;
    let (api, client) = follow(fixture("list-initial.json", &p)).await;
    eventually("A and B", || ports(&client) == sorted(&p[..2])).await;
    api.close_watches();
    watching(&api, 2).await;
    api.send(&fixture("watch-d-added.json", &p));
    eventually("D added", || ports(&client) == sorted(&[p[0], p[1], p[3]])).await;
    assert_eq!(api.seen().lists, 1);
    let last = api.requests().pop().unwrap_or_default();
    assert!(last.contains("resourceVersion=4120"), "{last}");
}

#[tokio::test]
async fn bad_names_and_dns_with_kubernetes_are_config_errors() {
    let api = MockApiServer::start().await.expect("mock");
    let kube = api.client().expect("kube");
    let build = |service: KubeService| Client::builder().kubernetes(service).build();
    let cases = [
        (
            KubeService::new(kube.clone(), "shop", "Web"),
            "kubernetes.name",
        ),
        (
            KubeService::new(kube.clone(), "shop", "web,app=x"),
            "kubernetes.name",
        ),
        (
            KubeService::new(kube.clone(), "", "web"),
            "kubernetes.namespace",
        ),
        (
            KubeService::new(kube.clone(), "shop", "web").port("-http"),
            "kubernetes.port",
        ),
    ];
    for (service, setting) in cases {
        let err = build(service).expect_err("refused");
        assert_eq!(err.setting(), setting);
    }
    let both = Client::builder()
        .dns("web.shop.svc:80")
        .kubernetes(KubeService::new(kube, "shop", "web"))
        .build();
    assert_eq!(both.expect_err("refused").setting(), "kubernetes");
    assert!(api.requests().is_empty(), "nothing was watched");
}

#[test]
fn building_outside_a_runtime_is_a_config_error() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (_api, kube) = runtime.block_on(async {
        let api = MockApiServer::start().await.expect("mock");
        let kube = api.client().expect("kube");
        (api, kube)
    });
    let err = Client::builder()
        .kubernetes(KubeService::new(kube, "shop", "web"))
        .build()
        .expect_err("no runtime to watch from");
    assert_eq!(err.setting(), "kubernetes");
}
