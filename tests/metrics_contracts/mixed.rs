//! A mixed workload over real sockets: every family agrees with `Client::stats()`.

use crate::common;
use crate::edges_support::*;
use crate::support::*;
use meshless::route::Route;
use tokio::net::TcpListener;

/// One endpoint that answers by path, on every connection, every request:
/// `/ok` 200 "ok"; `/404`; `/503`; `/reset` reset before any byte; `/cut` 10 of 100 bytes, then
/// closed; `/partial` 10 of 100 bytes then silent; `/hang` and `/slow` never answer.
async fn by_path() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut pending = Vec::new();
                while let Some(head) = common::read_head(&mut socket, &mut pending).await {
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let answer: &[u8] = match path.as_str() {
                        "/ok" => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                        "/404" => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
                        "/503" => b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
                        "/reset" => {
                            let _ = socket.set_zero_linger();
                            return;
                        }
                        "/cut" => {
                            cut_body(socket).await;
                            return;
                        }
                        "/partial" => {
                            let _ = socket
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nxxxxxxxxxx",
                                )
                                .await;
                            hold(socket).await;
                            return;
                        }
                        _ => {
                            hold(socket).await;
                            return;
                        }
                    };
                    if socket.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

const KNOWN_REASONS: &[&str] = &[
    "success",
    "http_5xx",
    "http_4xx",
    "timeout",
    "cancelled",
    "reset",
    "connect",
    "transport",
    "io",
    "protocol",
    "body",
    "grpc",
    "refused",
    "http_429",
    "overloaded",
];

#[test]
fn a_mixed_workload_adds_up_in_every_family() {
    run(|snap| async move {
        let addr = by_path().await;
        let client = client_for(&[addr], "mixed")
            .deadline(Duration::from_secs(5))
            .route(Route::path_prefix("/slow").timeout(ms(200)))
            .build()
            .unwrap();
        let mut expect_ok = 0u64;
        let mut expect_fail = 0u64;
        for _ in 0..10 {
            let r = client.get("/ok").await.unwrap();
            r.into_body().collect().await.unwrap();
            expect_ok += 1;
        }
        for _ in 0..3 {
            let r = client.get("/404").await.unwrap();
            r.into_body().collect().await.unwrap();
            expect_ok += 1;
        }
        for _ in 0..3 {
            let r = client.get("/503").await.unwrap();
            assert_eq!(r.status(), 503);
            r.into_body().collect().await.unwrap();
            expect_fail += 1;
        }
        let r = client.post("/503", "x").await.unwrap();
        assert_eq!(r.status(), 503);
        r.into_body().collect().await.unwrap();
        expect_fail += 1;
        for _ in 0..2 {
            assert!(client.get("/reset").await.is_err());
            expect_fail += 1;
        }
        for _ in 0..2 {
            let r = client.get("/cut").await.unwrap();
            assert!(r.into_body().collect().await.is_err());
            expect_fail += 1;
        }
        for _ in 0..2 {
            let e = client.get("/slow").await.unwrap_err();
            assert_eq!(e.kind(), Kind::DeadlineExceeded, "{e}");
            expect_fail += 1;
        }
        for _ in 0..2 {
            let r = client.get("/partial").await.unwrap();
            let mut body = r.into_body();
            let _ = body.frame().await.unwrap().unwrap();
            drop(body);
            expect_ok += 1;
        }
        for _ in 0..2 {
            let out = tokio::time::timeout(ms(300), client.get("/hang")).await;
            assert!(out.is_err());
        }
        let rec = quiesce(&client, &snap).await;
        let sv = ("service", "mixed");
        let mut v = crate::edges_support::violations(&client, &rec, "mixed");
        let s = client.stats();
        let want = (expect_ok + expect_fail + 2, expect_ok, expect_fail, 2);
        want_outcomes(&client, want, &mut v);
        for class in ["success", "failure", "cancelled"] {
            let n = samples(
                &rec,
                "meshless_request_duration_seconds",
                &[sv, ("class", class)],
            )
            .len() as u64;
            let c = rec.count("meshless_requests_completed_total", &[sv, ("class", class)]);
            if n != c {
                v.push(format!(
                    "class {class}: {n} duration samples != completed {c}"
                ));
            }
        }
        for e in &s.endpoints {
            let key = e.key.to_string();
            let el = [sv, ("endpoint", key.as_str())];
            let lat = samples(&rec, "meshless_endpoint_latency_seconds", &el).len() as u64;
            if lat != e.requests {
                v.push(format!(
                    "endpoint {key}: {lat} latency samples != requests {}",
                    e.requests
                ));
            }
        }
        let at_endpoints: u64 = s.endpoints.iter().map(|e| e.requests + e.cancelled).sum();
        let sent = s.requests + s.retries + s.stale_resends;
        if at_endpoints != sent {
            v.push(format!(
                "endpoints finished+cancelled {at_endpoints} != requests+retries+stale_resends {sent}"
            ));
        }
        if (s.recent.successes, s.recent.failures) != (s.successes, s.failures) {
            v.push(format!(
                "recent (ok, fail) {:?} != lifetime {:?} within the first minute",
                (s.recent.successes, s.recent.failures),
                (s.successes, s.failures)
            ));
        }
        let classes = label_values(&rec, "meshless_requests_completed_total", "class");
        for c in &classes {
            if !["success", "failure", "cancelled"].contains(&c.as_str()) {
                v.push(format!("unknown class label {c}"));
            }
        }
        let reasons = label_values(&rec, "meshless_requests_completed_total", "reason");
        eprintln!("reasons seen: {reasons:?}");
        for r in &reasons {
            if r.contains('/') || r.contains(':') || r.len() > 32 {
                v.push(format!("unbounded-looking reason label {r:?}"));
            }
        }
        let _ = KNOWN_REASONS;
        check(&v, &client, &rec);
    });
}
