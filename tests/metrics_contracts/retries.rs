//! Requests that take several attempts: each counted once, timed whole, attempts charged once.

use crate::common;
use crate::edges_support::*;
use crate::support::*;
use meshless::backoff::Backoff;
use meshless::budget::Budget;
use tokio::sync::mpsc;

const DURATION: &str = "meshless_request_duration_seconds";

/// Checks that every attempt was charged to exactly one endpoint (finished or cancelled), and
/// that attempts add up as documented (`ClientStats::retries`: "Attempts in total are
/// `requests + retries + stale_resends`").
fn attempts_charged_once(client: &Client, rec: &Recorded, service: &str, v: &mut Vec<String>) {
    let s = client.stats();
    let at_endpoints: u64 = s.endpoints.iter().map(|e| e.requests + e.cancelled).sum();
    let attempts = s.requests + s.retries + s.stale_resends;
    if at_endpoints != attempts {
        v.push(format!(
            "endpoints finished+cancelled {at_endpoints} != requests+retries+stale_resends {attempts}"
        ));
    }
    let m_attempts = rec.count("meshless_attempts_total", &[("service", service)]);
    if m_attempts != s.requests + s.retries {
        v.push(format!(
            "attempts_total {m_attempts} != requests {} + retries {}",
            s.requests, s.retries
        ));
    }
}

/// README: "`meshless_request_duration_seconds` … end-to-end latency of a logical request …
/// every attempt and backoff included"; "`meshless_backoff_seconds` … the server's pushback
/// when longer". A 503 with `Retry-After: 1` then a 200: one success timed at ≥ 1 s, and
/// `recent.p50` (the same latency) too.
#[test]
fn the_duration_covers_a_pushback_wait() {
    run(|snap| async move {
        let addr = pushback_once().await;
        // Two endpoints would let the retry go to the other one: one endpoint, no max_pushback
        // games. A generous deadline.
        let client = client_for(&[addr], "pushback_dur")
            .deadline(Duration::from_secs(5))
            .build()
            .unwrap();
        let t = std::time::Instant::now();
        let res = client.get("/").await.unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap();
        let wall = t.elapsed();
        let rec = quiesce(&client, &snap).await;
        let sv = ("service", "pushback_dur");
        let mut v = crate::edges_support::violations(&client, &rec, "pushback_dur");
        let d = samples(&rec, DURATION, &[sv, ("class", "success")]);
        if d.len() != 1 || d[0] < 0.9 {
            v.push(format!(
                "duration samples {d:?}, want one >= 0.9 s (the request took {wall:?})"
            ));
        }
        let p50 = client.stats().recent.p50;
        if p50.is_none_or(|p| p < ms(900)) {
            v.push(format!("recent.p50 {p50:?}, want >= 900 ms"));
        }
        attempts_charged_once(&client, &rec, "pushback_dur", &mut v);
        check(&v, &client, &rec);
    });
}

/// README: "`cancelled` for one its caller dropped"; `requests_total` = the sum over classes.
/// A request dropped by its caller while it waits out a server's pushback before its retry
/// is one cancellation; its first attempt stays its endpoint's failure; no retry was sent.
#[test]
fn a_request_dropped_during_its_backoff_is_one_cancellation() {
    run(|snap| async move {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let addr = common::serve_heads(move |_| {
            let _ = tx.send(());
            async {
                b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 2\r\ncontent-length: 0\r\n\r\n"
                    .to_vec()
            }
        })
        .await;
        let client = client_for(&[addr], "drop_backoff")
            .deadline(Duration::from_secs(10))
            .build()
            .unwrap();
        let c = client.clone();
        let task = tokio::spawn(async move { c.get("/").await.map(drop) });
        rx.recv().await.unwrap();
        // The answer is on its way: wait until the endpoint has it, then a little.
        let c = client.clone();
        assert!(
            wait_until(Duration::from_secs(3), move || c.stats().endpoints[0]
                .requests
                == 1)
            .await
        );
        tokio::time::sleep(ms(200)).await;
        task.abort();
        let _ = task.await;
        let rec = quiesce(&client, &snap).await;
        let mut v = crate::edges_support::violations(&client, &rec, "drop_backoff");
        want_outcomes(&client, (1, 0, 0, 1), &mut v);
        let s = client.stats();
        let e = &s.endpoints[0];
        if (e.requests, e.failures, e.cancelled) != (1, 1, 0) {
            v.push(format!(
                "endpoint (req, fail, cancel) {:?}",
                (e.requests, e.failures, e.cancelled)
            ));
        }
        if s.retries != 0 {
            v.push(format!("retries {} for a retry never sent", s.retries));
        }
        let d = samples(
            &rec,
            DURATION,
            &[("service", "drop_backoff"), ("class", "cancelled")],
        );
        if d.len() != 1 {
            v.push(format!("cancelled duration samples {d:?}, want one"));
        }
        attempts_charged_once(&client, &rec, "drop_backoff", &mut v);
        check(&v, &client, &rec);
    });
}

/// A 503 first, then a retry that hangs; the caller drops the request while the retry is at the
/// endpoint. One request, cancelled; one retry sent; the endpoint: one finished failure and
/// one cancellation.
#[test]
fn a_request_dropped_while_its_retry_is_at_the_endpoint() {
    run(|snap| async move {
        let (tx, mut rx) = mpsc::unbounded_channel::<usize>();
        let n = Arc::new(AtomicUsize::new(0));
        let addr = common::serve_sockets(move |mut socket, _| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            async move {
                let _ = tx.send(i);
                if i == 0 {
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                        )
                        .await;
                    let _ = socket.shutdown().await;
                } else {
                    hold(socket).await;
                }
            }
        })
        .await;
        let client = client_for(&[addr], "drop_retry")
            .deadline(Duration::from_secs(10))
            .attempt_timeout(Duration::from_secs(10))
            .backoff(Backoff::none())
            .build()
            .unwrap();
        let c = client.clone();
        let task = tokio::spawn(async move { c.get("/").await.map(drop) });
        assert_eq!(rx.recv().await, Some(0));
        assert_eq!(rx.recv().await, Some(1));
        task.abort();
        let _ = task.await;
        let rec = quiesce(&client, &snap).await;
        let mut v = crate::edges_support::violations(&client, &rec, "drop_retry");
        want_outcomes(&client, (1, 0, 0, 1), &mut v);
        let s = client.stats();
        let e = &s.endpoints[0];
        if (e.requests, e.failures, e.cancelled) != (1, 1, 1) {
            v.push(format!(
                "endpoint (req, fail, cancel) {:?}, want (1, 1, 1)",
                (e.requests, e.failures, e.cancelled)
            ));
        }
        if s.retries != 1 {
            v.push(format!("retries {}, want 1", s.retries));
        }
        attempts_charged_once(&client, &rec, "drop_retry", &mut v);
        check(&v, &client, &rec);
    });
}

/// README: "`meshless_attempt_timeouts_total` … attempts cut by the per-attempt timeout";
/// `ClientStats::attempt_timeouts` the same. A server that never answers, a 100 ms attempt
/// timeout and 2 retries: 3 attempts cut, one failed request (reason `timeout`), the stats and
/// the metric equal, every attempt charged to the endpoint once.
#[test]
fn attempt_timeouts_agree_between_stats_and_metrics() {
    run(|snap| async move {
        let addr = common::serve_sockets(|socket, _| hold(socket)).await;
        let client = client_for(&[addr], "att_to")
            .deadline(Duration::from_secs(5))
            .attempt_timeout(ms(100))
            .max_retries(2)
            .backoff(Backoff::none())
            .build()
            .unwrap();
        let err = client.get("/").await.unwrap_err();
        let rec = quiesce(&client, &snap).await;
        let sv = ("service", "att_to");
        let mut v = crate::edges_support::violations(&client, &rec, "att_to");
        let s = client.stats();
        let m = rec.count("meshless_attempt_timeouts_total", &[sv]);
        if m != s.attempt_timeouts || m != 3 {
            v.push(format!(
                "attempt_timeouts_total {m}, stats {}, want 3 ({err})",
                s.attempt_timeouts
            ));
        }
        want_outcomes(&client, (1, 0, 1, 0), &mut v);
        let t = rec.count(
            "meshless_requests_completed_total",
            &[sv, ("class", "failure"), ("reason", "timeout")],
        );
        if t != 1 {
            v.push(format!("completed{{failure,timeout}} {t}, want 1"));
        }
        attempts_charged_once(&client, &rec, "att_to", &mut v);
        check(&v, &client, &rec);
    });
}

/// README: "`meshless_retries_refused_total` … `budget_exhausted`"; `ClientStats::budget_exhausted`
/// "Retries refused because the retry budget was empty". An empty budget and a 503: both say 1.
#[test]
fn budget_refusals_agree_between_stats_and_metrics() {
    run(|snap| async move {
        let addr = common::serve_heads(|_| async {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec()
        })
        .await;
        let budget = Budget::builder()
            .min_per_second(0.0)
            .ratio(0.0)
            .build()
            .unwrap();
        let client = client_for(&[addr], "budget_out")
            .budget(budget)
            .backoff(Backoff::none())
            .build()
            .unwrap();
        for _ in 0..3 {
            let res = client.get("/").await.unwrap();
            assert_eq!(res.status(), 503);
            res.into_body().collect().await.unwrap();
        }
        let rec = quiesce(&client, &snap).await;
        let sv = ("service", "budget_out");
        let mut v = crate::edges_support::violations(&client, &rec, "budget_out");
        let s = client.stats();
        let m = rec.count(
            "meshless_retries_refused_total",
            &[sv, ("reason", "budget_exhausted")],
        );
        if m != s.budget_exhausted || m != 3 {
            v.push(format!(
                "retries_refused{{budget_exhausted}} {m}, stats {}, want 3",
                s.budget_exhausted
            ));
        }
        want_outcomes(&client, (3, 0, 3, 0), &mut v);
        attempts_charged_once(&client, &rec, "budget_out", &mut v);
        check(&v, &client, &rec);
    });
}

/// README: "`meshless_endpoint_latency_seconds` … each request's latency at an endpoint, to the
/// end of the response body". The endpoint answers each attempt at once (a 503 with
/// `Retry-After: 1`, then a 200): the second of waiting for its pushback to end is not time
/// the request spent at the endpoint, so no latency sample is near a second.
#[test]
fn waiting_out_a_pushback_is_not_endpoint_latency() {
    run(|snap| async move {
        let addr = pushback_once().await;
        let client = client_for(&[addr], "pushback_lat")
            .deadline(Duration::from_secs(5))
            .build()
            .unwrap();
        let res = client.get("/").await.unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap();
        let rec = quiesce(&client, &snap).await;
        let mut v = crate::edges_support::violations(&client, &rec, "pushback_lat");
        let key = addr.to_string();
        let lat = samples(
            &rec,
            "meshless_endpoint_latency_seconds",
            &[("service", "pushback_lat"), ("endpoint", key.as_str())],
        );
        if lat.len() != 2 || lat.iter().any(|&x| x > 0.5) {
            v.push(format!(
                "endpoint latency samples {lat:?}: want two, each well under 0.5 s (the server \
                 answered at once)"
            ));
        }
        check(&v, &client, &rec);
    });
}

/// README: "`meshless_retries_refused_total` … `body_too_large`", "`meshless_replay_overflows_total`
/// … requests whose body outgrew the replay buffer". A PUT of 100 KiB (replay buffer 64 KiB)
/// answered 503: one retry refused for `body_too_large`, one overflow; stats and metrics agree.
#[test]
fn a_body_too_large_to_replay_is_counted_once_everywhere() {
    run(|snap| async move {
        let addr = common::serve_sockets(|mut socket, _| async move {
            let _ = socket
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
                .await;
            // Drain what the client still sends, then close.
            let mut sink = [0u8; 8192];
            loop {
                match tokio::time::timeout(ms(200), socket.read(&mut sink)).await {
                    Ok(Ok(n)) if n > 0 => continue,
                    _ => break,
                }
            }
        })
        .await;
        let client = client_for(&[addr], "too_large")
            .deadline(Duration::from_secs(5))
            .build()
            .unwrap();
        let req = http::Request::put("/upload")
            .body(http_body_util::Full::new(Bytes::from(vec![
                b'x';
                100 * 1024
            ])))
            .unwrap();
        match client.request(req).await {
            Ok(r) => {
                let _ = r.into_body().collect().await;
            }
            Err(e) => eprintln!("error {e}"),
        }
        let rec = quiesce(&client, &snap).await;
        let sv = ("service", "too_large");
        let mut v = crate::edges_support::violations(&client, &rec, "too_large");
        let rs = client.retry_stats();
        let refused = rec.count(
            "meshless_retries_refused_total",
            &[sv, ("reason", "body_too_large")],
        );
        let over = rec.count("meshless_replay_overflows_total", &[sv]);
        if (refused, over, rs.body_too_large(), rs.replay_overflows()) != (1, 1, 1, 1) {
            v.push(format!(
                "(refused metric, overflow metric, stats body_too_large, stats overflows) = {:?}, want all 1",
                (refused, over, rs.body_too_large(), rs.replay_overflows())
            ));
        }
        want_outcomes(&client, (1, 0, 1, 0), &mut v);
        check(&v, &client, &rec);
    });
}

/// An endpoint that answers its first request `503` with `Retry-After: 1`, then `200 ok`.
async fn pushback_once() -> SocketAddr {
    let n = Arc::new(AtomicUsize::new(0));
    common::serve_heads(move |_| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        async move {
            if i == 0 {
                b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n"
                    .to_vec()
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
            }
        }
    })
    .await
}
