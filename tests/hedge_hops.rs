//! Hedging and the retry budget through `http::Client` over real sockets.

mod common;
mod edges_support;

use edges_support::*;
use meshless::breaker::BreakerConfig;
use meshless::budget::Budget;
use meshless::hedge::{HedgeConfig, HedgeDelay};
use meshless::retry::Idempotent;
use std::sync::Mutex;

fn hedge_fixed(delay: Duration, max_hedges: u32) -> HedgeConfig {
    let mut h = HedgeConfig::default();
    h.enabled = true;
    h.delay = HedgeDelay::Fixed(delay);
    h.max_hedges = max_hedges;
    h.max_extra_load = 1.0;
    h.min_per_second = 1000.0;
    h
}

fn no_breaker() -> BreakerConfig {
    let mut b = BreakerConfig::default();
    b.enabled = false;
    b
}

/// A server that records each request head (its first line and its idempotency-key) and then
/// either never answers or answers `status` at once, keeping the connection.
async fn server(heads: Arc<Mutex<Vec<String>>>, status: Option<u16>) -> SocketAddr {
    common::serve_sockets(move |mut socket, head| {
        heads.lock().unwrap().push(head.clone());
        let heads = heads.clone();
        async move {
            let Some(status) = status else {
                hold(socket).await;
                return;
            };
            let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
            if socket.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            let mut pending = Vec::new();
            while let Some(head) = common::read_request(&mut socket, &mut pending).await {
                heads.lock().unwrap().push(head);
                if socket.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

fn count(heads: &Arc<Mutex<Vec<String>>>, marker: &str) -> usize {
    heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.contains(marker))
        .count()
}

/// Two hanging endpoints, hedging after 20 ms, up to 2 hedges: a POST, a PUT marked
/// `Idempotent(false)` and one marked so but carrying an `Idempotency-Key` reach a server once
/// each; a GET is hedged. The books add up afterwards.
#[test]
fn requests_not_safe_to_repeat_are_sent_once_with_hedging_on() {
    run(|snap| async move {
        let heads = Arc::new(Mutex::new(Vec::new()));
        let a = server(heads.clone(), None).await;
        let b = server(heads.clone(), None).await;
        let client = client_for(&[a, b], "a10_safe")
            .deadline(ms(400))
            .hedge(hedge_fixed(ms(20), 2))
            .build()
            .unwrap();
        let e = client.post("/post-once", "x").await.unwrap_err();
        eprintln!("post: {e}");
        let put = http::Request::put("http://svc/put-once")
            .extension(Idempotent(false))
            .body(http_body_util::Full::new(Bytes::from_static(b"x")))
            .unwrap();
        client.request(put).await.unwrap_err();
        let put = http::Request::put("http://svc/put-keyed-unsafe")
            .header("idempotency-key", "k")
            .extension(Idempotent(false))
            .body(http_body_util::Full::new(Bytes::from_static(b"x")))
            .unwrap();
        client.request(put).await.unwrap_err();
        client.get("/get-hedged").await.unwrap_err();
        let c = client.clone();
        wait_until(Duration::from_secs(2), move || {
            c.stats().endpoints.iter().all(|e| e.in_flight == 0)
        })
        .await;
        let v = settle_and_check(&client, &snap, "a10_safe").await;
        let (post, put, keyed, get) = (
            count(&heads, "/post-once"),
            count(&heads, "/put-once"),
            count(&heads, "/put-keyed-unsafe"),
            count(&heads, "/get-hedged"),
        );
        eprintln!(
            "heads: post {post} put {put} keyed {keyed} get {get}; hedges {}",
            client.hedge_stats().hedges()
        );
        assert_eq!(post, 1, "POST sent once");
        assert_eq!(put, 1, "PUT marked unsafe sent once");
        assert_eq!(keyed, 1, "marked unsafe, key or not: sent once");
        assert!(get >= 2, "GET hedged: {get}");
        report(&v, &client, &snap);
    });
}

/// 200 GETs at once over four clones of one client, every answer a plain 503, with retries
/// (3 per request) and hedging (at once on a 503) on one budget of 20% + a reserve of 5: the
/// servers see at most 200 + 40 + 5 requests, and the books add up.
#[test]
fn clones_under_concurrency_stay_within_the_shared_budget_with_hedging() {
    run(|snap| async move {
        let heads = Arc::new(Mutex::new(Vec::new()));
        let a = server(heads.clone(), Some(503)).await;
        let b = server(heads.clone(), Some(503)).await;
        let budget = Budget::builder()
            .ttl(Duration::from_secs(3600))
            .min_per_second(5.0 / 3600.0)
            .ratio(0.2)
            .build()
            .unwrap();
        let client = client_for(&[a, b], "a10_budget")
            .deadline(Duration::from_secs(5))
            .budget(budget.clone())
            .max_retries(3)
            .breaker(no_breaker())
            .hedge(hedge_fixed(ms(1), 2))
            .build()
            .unwrap();
        let n = 200usize;
        let mut set = tokio::task::JoinSet::new();
        for i in 0..n {
            let c = [0, 1, 2, 3].map(|_| client.clone())[i % 4].clone();
            set.spawn(async move { c.get("/x").await.map(|r| r.status().as_u16()) });
        }
        let mut statuses = std::collections::BTreeMap::new();
        while let Some(r) = set.join_next().await {
            let key = match r.unwrap() {
                Ok(s) => s.to_string(),
                Err(e) => format!("{:?}", e.kind()),
            };
            *statuses.entry(key).or_insert(0) += 1;
        }
        let v = settle_and_check(&client, &snap, "a10_budget").await;
        let hits = heads.lock().unwrap().len();
        let s = client.stats();
        eprintln!(
            "outcomes {statuses:?}; server hits {hits}; retries {}; hedges {}; budget exhausted {}",
            s.retries,
            client.hedge_stats().hedges(),
            s.budget_exhausted
        );
        assert!(hits <= n + 40 + 5, "{hits} requests reached the servers");
        assert_eq!(s.requests, n as u64);
        report(&v, &client, &snap);
    });
}

/// Found by an audit (fixed): a request served for a caller that retries
/// (`CallerRetries(true)`, what `CallerRetriesLayer` sets) makes only the always-safe retries:
/// an attempt that reached the server is not sent again (one retry layer per call chain;
/// envoy#31597). With hedging on, a 503 answer sent a "shortcut" hedge at once — the same GET
/// sent a second time, a retry by another name — so the retries multiplied across hops.
#[test]
fn a_request_whose_caller_retries_is_not_sent_again_by_a_hedge() {
    run(|snap| async move {
        let heads = Arc::new(Mutex::new(Vec::new()));
        let a = server(heads.clone(), Some(503)).await;
        let b = server(heads.clone(), Some(503)).await;
        let client = client_for(&[a, b], "a10_hops")
            .deadline(Duration::from_secs(2))
            .breaker(no_breaker())
            .hedge(hedge_fixed(ms(200), 1))
            .build()
            .unwrap();
        // Without the mark: retried and hedged, as configured.
        let res = client.get("/unmarked").await.unwrap();
        assert_eq!(res.status(), 503);
        let unmarked = count(&heads, "/unmarked");
        // With it: the retry layer defers to the caller; the hedge layer should too.
        let req = http::Request::get("http://svc/marked")
            .extension(meshless::retry::CallerRetries(true))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let res = client.request(req).await.unwrap();
        assert_eq!(res.status(), 503);
        let marked = count(&heads, "/marked");
        // Inside a CallerRetries scope, as a server handler runs.
        let c = client.clone();
        let res =
            meshless::retry::CallerRetries::scope(true, async move { c.get("/scoped").await })
                .await
                .unwrap();
        assert_eq!(res.status(), 503);
        let scoped = count(&heads, "/scoped");
        let v = settle_and_check(&client, &snap, "a10_hops").await;
        eprintln!(
            "heads: unmarked {unmarked}, marked {marked}, scoped {scoped}; hedges {}; retries {}",
            client.hedge_stats().hedges(),
            client.stats().retries
        );
        assert!(unmarked >= 2, "the unmarked GET was retried or hedged");
        assert_eq!(
            marked, 1,
            "a GET whose caller retries reached a server {marked} times"
        );
        assert_eq!(
            scoped, 1,
            "a GET in a CallerRetries scope reached a server {scoped} times"
        );
        report(&v, &client, &snap);
    });
}

fn header_of(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Sends one hedged gRPC call (marked idempotent) to two hanging servers; returns the
/// `(x-meshless-attempt, grpc-previous-rpc-attempts)` each server saw.
async fn announced(max_retries: u32) -> Vec<(Option<String>, Option<String>)> {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let a = server(heads.clone(), None).await;
    let b = server(heads.clone(), None).await;
    let client = client_for(&[a, b], "a10_announce")
        .deadline(ms(300))
        .attempt_timeout(ms(300))
        .max_retries(max_retries)
        .hedge(hedge_fixed(ms(20), 2))
        .build()
        .unwrap();
    let req = http::Request::post("http://svc/pkg.Svc/Method")
        .header("content-type", "application/grpc")
        .extension(Idempotent(true))
        .body(http_body_util::Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let _ = client.request(req).await;
    assert_eq!(client.hedge_stats().hedges(), 2);
    heads
        .lock()
        .unwrap()
        .iter()
        .map(|h| {
            (
                header_of(h, "x-meshless-attempt"),
                header_of(h, "grpc-previous-rpc-attempts"),
            )
        })
        .collect()
}

/// Found by an audit (fixed): hedges carried the first attempt's headers verbatim, so they
/// told the upstream nothing of being second sends. Each hedge carries its own
/// `x-meshless-attempt` number, and on gRPC `grpc-previous-rpc-attempts` (gRPC A6).
#[test]
fn hedges_announce_themselves_to_the_upstream() {
    run(|_snap| async move {
        let no_retries = announced(0).await;
        let retries = announced(2).await;
        eprintln!(
            "(x-meshless-attempt, grpc-previous-rpc-attempts) per head; max_retries 0: \
             {no_retries:?}; max_retries 2: {retries:?}"
        );
        for seen in [&no_retries, &retries] {
            assert_eq!(seen.len(), 3, "a first attempt and two hedges");
            // The first attempt is numbered by the retry layer when it can retry (left
            // unmarked otherwise: marking it would cost every hedgeable request a header); each
            // hedge carries the number after the attempts before it.
            let mut numbers: Vec<_> = seen.iter().map(|(a, _)| a.clone()).collect();
            numbers.sort();
            let first = if std::ptr::eq(seen, &retries) {
                Some("1".to_string())
            } else {
                None
            };
            assert_eq!(
                numbers,
                [first, Some("2".to_string()), Some("3".to_string())],
                "each send its own number: {seen:?}"
            );
            let mut previous: Vec<_> = seen.iter().map(|(_, p)| p.clone()).collect();
            previous.sort();
            assert_eq!(
                previous,
                [None, Some("1".to_string()), Some("2".to_string())],
                "gRPC A6: hedges carry grpc-previous-rpc-attempts"
            );
        }
    });
}

/// Twenty GETs, each one's first attempt left unanswered (the first head of each request
/// hangs, a later one is answered at once): each is won by its hedge; the outrun first
/// attempts are cancellations, never failures, and the books add up.
#[test]
fn outrun_first_attempts_are_cancelled_not_failed() {
    run(|snap| async move {
        let seen = Arc::new(Mutex::new(std::collections::HashSet::<String>::new()));
        // Every head on a connection is read: the first of each path hangs the connection,
        // any later one is answered at once.
        let script = |seen: Arc<Mutex<std::collections::HashSet<String>>>| {
            common::serve_sockets(move |mut socket, head| {
                let seen = seen.clone();
                async move {
                    let mut head = head;
                    let mut pending = Vec::new();
                    loop {
                        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                        if seen.lock().unwrap().insert(path) {
                            hold(socket).await;
                            return;
                        }
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if socket.write_all(ok).await.is_err() {
                            return;
                        }
                        match common::read_request(&mut socket, &mut pending).await {
                            Some(next) => head = next,
                            None => return,
                        }
                    }
                }
            })
        };
        let a = script(seen.clone()).await;
        let b = script(seen.clone()).await;
        let client = client_for(&[a, b], "a10_outrun")
            .deadline(Duration::from_secs(2))
            .attempt_timeout(Duration::from_secs(2))
            .hedge(hedge_fixed(ms(20), 1))
            .build()
            .unwrap();
        for i in 0..20 {
            let res = match client.get(format!("/r{i}")).await {
                Ok(res) => res,
                Err(e) => {
                    let h = client.hedge_stats();
                    panic!(
                        "request {i}: {e:?}; hedges {} refused: deadline {} budget {} extra {} body {} not-idempotent {}",
                        h.hedges(),
                        h.refused(meshless::hedge::Refusal::Deadline),
                        h.refused(meshless::hedge::Refusal::Budget),
                        h.refused(meshless::hedge::Refusal::ExtraLoad),
                        h.refused(meshless::hedge::Refusal::Body),
                        h.refused(meshless::hedge::Refusal::NotIdempotent),
                    )
                }
            };
            assert_eq!(res.status(), 200);
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        let v = settle_and_check(&client, &snap, "a10_outrun").await;
        let s = client.stats();
        let failures: u64 = s.endpoints.iter().map(|e| e.failures).sum();
        let cancelled: u64 = s.endpoints.iter().map(|e| e.cancelled).sum();
        eprintln!(
            "requests {} successes {} failures {} cancelled {}; endpoint failures {failures}, \
             cancelled {cancelled}; hedges {} won {}",
            s.requests,
            s.successes,
            s.failures,
            s.cancelled,
            client.hedge_stats().hedges(),
            client.hedge_stats().won()
        );
        assert_eq!(s.successes, 20);
        assert_eq!(failures, 0, "an outrun attempt is no failure");
        assert_eq!(cancelled, 20, "each outrun first attempt a cancellation");
        assert_eq!(client.hedge_stats().won(), 20);
        report(&v, &client, &snap);
    });
}
