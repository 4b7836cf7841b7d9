//! A real server with a finite number of workers, overloaded by a burst over real sockets:
//! with the adaptive limit, the requests in flight settle near the server's capacity and, once
//! the limit has found itself, the excess is refused at once.

use super::*;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshless::error::Kind;
use meshless::limit::{Algorithm, GradientConfig};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Workers of the server: at most this many requests are served at once, the others queue.
const WORKERS: u32 = 8;
/// How long a worker takes per request.
const WORK: Duration = Duration::from_millis(20);
/// Callers, each sending one request after another: six times the server's workers.
const CALLERS: usize = 48;

/// Starts the server; returns its address and the number of requests it holds (queued or
/// served) now.
async fn server() -> (std::net::SocketAddr, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let workers = Arc::new(Semaphore::new(WORKERS as usize));
    let held = Arc::new(AtomicU32::new(0));
    let counted = held.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (workers, held) = (workers.clone(), counted.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let (workers, held) = (workers.clone(), held.clone());
                    async move {
                        let _guard = Guard::hold(held);
                        let _worker = workers.acquire().await.expect("open");
                        tokio::time::sleep(WORK).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, held)
}

impl Guard {
    fn hold(count: Arc<AtomicU32>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Guard(count)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_server_sees_about_its_capacity_and_the_excess_is_refused_fast() {
    let (addr, held) = server().await;
    let mut gradient = GradientConfig::default();
    gradient.min = 2;
    let layer = LimitLayer::new(Algorithm::Gradient(gradient));
    let handle = layer.handle();
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let svc = layer.layer(client);
    let uri: http::Uri = format!("http://{addr}/").parse().expect("uri");

    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let slowest_refusal = Arc::new(AtomicU64::new(0));
    // Refusals are timed once the limit has found itself: while it learns (slow start), a
    // request over it waits its turn, and those still waiting when it has learnt are refused.
    let found = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (mut svc, uri) = (svc.clone(), uri.clone());
            let (ok, refused, slowest) = (ok.clone(), refused.clone(), slowest_refusal.clone());
            let found = found.clone();
            tokio::spawn(async move {
                loop {
                    let req = Request::get(uri.clone())
                        .body(Empty::new())
                        .expect("request");
                    let start = std::time::Instant::now();
                    let timed = found.load(Ordering::Relaxed);
                    match svc.ready().await.expect("ready").call(req).await {
                        Ok(res) => {
                            res.into_body().collect().await.expect("body");
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) => {
                            assert_eq!(err.kind(), Kind::ConcurrencyLimited, "{err:?}");
                            refused.fetch_add(1, Ordering::Relaxed);
                            if timed {
                                let took = start.elapsed().as_micros() as u64;
                                slowest.fetch_max(took, Ordering::Relaxed);
                            }
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                }
            })
        })
        .collect();

    // Let the limit find itself, then watch what the server holds for 1.5 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    found.store(true, Ordering::Relaxed);
    let served_before = ok.load(Ordering::Relaxed);
    let mut samples = Vec::new();
    for _ in 0..75 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        samples.push(held.load(Ordering::SeqCst));
    }
    let served = ok.load(Ordering::Relaxed) - served_before;
    callers.iter().for_each(|c| c.abort());

    // Without a limit the server would hold all 48 callers' requests.
    let mean = samples.iter().sum::<u32>() as f64 / samples.len() as f64;
    assert!(
        mean <= f64::from(3 * WORKERS),
        "the server holds {mean:.1} requests on average (limit {}), {WORKERS} workers: {samples:?}",
        handle.limit()
    );
    let capacity = f64::from(WORKERS) * 1.5 / WORK.as_secs_f64();
    assert!(
        served as f64 >= 0.5 * capacity,
        "goodput {served} in 1.5 s, capacity {capacity}"
    );
    assert!(refused.load(Ordering::Relaxed) > 0, "the excess is refused");
    let slowest = Duration::from_micros(slowest_refusal.load(Ordering::Relaxed));
    assert!(
        slowest < Duration::from_millis(50),
        "refused at once, not queued: {slowest:?}"
    );
}
