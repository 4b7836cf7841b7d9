//! Watch robustness: bad lines, ERROR events, bookmarks, a restart answered `410 Gone`, an
//! API server down or resetting connections.

use crate::common::*;
use crate::support::{PATIENCE, watching};
use http::StatusCode;
use meshless::kube::{KubeService, MockApiServer};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

fn two() -> String {
    list(
        100,
        &[
            slice("web-a", 90, "IPv4", 80, &[ready("10.0.0.1")]),
            slice("web-b", 91, "IPv4", 80, &[ready("10.0.0.2")]),
        ],
    )
}

/// One bad thing on an open watch: it is logged and skipped, the set stays, and the next
/// good event on the same watch is applied within the bound. No relist is needed.
async fn skipped_then_next_event_applied(bad: &str) {
    let (api, tracker) = tracked(Some("http"), two()).await;
    let ab = addrs(&["10.0.0.1:80", "10.0.0.2:80"]);
    tracker.wait_for("initial", &ab).await;
    let started = std::time::Instant::now();
    api.send(bad);
    assert_eq!(tracker.now(), ab);
    api.send(&event(
        "ADDED",
        &slice("web-c", 160, "IPv4", 80, &[ready("10.0.0.3")]),
    ));
    tracker
        .wait_for(
            "C after the bad line",
            &addrs(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]),
        )
        .await;
    eprintln!(
        "applied after {:?}; requests {:?}",
        started.elapsed(),
        api.requests()
    );
}

#[tokio::test]
async fn a_malformed_json_line_is_skipped() {
    skipped_then_next_event_applied("{this is not json").await;
}

#[tokio::test]
async fn an_unknown_event_type_is_skipped() {
    skipped_then_next_event_applied(
        r#"{"type":"SOMETHING_NEW","object":{"kind":"EndpointSlice"}}"#,
    )
    .await;
}

#[tokio::test]
async fn an_object_of_the_wrong_shape_is_skipped() {
    skipped_then_next_event_applied(r#"{"type":"MODIFIED","object":{"kind":"EndpointSlice","metadata":{"name":"web-a","resourceVersion":"150"},"endpoints":"nope"}}"#).await;
}

#[tokio::test]
async fn an_error_event_500_is_skipped() {
    skipped_then_next_event_applied(r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"etcd hiccup","reason":"InternalError","code":500}}"#).await;
}

/// Several bad lines in a row (a flaky proxy): still followed within the bound.
#[tokio::test]
async fn four_bad_lines_in_a_row_then_an_event() {
    let (api, tracker) = tracked(Some("http"), two()).await;
    let ab = addrs(&["10.0.0.1:80", "10.0.0.2:80"]);
    tracker.wait_for("initial", &ab).await;
    let started = std::time::Instant::now();
    for _ in 0..4 {
        api.send("{this is not json");
    }
    api.send(&event(
        "ADDED",
        &slice("web-c", 160, "IPv4", 80, &[ready("10.0.0.3")]),
    ));
    let want = addrs(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
    // A generous 5 s: the event is already on the wire; nothing has to be retried.
    while tracker.now() != want && started.elapsed() < std::time::Duration::from_secs(60) {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(5),
        "an event already received was applied only after {took:?} (set now {:?}): each skipped line delays the watch by a growing backoff",
        tracker.now()
    );
}

/// A bookmark moves the resource version: a watch that ends afterwards resumes from it.
#[tokio::test]
async fn a_watch_resumes_from_the_last_bookmark() {
    let (api, tracker) = tracked(Some("http"), two()).await;
    tracker
        .wait_for("initial", &addrs(&["10.0.0.1:80", "10.0.0.2:80"]))
        .await;
    let first = api.requests();
    assert!(
        first
            .last()
            .is_some_and(|w| w.contains("allowWatchBookmarks=true")),
        "{first:?}"
    );
    api.send(r#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"777"}}}"#);
    // Closing drops the sender only: the line already queued is still delivered first.
    api.close_watches();
    watching(&api, 2).await;
    let last = api.requests().pop().unwrap_or_default();
    assert!(last.contains("resourceVersion=777"), "{last}");
    assert_eq!(api.seen().lists, 1);
}

/// The watch ends; when it is opened again the API server answers `410 Gone` (the resource
/// version was compacted away while the watch was down, and a slice was deleted meanwhile).
/// The only way to learn what changed is a relist; the docs promise "a watch restart (410
/// Gone, a dropped connection): relist". The API server here keeps answering 410 to the stale
/// version (3 times, then the mock lets a watch through).
#[tokio::test]
async fn a_watch_restart_answered_410_gone_relists() {
    let (api, tracker) = tracked(Some("http"), two()).await;
    tracker
        .wait_for("initial", &addrs(&["10.0.0.1:80", "10.0.0.2:80"]))
        .await;
    // web-b was deleted while the watch was down; the relist says so.
    api.set_list(list(
        300,
        &[slice("web-a", 90, "IPv4", 80, &[ready("10.0.0.1")])],
    ));
    api.fail_next(StatusCode::GONE, 3);
    api.close_watches();
    let (seen, held) = api
        .wait(PATIENCE, |s| s.failures >= 3 && s.watches >= 2)
        .await;
    assert!(held, "{seen:?}");
    let requests = api.requests();
    assert!(
        seen.lists >= 2,
        "after `410 Gone` the watcher never relisted; it kept re-watching the expired version: {seen:?}, requests {requests:#?}"
    );
    tracker
        .wait_for("web-b gone after the relist", &addrs(&["10.0.0.1:80"]))
        .await;
}

/// A relist whose answer is unreadable (a proxy's HTML error page with a 200) is an error:
/// the last set stays, and the next good relist replaces it.
#[tokio::test]
async fn an_unreadable_relist_keeps_the_last_set() {
    let (api, tracker) = tracked(Some("http"), two()).await;
    let ab = addrs(&["10.0.0.1:80", "10.0.0.2:80"]);
    tracker.wait_for("initial", &ab).await;
    api.set_list("<html>502 Bad Gateway</html>");
    api.send(r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old","reason":"Expired","code":410}}"#);
    let (seen, held) = api.wait(PATIENCE, |s| s.lists >= 2).await;
    assert!(held, "{seen:?}");
    assert_eq!(tracker.now(), ab, "an unreadable relist dropped endpoints");
    api.set_list(list(
        300,
        &[slice(
            "web-b",
            200,
            "IPv4",
            80,
            &[ready("10.0.0.2"), ready("10.0.0.9")],
        )],
    ));
    tracker
        .wait_for("the good relist", &addrs(&["10.0.0.2:80", "10.0.0.9:80"]))
        .await;
}

/// The API server is down from the start: no endpoint, requests fail with a typed error and
/// no panic; once it answers, the endpoints come.
#[tokio::test]
async fn an_api_server_down_at_start_then_up() {
    use meshless::error::Kind;
    let api = MockApiServer::start().await.expect("mock");
    // Nothing is sent to it: the port only has to be real.
    let backend = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = backend.local_addr().unwrap().port();
    api.set_list(list(
        10,
        &[slice("web-a", 9, "IPv4", port, &[ready("127.0.0.1")])],
    ));
    api.fail_next(StatusCode::INTERNAL_SERVER_ERROR, 3);
    let client = meshless::http::Client::builder()
        .kubernetes(KubeService::new(api.client().expect("kube"), "shop", "web").port("http"))
        .balance(
            meshless::balance::Balance::builder().fail_fast(std::time::Duration::from_millis(100)),
        )
        .max_retries(0)
        .build()
        .expect("client");
    let (seen, held) = api.wait(PATIENCE, |s| s.failures >= 1).await;
    assert!(held, "{seen:?}");
    let started = std::time::Instant::now();
    let err = client.get("/").await.expect_err("no endpoint yet");
    assert_eq!(
        err.kind(),
        Kind::NoReadyEndpoint,
        "{err} / {err:?} after {:?}, endpoints then {:?}",
        started.elapsed(),
        client.endpoints().len()
    );
    crate::support::eventually("the endpoint", || client.endpoints().len() == 1).await;
    drop(backend);
}

/// The same with the client's default retries: what most users run.
#[tokio::test]
async fn an_api_server_down_at_start_default_retries() {
    use meshless::error::Kind;
    let api = MockApiServer::start().await.expect("mock");
    api.fail_next(StatusCode::INTERNAL_SERVER_ERROR, 3);
    let client = meshless::http::Client::builder()
        .kubernetes(KubeService::new(api.client().expect("kube"), "shop", "web").port("http"))
        .balance(
            meshless::balance::Balance::builder().fail_fast(std::time::Duration::from_millis(100)),
        )
        .build()
        .expect("client");
    let (seen, held) = api.wait(PATIENCE, |s| s.failures >= 1).await;
    assert!(held, "{seen:?}");
    let err = client.get("/").await.expect_err("no endpoint yet");
    assert_eq!(err.kind(), Kind::NoReadyEndpoint, "{err} / {err:?}");
}

/// A TCP proxy in front of the mock that can reset every connection it carries (RST, as a
/// load balancer in front of the API server does when it restarts).
struct Proxy {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    resets: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let resets: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let (c, r) = (conns.clone(), resets.clone());
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = TcpStream::connect(upstream).await else {
                    continue;
                };
                // A std clone of the client side, to reset it.
                let std = down.into_std().unwrap();
                r.lock().unwrap().push(std.try_clone().unwrap());
                let down = TcpStream::from_std(std).unwrap();
                c.lock().unwrap().push(tokio::spawn(async move {
                    let (mut dr, mut dw) = down.into_split();
                    let (mut ur, mut uw) = up.into_split();
                    let a = async {
                        let _ = tokio::io::copy(&mut dr, &mut uw).await;
                        let _ = uw.shutdown().await;
                    };
                    let b = async {
                        let _ = tokio::io::copy(&mut ur, &mut dw).await;
                        let _ = dw.shutdown().await;
                    };
                    tokio::join!(a, b);
                }));
            }
        });
        Proxy {
            addr,
            conns,
            resets,
        }
    }

    fn reset_all(&self) {
        for s in self.resets.lock().unwrap().drain(..) {
            let sock = socket2::SockRef::from(&s);
            let _ = sock.set_linger(Some(std::time::Duration::ZERO));
            let _ = sock.shutdown(std::net::Shutdown::Both);
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

/// The connection to the API server is reset mid-watch: discovery keeps its endpoints,
/// watches again from where it was, and follows later events.
#[tokio::test]
async fn a_reset_connection_resumes_and_keeps_the_endpoints() {
    let api = MockApiServer::start().await.expect("mock");
    api.set_list(two());
    let upstream: SocketAddr = api.url().trim_start_matches("http://").parse().unwrap();
    let proxy = Proxy::start(upstream).await;
    let kube = kube::Client::try_from(kube::Config::new(
        format!("http://{}", proxy.addr).parse().unwrap(),
    ))
    .expect("kube");
    let tracker = Tracker::start(&KubeService::new(kube, "shop", "web").port("http"));
    watching(&api, 1).await;
    let ab = addrs(&["10.0.0.1:80", "10.0.0.2:80"]);
    tracker.wait_for("initial", &ab).await;
    for round in 0..3u32 {
        proxy.reset_all();
        watching(&api, 2 + round as usize).await;
        assert_eq!(tracker.now(), ab, "round {round}");
    }
    api.send(&event(
        "ADDED",
        &slice("web-c", 160, "IPv4", 80, &[ready("10.0.0.3")]),
    ));
    tracker
        .wait_for(
            "C after resets",
            &addrs(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]),
        )
        .await;
    assert_eq!(api.seen().lists, 1, "{:?}", api.requests());
}
