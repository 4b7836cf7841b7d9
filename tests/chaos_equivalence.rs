//! An injected fault must be classified, budgeted and timed exactly as the real fault
//! it imitates. Each probe runs the same stack twice — once over a real misbehaving socket (or a
//! real slow upstream), once over a healthy one behind `ChaosLayer` — and compares what the
//! retry layer, the budget and the deadline did.

mod common;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use meshless::backoff::Backoff;
use meshless::budget::Budget;
use meshless::chaos::{ChaosLayer, Faults};
use meshless::deadline::{AttemptTimeoutLayer, DeadlineLayer};
use meshless::error::Kind;
use meshless::retry::{ReplayBody, RetryLayer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::{BoxError, Layer, ServiceExt, service_fn};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A server that reads each request head and then either answers 200 ("ok") or resets the
/// connection (linger 0), counting the heads it read.
async fn server(reset: bool, heads: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        heads.fetch_add(1, Ordering::SeqCst);
                        if reset {
                            let _ = socket.set_zero_linger();
                            return;
                        }
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                }
            });
        }
    });
    addr
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    common::refusing_port()
}

struct Outcome {
    ok: u64,
    retries: u64,
    budget_exhausted: u64,
    balance: f64,
}

/// Sends `n` requests of `method` one after the other through Retry (a small budget: reserve
/// of 3, no ratio) over `chaos` (if any) over hyper to `addr`.
async fn run(addr: SocketAddr, chaos: Option<ChaosLayer>, method: &str, n: usize) -> Outcome {
    let budget = Budget::builder()
        .ttl(Duration::from_secs(3600))
        .min_per_second(3.0 / 3600.0)
        .ratio(0.0)
        .build()
        .unwrap();
    let retry = RetryLayer::new(budget.clone())
        .max_retries(1)
        .backoff(Backoff::none())
        .metrics(false);
    let stats = retry.stats();
    let hyper = HyperClient::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();
    let mut ok = 0;
    for _ in 0..n {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = match &chaos {
            Some(c) => retry
                .layer(c.layer(hyper.clone()))
                .oneshot(req)
                .await
                .map(|r| r.status()),
            None => retry
                .layer(hyper.clone())
                .oneshot(req)
                .await
                .map(|r| r.status()),
        };
        if matches!(res, Ok(s) if s == 200) {
            ok += 1;
        }
    }
    Outcome {
        ok,
        retries: stats.retries(),
        budget_exhausted: stats.budget_exhausted(),
        balance: budget.balance(),
    }
}

/// A real reset and an injected one: GETs retried until the budget's reserve of 3 is spent,
/// then refused by the budget, the same counts both ways.
#[tokio::test]
async fn an_injected_reset_spends_the_budget_exactly_as_a_real_reset() {
    let real_heads = Arc::new(AtomicU64::new(0));
    let resetting = server(true, real_heads.clone()).await;
    let real = run(resetting, None, "GET", 6).await;

    let healthy = server(false, Arc::new(AtomicU64::new(0))).await;
    let chaos = ChaosLayer::new()
        .seed(3)
        .metrics(false)
        .faults(Faults::none().reset(1.0));
    let injected = run(healthy, Some(chaos), "GET", 6).await;

    assert_eq!(real.ok, 0);
    assert_eq!(injected.ok, 0);
    assert_eq!(real.retries, 3, "three retries in reserve");
    assert_eq!(injected.retries, real.retries);
    assert_eq!(injected.budget_exhausted, real.budget_exhausted);
    assert_eq!(injected.balance, real.balance);
    assert_eq!(real_heads.load(Ordering::SeqCst), 9);
}

/// A reset POST: the server may have acted, so it is not sent again, real or injected.
#[tokio::test]
async fn an_injected_reset_post_is_not_sent_again_like_a_real_one() {
    let real_heads = Arc::new(AtomicU64::new(0));
    let resetting = server(true, real_heads.clone()).await;
    let real = run(resetting, None, "POST", 3).await;
    let healthy = server(false, Arc::new(AtomicU64::new(0))).await;
    let chaos = ChaosLayer::new()
        .seed(3)
        .metrics(false)
        .faults(Faults::none().reset(1.0));
    let injected = run(healthy, Some(chaos), "POST", 3).await;
    assert_eq!(real.retries, 0);
    assert_eq!(real_heads.load(Ordering::SeqCst), 3);
    assert_eq!(injected.retries, real.retries);
    assert_eq!(injected.balance, real.balance);
}

/// A refused connection, real (a closed port) or injected: any request may be sent again, and
/// both spend (or do not spend) the budget alike.
#[tokio::test]
async fn an_injected_refusal_spends_the_budget_exactly_as_a_real_refusal() {
    let closed = closed_port().await;
    let real = run(closed, None, "POST", 6).await;
    let healthy = server(false, Arc::new(AtomicU64::new(0))).await;
    // Rate 1.0: every attempt is refused, as with the closed port.
    let chaos = ChaosLayer::new()
        .seed(4)
        .metrics(false)
        .faults(Faults::none().refuse(1.0));
    let injected = run(healthy, Some(chaos), "POST", 6).await;
    eprintln!(
        "real: retries {} exhausted {} balance {}; injected: retries {} exhausted {} balance {}",
        real.retries,
        real.budget_exhausted,
        real.balance,
        injected.retries,
        injected.budget_exhausted,
        injected.balance
    );
    assert_eq!(real.ok, 0);
    assert_eq!(injected.ok, 0);
    assert_eq!(injected.retries, real.retries);
    assert_eq!(injected.budget_exhausted, real.budget_exhausted);
    assert_eq!(injected.balance, real.balance);
}

/// An injected delay counts toward the attempt timeout and the deadline exactly as a slow
/// upstream does: the same errors, at the same instants, the same retries.
#[tokio::test(start_paused = true)]
async fn an_injected_delay_is_cut_by_the_attempt_timeout_and_the_deadline_like_a_slow_upstream() {
    async fn once(chaos: bool) -> (Kind, Duration, u64) {
        let reached = Arc::new(AtomicU64::new(0));
        let r = reached.clone();
        let slow = !chaos;
        let upstream = service_fn(move |_req: Request<ReplayBody<Full<Bytes>>>| {
            r.fetch_add(1, Ordering::SeqCst);
            async move {
                if slow {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Ok::<_, BoxError>(http::Response::new(String::from("ok")))
            }
        });
        let retry = RetryLayer::new(Budget::default())
            .max_retries(5)
            .backoff(Backoff::none())
            .metrics(false);
        let stats = retry.stats();
        let t0 = tokio::time::Instant::now();
        let req = Request::get("http://svc/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let err = if chaos {
            let layer = ChaosLayer::new()
                .seed(1)
                .metrics(false)
                .faults(Faults::none().delay(1.0, Duration::from_secs(5)));
            let svc = DeadlineLayer::new(ms(1000))
                .layer(retry.layer(AttemptTimeoutLayer::new(ms(300)).layer(layer.layer(upstream))));
            svc.oneshot(req).await.unwrap_err()
        } else {
            let svc = DeadlineLayer::new(ms(1000))
                .layer(retry.layer(AttemptTimeoutLayer::new(ms(300)).layer(upstream)));
            svc.oneshot(req).await.unwrap_err()
        };
        let took = t0.elapsed();
        assert!(reached.load(Ordering::SeqCst) >= 1);
        (err.kind(), took, stats.retries())
    }
    let (real_kind, real_took, real_retries) = once(false).await;
    let (inj_kind, inj_took, inj_retries) = once(true).await;
    assert_eq!(real_kind, Kind::DeadlineExceeded);
    assert_eq!(inj_kind, real_kind);
    assert_eq!(inj_took, real_took, "ended at the same instant");
    assert!(real_took <= ms(1000));
    assert_eq!(inj_retries, real_retries);
}

/// An injected 503 with `Retry-After: 1` is pushback exactly as a real one: an unmarked POST
/// is sent again (the server proved it did not act), one second later, both ways.
#[tokio::test(start_paused = true)]
async fn an_injected_503_with_retry_after_is_pushback_like_a_real_one() {
    async fn once(chaos: bool) -> (u64, Duration, u16) {
        let reached = Arc::new(AtomicU64::new(0));
        let r = reached.clone();
        let upstream = service_fn(move |_req: Request<ReplayBody<Full<Bytes>>>| {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut res = http::Response::new(String::new());
                if !chaos && n == 0 {
                    *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                    res.headers_mut()
                        .insert("retry-after", http::HeaderValue::from_static("1"));
                }
                Ok::<_, BoxError>(res)
            }
        });
        let retry = RetryLayer::new(Budget::default())
            .max_retries(1)
            .metrics(false);
        let stats = retry.stats();
        let t0 = tokio::time::Instant::now();
        let req = Request::post("http://svc/")
            .body(Full::new(Bytes::from_static(b"x")))
            .unwrap();
        let status = if chaos {
            // Only the first request's draw injects (seed chosen so that rate 0.5 hits the
            // first and not the second): the retry reaches the upstream.
            let layer = ChaosLayer::new()
                .seed(seed_first_only().await)
                .metrics(false)
                .faults(
                    Faults::none()
                        .error(0.5, 503)
                        .error_header("retry-after", "1"),
                );
            retry
                .layer(layer.layer(upstream))
                .oneshot(req)
                .await
                .unwrap()
                .status()
        } else {
            retry.layer(upstream).oneshot(req).await.unwrap().status()
        };
        (stats.retries(), t0.elapsed(), status.as_u16())
    }
    let real = once(false).await;
    let injected = once(true).await;
    assert_eq!(real, (1, Duration::from_secs(1), 200));
    assert_eq!(injected, real);
}

/// A seed whose first draw at rate 0.5 injects an error and whose second does not.
async fn seed_first_only() -> u64 {
    for seed in 0..1000u64 {
        let layer = ChaosLayer::new()
            .seed(seed)
            .metrics(false)
            .faults(Faults::none().error(0.5, 503));
        let handle = layer.handle();
        let svc = layer.layer(service_fn(|_req: Request<()>| async {
            Ok::<_, BoxError>(http::Response::new(()))
        }));
        let _ = svc.clone().oneshot(Request::new(())).await;
        let first = handle.counts().errors;
        let _ = svc.oneshot(Request::new(())).await;
        if first == 1 && handle.counts().errors == 1 {
            return seed;
        }
    }
    panic!("no seed")
}

/// Per-rule rates over many requests: each rule injects at its own rate (within 5σ of the
/// binomial mean), and requests no rule matches get the default rate.
#[tokio::test(start_paused = true)]
async fn per_rule_rates_hold_statistically() {
    use meshless::chaos::ChaosRule;
    let layer = ChaosLayer::new()
        .seed(77)
        .metrics(false)
        .rule(
            ChaosRule::new()
                .path_prefix("/a")
                .faults(Faults::none().error(0.3, 503)),
        )
        .rule(
            ChaosRule::new()
                .method("POST")
                .faults(Faults::none().reset(0.05)),
        )
        .faults(Faults::none().error(0.1, 500));
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, BoxError>(http::Response::new(()))
    }));
    let n = 20_000u64;
    let (mut a503, mut post_reset, mut def500) = (0u64, 0u64, 0u64);
    for i in 0..n {
        let (m, path) = match i % 3 {
            0 => ("GET", "/a/x"),
            1 => ("POST", "/b"),
            _ => ("GET", "/c"),
        };
        let req = Request::builder().method(m).uri(path).body(()).unwrap();
        match svc.clone().oneshot(req).await {
            Ok(res) if res.status() == 503 => a503 += 1,
            Ok(res) if res.status() == 500 => def500 += 1,
            Ok(_) => {}
            Err(_) => post_reset += 1,
        }
    }
    let per = (n / 3) as f64;
    for (got, p, what) in [
        (a503, 0.3, "rule /a"),
        (post_reset, 0.05, "rule POST"),
        (def500, 0.1, "default"),
    ] {
        let mean = per * p;
        let sd = (per * p * (1.0 - p)).sqrt();
        assert!(
            (got as f64 - mean).abs() < 5.0 * sd,
            "{what}: {got} injected, expected {mean} ± {}",
            5.0 * sd
        );
    }
}
