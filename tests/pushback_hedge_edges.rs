//! Retries, pushback, hedging and deadlines through `meshless::http::Client`, against raw
//! HTTP/1.1 servers on 127.0.0.1 that count requests: hostile `Retry-After` and
//! `grpc-retry-pushback-ms` values; an answer that forbids retries stops the hedges and is not
//! forgotten by the retry layer; a retry the balancer held back for pushback pays its token
//! when it is sent; the error counts only attempts sent; waiting out pushback never extends
//! the deadline; a caller that gives up while waiting is cancelled and refunded.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use meshless::budget::Budget;
use meshless::hedge::{HedgeConfig, HedgeDelay};
use meshless::http::Client;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a server does with one request.
#[derive(Clone)]
enum Act {
    /// Writes these bytes at once.
    Reply(Vec<u8>),
    /// Waits, then writes these bytes.
    After(Duration, Vec<u8>),
}

/// One request as a server saw it.
#[derive(Debug, Clone)]
#[allow(dead_code)]
struct Seen {
    port: usize,
    method: String,
    path: String,
    headers: String,
    at: Duration,
}

type Handler = Arc<dyn Fn(usize, usize, &Seen) -> Act + Send + Sync>;

/// `n` raw HTTP/1.1 servers sharing one log; `handler(global index, port index, request)`.
struct Servers {
    addrs: Vec<SocketAddr>,
    log: Arc<Mutex<Vec<Seen>>>,
}

impl Servers {
    async fn start(
        n: usize,
        handler: impl Fn(usize, usize, &Seen) -> Act + Send + Sync + 'static,
    ) -> Self {
        let handler: Handler = Arc::new(handler);
        let log: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let mut addrs = Vec::new();
        for port in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push(listener.local_addr().unwrap());
            let (handler, log) = (handler.clone(), log.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (handler, log) = (handler.clone(), log.clone());
                    tokio::spawn(serve(stream, port, handler, log));
                }
            });
        }
        Servers { addrs, log }
    }

    fn endpoints(&self) -> Vec<String> {
        self.addrs.iter().map(|a| a.to_string()).collect()
    }

    fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    fn on(&self, port: usize) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.port == port)
            .count()
    }
}

async fn serve(mut stream: TcpStream, port: usize, handler: Handler, log: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    loop {
        // The head.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let mut lines = head.split("\r\n");
        let first = lines.next().unwrap_or_default().to_string();
        let mut parts = first.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < end + len {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + len);
        let seen = Seen {
            port,
            method,
            path,
            headers: head,
            at: epoch().elapsed(),
        };
        let index = {
            let mut log = log.lock().unwrap();
            log.push(seen.clone());
            log.len() - 1
        };
        let act = handler(index, port, &seen);
        let bytes = match act {
            Act::Reply(b) => b,
            Act::After(d, b) => {
                tokio::time::sleep(d).await;
                b
            }
        };
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

fn ok() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
}

fn status_with(status: &str, extra: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\n{extra}content-length: 0\r\n\r\n").into_bytes()
}

/// A gRPC trailers-only answer: UNAVAILABLE with this pushback header (if any).
fn grpc_unavailable(pushback: Option<&str>) -> Vec<u8> {
    let extra = match pushback {
        Some(p) => format!("grpc-retry-pushback-ms: {p}\r\n"),
        None => String::new(),
    };
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 14\r\n{extra}content-length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn grpc_request(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .extension(meshless::retry::Idempotent(true))
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap()
}

fn hedging(max_hedges: u32, delay: Duration) -> HedgeConfig {
    let mut config = HedgeConfig::default();
    config.enabled = true;
    config.max_hedges = max_hedges;
    config.delay = HedgeDelay::Fixed(delay);
    config
}

fn books_balance(client: &Client) {
    let s = client.retry_stats();
    assert_eq!(
        s.requests(),
        s.successes() + s.failures() + s.cancelled(),
        "requests {} != successes {} + failures {} + cancelled {}",
        s.requests(),
        s.successes(),
        s.failures(),
        s.cancelled()
    );
}

/// gRPC A6: a negative `grpc-retry-pushback-ms` means "do not retry"; for hedging, no further
/// hedged attempt is sent once one answered so. With `max_hedges = 2`: the first attempt
/// stalls, the first hedge answers UNAVAILABLE with pushback -1 — the second hedge must not go.
#[tokio::test]
async fn grpc_do_not_retry_pushback_on_a_hedge_stops_further_hedges() {
    let servers = Servers::start(3, |i, _, _| {
        if i == 0 {
            Act::After(ms(600), grpc_unavailable(Some("-1")))
        } else {
            Act::Reply(grpc_unavailable(Some("-1")))
        }
    })
    .await;
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(2000))
        .attempt_timeout(ms(2000))
        .hedge(hedging(2, ms(100)))
        .build()
        .unwrap();
    let started = Instant::now();
    let res = client.request(grpc_request("/svc.S/M")).await;
    let took = started.elapsed();
    let sends = servers.count();
    eprintln!(
        "outcome: {:?}, took {took:?}, sends {sends}, hedges {}",
        res.as_ref().map(|r| r.headers().clone()),
        client.hedge_stats().hedges()
    );
    if let Ok(res) = res {
        let _ = res.into_body().collect().await;
    }
    books_balance(&client);
    assert_eq!(
        sends,
        2,
        "the server answered 'do not retry' (grpc-retry-pushback-ms: -1) to the first hedge, \
         yet {sends} sends were made: {:?}",
        servers
            .seen()
            .iter()
            .map(|s| (s.port, s.at))
            .collect::<Vec<_>>()
    );
}

/// Hostile `Retry-After` values on a 503: a valid one (0, 10^12, past or far-future dates) makes
/// an unmarked POST go on to the other endpoint; a malformed one (negative, bad date, words,
/// fractions) is a plain 503 and the POST is sent once. (The "quiet afterwards" check cannot tell
/// quiet from P2C's failure penalty: endpoint 0 got no GET in every case.)
#[tokio::test]
async fn hostile_retry_after_values_keep_or_ignore_the_endpoint_as_documented() {
    // Endpoint 0 always answers 503 with the hostile value; endpoint 1 answers 200.
    // For each value: send an unmarked POST and a GET; count what endpoint 0 gets afterwards.
    let cases: &[(&str, bool, bool)] = &[
        // (Retry-After value, is pushback (POST retried + endpoint quiet), quiet for long)
        ("0", true, false),
        ("-5", false, false),
        ("1000000000000", true, true),
        ("Sun, 06 Nov 1994 08:49:37 GMT", true, false),
        ("Fri, 31 Dec 9999 23:59:59 GMT", true, true),
        ("Sun, 32 Nov 1994 08:51:37 GMT", false, false),
        ("soon", false, false),
        ("1.5", false, false),
    ];
    for &(value, pushback, long) in cases {
        let v = value.to_string();
        let servers = Servers::start(2, move |_, port, _| {
            if port == 0 {
                Act::Reply(status_with(
                    "503 Service Unavailable",
                    &format!("retry-after: {v}\r\n"),
                ))
            } else {
                Act::Reply(ok())
            }
        })
        .await;
        // Only endpoint 0 first: endpoint 1 is added by a second client sharing nothing, so
        // use one client over both and look at what endpoint 0 got.
        let client = Client::builder()
            .endpoints(servers.endpoints())
            .deadline(ms(2000))
            .backoff(meshless::backoff::Backoff::none())
            .build()
            .unwrap();
        // Drive POSTs until one hits endpoint 0.
        let mut hit = false;
        for _ in 0..40 {
            let before0 = servers.on(0);
            let before1 = servers.on(1);
            let res = client.post("/pay", "x").await;
            let got0 = servers.on(0) - before0;
            let got1 = servers.on(1) - before1;
            if got0 == 0 {
                continue;
            }
            hit = true;
            match &res {
                Ok(r) => eprintln!("{value:?}: POST status {} (0:{got0}, 1:{got1})", r.status()),
                Err(e) => eprintln!("{value:?}: POST error {e} (0:{got0}, 1:{got1})"),
            }
            if pushback {
                assert_eq!(
                    got1, 1,
                    "{value:?}: an unmarked POST after 503+Retry-After goes on"
                );
            } else {
                assert_eq!(
                    got1, 0,
                    "{value:?}: a POST after a plain 503 is not sent again"
                );
            }
            if let Ok(r) = res {
                let _ = r.into_body().collect().await;
            }
            break;
        }
        assert!(hit, "{value:?}: endpoint 0 never picked");
        // Now 30 GETs: with a long pushback endpoint 0 gets none of them.
        let before0 = servers.on(0);
        for _ in 0..30 {
            if let Ok(r) = client.get("/q").await {
                let _ = r.into_body().collect().await;
            }
        }
        let got0 = servers.on(0) - before0;
        eprintln!("{value:?}: endpoint 0 got {got0} of 30 GETs afterwards");
        if long {
            assert_eq!(got0, 0, "{value:?}: a long pushback keeps endpoint 0 quiet");
        }
        books_balance(&client);
    }
}

/// Multiple Retry-After headers: the first counts. `Retry-After: 1000000000000` then `0`:
/// endpoint 0 stays quiet for max_pushback.
#[tokio::test]
async fn repeated_retry_after_headers_first_one_counts() {
    let servers = Servers::start(2, move |_, port, _| {
        if port == 0 {
            Act::Reply(status_with(
                "503 Service Unavailable",
                "retry-after: 1000000000000\r\nretry-after: 0\r\n",
            ))
        } else {
            Act::Reply(ok())
        }
    })
    .await;
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(2000))
        .build()
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..40 {
        match client.get("/q").await {
            Ok(r) => {
                statuses.push(r.status().as_u16());
                let _ = r.into_body().collect().await;
            }
            Err(e) => panic!("error {e}"),
        }
    }
    eprintln!(
        "endpoint 0: {}, endpoint 1: {}",
        servers.on(0),
        servers.on(1)
    );
    assert!(servers.on(0) <= 1, "endpoint 0 got {}", servers.on(0));
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    books_balance(&client);
}

/// gRPC pushback: huge keeps the endpoint quiet; non-numeric / negative is "do not retry" and
/// neither retries nor parks the endpoint.
#[tokio::test]
async fn grpc_pushback_hostile_values() {
    for (value, retried, quiet) in [
        ("99999999999999999999", true, true),
        ("-1", false, false),
        ("abc", false, false),
        ("-99999999999", false, false),
    ] {
        let v = value.to_string();
        let servers = Servers::start(2, move |_, port, _| {
            if port == 0 {
                Act::Reply(grpc_unavailable(Some(&v)))
            } else {
                Act::Reply(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 0\r\ncontent-length: 0\r\n\r\n"
                        .to_vec(),
                )
            }
        })
        .await;
        let client = Client::builder()
            .endpoints(servers.endpoints())
            .deadline(ms(2000))
            .build()
            .unwrap();
        let mut hit = false;
        for _ in 0..40 {
            let b0 = servers.on(0);
            let b1 = servers.on(1);
            let res = client.request(grpc_request("/svc.S/M")).await;
            let (g0, g1) = (servers.on(0) - b0, servers.on(1) - b1);
            if let Ok(r) = res {
                let _ = r.into_body().collect().await;
            }
            if g0 == 0 {
                continue;
            }
            hit = true;
            eprintln!("{value:?}: 0:{g0} 1:{g1}");
            assert_eq!(g0, 1, "{value:?}: endpoint 0 got the request {g0} times");
            assert_eq!(g1 == 1, retried, "{value:?}: retried elsewhere? {g1}");
            break;
        }
        assert!(hit);
        let b0 = servers.on(0);
        for _ in 0..30 {
            if let Ok(r) = client.request(grpc_request("/svc.S/M")).await {
                let _ = r.into_body().collect().await;
            }
        }
        let g0 = servers.on(0) - b0;
        eprintln!("{value:?}: endpoint 0 got {g0} of 30 afterwards");
        if quiet {
            assert_eq!(g0, 0, "{value:?}");
        }
        books_balance(&client);
    }
}

/// A pushback that fits the deadline is waited out (single endpoint), and the attempt after
/// it is still bounded by the original deadline: it stalls, the request ends at the deadline.
#[tokio::test]
async fn waiting_out_a_pushback_never_extends_the_deadline() {
    let servers = Servers::start(1, |i, _, _| {
        if i == 0 {
            Act::Reply(status_with("503 Service Unavailable", "retry-after: 1\r\n"))
        } else {
            Act::After(ms(5000), ok())
        }
    })
    .await;
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(1500))
        .build()
        .unwrap();
    let started = Instant::now();
    let res = client.get("/q").await;
    let took = started.elapsed();
    eprintln!(
        "took {took:?}, sends {}, outcome {:?}",
        servers.count(),
        res.as_ref().map(|r| r.status())
    );
    assert!(res.is_err());
    assert!(took < ms(1500) + ms(250), "took {took:?}");
    books_balance(&client);
}

/// With hedging on and every endpoint quiet past the deadline, the request fails at once and
/// every token goes back.
#[tokio::test]
async fn hedged_request_with_all_endpoints_pushing_back_refunds_every_token() {
    let servers = Servers::start(2, |_, _, _| {
        Act::Reply(status_with("429 Too Many Requests", "retry-after: 100\r\n"))
    })
    .await;
    let budget = Budget::builder()
        .min_per_second(0.5)
        .ratio(0.0)
        .ttl(Duration::from_secs(10))
        .build()
        .unwrap();
    let start_balance = budget.balance();
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(1000))
        .budget(budget.clone())
        .hedge(hedging(1, ms(50)))
        .build()
        .unwrap();
    let mut errors = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        match client.get("/q").await {
            Ok(r) => {
                errors.push(format!("status {} in {:?}", r.status(), started.elapsed()));
                let _ = r.into_body().collect().await;
            }
            Err(e) => errors.push(format!("{e} ({:?}) in {:?}", e.kind(), started.elapsed())),
        }
    }
    eprintln!(
        "{errors:?}; sends {}; balance {} -> {}",
        servers.count(),
        start_balance,
        budget.balance()
    );
    assert_eq!(servers.count(), 2, "each endpoint once, then quiet");
    let s = client.retry_stats();
    eprintln!("retries {} attempts {}", s.retries(), s.attempts());
    books_balance(&client);
    // One retry was sent (to the second endpoint): the balance dropped by at most one token.
    assert!(
        budget.balance() >= start_balance - 1.0 - 1e-9,
        "{} -> {}",
        start_balance,
        budget.balance()
    );
}

/// gRPC A6 again, with one hedge: the hedge is answered UNAVAILABLE with pushback -1 ("do not
/// retry"); the stalled first attempt then answers UNAVAILABLE without pushback. The server
/// told this request not to be retried, yet the race returns the last failure and the retry
/// layer above retries it.
#[tokio::test]
async fn a_do_not_retry_answer_inside_a_hedge_race_is_not_forgotten_by_the_retry_layer() {
    let servers = Servers::start(3, |i, _, _| match i {
        0 => Act::After(ms(300), grpc_unavailable(None)),
        1 => Act::Reply(grpc_unavailable(Some("-1"))),
        _ => Act::Reply(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 0\r\ncontent-length: 0\r\n\r\n"
                .to_vec(),
        ),
    })
    .await;
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(2000))
        .attempt_timeout(ms(2000))
        .hedge(hedging(1, ms(100)))
        .build()
        .unwrap();
    let res = client.request(grpc_request("/svc.S/M")).await;
    let seen: Vec<_> = servers.seen().iter().map(|s| (s.port, s.at)).collect();
    eprintln!(
        "outcome: {:?}; sends {seen:?}; retries {}",
        res.as_ref().map(|r| r.headers().clone()),
        client.retry_stats().retries()
    );
    if let Ok(r) = res {
        let _ = r.into_body().collect().await;
    }
    books_balance(&client);
    assert_eq!(
        servers.count(),
        2,
        "after a 'do not retry' pushback the request was sent again: {seen:?}"
    );
}

/// The retry budget bounds retries. A retry the balancer refuses unsent (every endpoint quiet
/// for longer than the attempt may wait) has its token refunded — but the retry layer then
/// sends the same retry after the quiet, with no token. With a budget of about one token,
/// several requests each get a retry.
#[tokio::test]
async fn a_retry_sent_after_waiting_out_pushback_still_spends_the_budget() {
    budget_under_pushback(ms(100)).await;
}

/// Control: the same, with an attempt timeout long enough for the balancer to wait out the
/// pushback itself: the token is spent and the budget bounds the retries.
#[tokio::test]
async fn control_a_retry_the_balancer_holds_through_pushback_spends_the_budget() {
    budget_under_pushback(ms(1000)).await;
}

async fn budget_under_pushback(attempt_timeout: Duration) {
    let firsts: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let f = firsts.clone();
    let servers = Servers::start(1, move |_, _, seen| {
        if f.lock().unwrap().insert(seen.path.clone()) {
            Act::Reply(grpc_unavailable(Some("300")))
        } else {
            Act::Reply(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 0\r\ncontent-length: 0\r\n\r\n"
                    .to_vec(),
            )
        }
    })
    .await;
    let budget = Budget::builder()
        .ttl(Duration::from_secs(10))
        .min_per_second(0.1)
        .ratio(0.0)
        .build()
        .unwrap();
    let before = budget.balance();
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(2000))
        .attempt_timeout(attempt_timeout)
        .budget(budget.clone())
        .build()
        .unwrap();
    let mut outcomes = Vec::new();
    for n in 0..4 {
        let started = Instant::now();
        match client.request(grpc_request(&format!("/svc.S/M{n}"))).await {
            Ok(r) => {
                outcomes.push(format!(
                    "grpc-status {:?} in {:?}",
                    r.headers().get("grpc-status"),
                    started.elapsed()
                ));
                let _ = r.into_body().collect().await;
            }
            Err(e) => outcomes.push(format!("{e} in {:?}", started.elapsed())),
        }
    }
    let s = client.retry_stats();
    eprintln!(
        "attempt timeout {attempt_timeout:?}: {outcomes:?}\nsends {}, retries {}, budget_exhausted {}, balance {before} -> {}",
        servers.count(),
        s.retries(),
        s.budget_exhausted(),
        budget.balance()
    );
    books_balance(&client);
    assert!(
        s.retries() <= before.floor() as u64 + 1,
        "a budget of {before} tokens allowed {} retries (sends {}), balance now {}",
        s.retries(),
        servers.count(),
        budget.balance()
    );
}

/// A caller that drops its request while it waits out every endpoint's pushback: counted as
/// cancelled, charged to no endpoint, and no token is kept.
#[tokio::test]
async fn dropping_a_request_waiting_out_pushback_is_cancelled_and_refunds() {
    let servers = Servers::start(1, |i, _, _| {
        if i == 0 {
            Act::Reply(status_with("503 Service Unavailable", "retry-after: 2\r\n"))
        } else {
            Act::Reply(ok())
        }
    })
    .await;
    let budget = Budget::builder()
        .ttl(Duration::from_secs(10))
        .min_per_second(0.3)
        .ratio(0.0)
        .build()
        .unwrap();
    let before = budget.balance();
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(5000))
        .attempt_timeout(ms(200))
        .budget(budget.clone())
        .build()
        .unwrap();
    let r = tokio::time::timeout(ms(500), client.get("/q")).await;
    assert!(r.is_err(), "still waiting at 500 ms");
    tokio::time::sleep(ms(50)).await;
    let s = client.retry_stats();
    let e = &client.endpoints()[0];
    eprintln!(
        "requests {} successes {} failures {} cancelled {} retries {}; balance {before} -> {}; endpoint {e:?}",
        s.requests(),
        s.successes(),
        s.failures(),
        s.cancelled(),
        s.retries(),
        budget.balance()
    );
    books_balance(&client);
    assert_eq!(s.cancelled(), 1);
    assert_eq!(servers.count(), 1);
    assert!(
        (budget.balance() - before).abs() < 1e-9,
        "{before} -> {}",
        budget.balance()
    );
}

/// Hedging on: the first attempt stalls, the hedge wins with a head whose body then stalls.
/// The body must end at the request's deadline, not later.
#[tokio::test]
async fn a_hedge_winners_stalled_body_ends_at_the_deadline() {
    let servers = Servers::start(2, |i, _, _| {
        if i == 0 {
            Act::After(ms(5000), ok())
        } else {
            Act::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab".to_vec())
        }
    })
    .await;
    // The stalled body: the server writes 2 of 10 bytes and keeps the connection open.
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(500))
        .attempt_timeout(ms(500))
        .hedge(hedging(1, ms(50)))
        .build()
        .unwrap();
    let started = Instant::now();
    let res = client.get("/q").await.expect("the hedge's head");
    let head_at = started.elapsed();
    let body = res.into_body().collect().await;
    let took = started.elapsed();
    eprintln!(
        "head at {head_at:?}, body {:?} at {took:?}",
        body.as_ref().err()
    );
    assert!(body.is_err());
    assert!(took < ms(500) + ms(250), "body ended at {took:?}");
    books_balance(&client);
    let s = client.retry_stats();
    assert_eq!(s.failures(), 1);
}

/// Every endpoint answers 429 with a long Retry-After: the request fails at once with
/// `EndpointsPushingBack`. The error's attempt count should be the attempts sent.
#[tokio::test]
async fn the_error_counts_only_attempts_that_were_sent() {
    let servers = Servers::start(2, |_, _, _| {
        Act::Reply(status_with("429 Too Many Requests", "retry-after: 100\r\n"))
    })
    .await;
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(1000))
        .build()
        .unwrap();
    let e = client
        .get("/q")
        .await
        .expect_err("every endpoint pushing back");
    let s = client.retry_stats();
    eprintln!(
        "error: {e} ({:?}), attempts {}; sends {}; stats attempts {} retries {}",
        e.kind(),
        e.attempts(),
        servers.count(),
        s.attempts(),
        s.retries()
    );
    books_balance(&client);
    assert_eq!(s.attempts() as usize, servers.count());
    assert_eq!(
        e.attempts() as usize,
        servers.count(),
        "the error says {} attempts, {} were sent",
        e.attempts(),
        servers.count()
    );
}
