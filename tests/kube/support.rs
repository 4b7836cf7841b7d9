//! What the Kubernetes discovery tests share: fixtures, a mock API server with a client
//! following it, a backend that holds its answers, and waiting on what can be observed.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use meshless::http::Client;
use meshless::kube::{KubeService, MockApiServer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// How long any awaited condition may take: generous, since it only bounds a failure.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A fixture from tests/fixtures/kube/, its `{{A}}`.. `{{D}}` replaced by the ports given, in
/// that order: the slices' ports are those of the test's backends, all on 127.0.0.1.
pub fn fixture(name: &str, ports: &[u16]) -> String {
    let path = format!("{}/tests/fixtures/kube/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (slot, port) in ["{{A}}", "{{B}}", "{{C}}", "{{D}}"].iter().zip(ports) {
        text = text.replace(slot, &port.to_string());
    }
    assert!(!text.contains("{{"), "{name}: a port is missing");
    text
}

/// Waits until `check` holds, looking again every few milliseconds, at most [`PATIENCE`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The client's endpoints, as sorted ports (every backend is on 127.0.0.1).
pub fn ports(client: &Client) -> Vec<u16> {
    let mut ports: Vec<u16> = client.endpoints().iter().map(|e| e.key.port()).collect();
    ports.sort();
    ports
}

pub fn sorted(ports: &[u16]) -> Vec<u16> {
    let mut ports = ports.to_vec();
    ports.sort();
    ports
}

/// A mock API server answering lists with `list`, and a client following its Service
/// `shop/web`, port `http`, once the watch is open.
pub async fn follow(list: String) -> (MockApiServer, Client) {
    let api = MockApiServer::start().await.expect("mock API server");
    api.set_list(list);
    let service = KubeService::new(api.client().expect("kube client"), "shop", "web").port("http");
    let client = Client::builder()
        .kubernetes(service)
        // A new endpoint is tried first, so that a test sees traffic reach it: with the
        // default 30 ms it would wait beside endpoints measured at a fraction of a millisecond.
        .balance(meshless::balance::Balance::builder().default_rtt(Duration::from_micros(1)))
        // One attempt with all the time there is: a request that fails or retries would hide
        // where it went.
        .max_retries(0)
        .deadline(Duration::from_secs(30))
        .build()
        .expect("client");
    watching(&api, 1).await;
    (api, client)
}

/// Waits until `count` watches have been opened in all.
pub async fn watching(api: &MockApiServer, count: usize) {
    let (seen, held) = api.wait(PATIENCE, |s| s.watches >= count).await;
    assert!(held, "no watch #{count}: {seen:?}");
}

/// Sends `n` GETs one after the other, reading each body to its end (so that the balancer
/// counts them as finished); all must succeed.
pub async fn get_ok(client: &Client, n: usize) {
    for _ in 0..n {
        let res = client.get("/").await.expect("a response");
        assert_eq!(res.status(), 200);
        http_body_util::BodyExt::collect(res.into_body())
            .await
            .expect("a body");
    }
}

/// A backend whose responses wait until [`release`](Gate::release): a request can be held in
/// flight for as long as a test needs.
pub struct Gate {
    pub addr: SocketAddr,
    arrived: Arc<AtomicUsize>,
    open: watch::Sender<bool>,
}

impl Gate {
    pub async fn start() -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let arrived = Arc::new(AtomicUsize::new(0));
        let open = watch::Sender::new(false);
        let (count, gate) = (arrived.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (count, gate) = (count.clone(), gate.clone());
                let service = service_fn(move |_req| {
                    count.fetch_add(1, Ordering::SeqCst);
                    let mut open = gate.subscribe();
                    async move {
                        let _ = open.wait_for(|o| *o).await;
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"finished while draining"),
                        )))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service),
                );
            }
        });
        Gate {
            addr,
            arrived,
            open,
        }
    }

    pub fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }

    pub fn release(&self) {
        self.open.send_replace(true);
    }
}

/// Runs `f` on a task of its own, so that a test can look at it while it is in flight.
pub fn in_flight<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(f)
}
