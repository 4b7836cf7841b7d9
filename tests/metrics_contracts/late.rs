//! Bodies ended by timers: the idle timeout, the deadline, a late reader; and a concurrent mix.

use crate::common;
use crate::edges_support::*;
use crate::support::*;

/// README: "the deadline or idle timeout passing while the body waits for the endpoint make it
/// a failure". A head, then a silent body and a 200 ms idle timeout: one failure, charged to
/// the endpoint, the duration sample under `failure`.
#[test]
fn the_idle_timeout_on_a_silent_body_is_one_failure() {
    run(|snap| async move {
        let addr = common::serve_sockets(|mut socket, _| async move {
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nxxxxxxxxxx")
                .await;
            hold(socket).await;
        })
        .await;
        let client = client_for(&[addr], "idle")
            .deadline(Duration::from_secs(5))
            .body_idle_timeout(ms(200))
            .build()
            .unwrap();
        let r = client.get("/").await.unwrap();
        assert!(r.into_body().collect().await.is_err());
        let rec = quiesce(&client, &snap).await;
        let sv = ("service", "idle");
        let mut v = crate::edges_support::violations(&client, &rec, "idle");
        want_outcomes(&client, (1, 0, 1, 0), &mut v);
        let e = &client.stats().endpoints[0];
        if (e.requests, e.failures, e.cancelled) != (1, 1, 0) {
            v.push(format!(
                "endpoint (req, fail, cancel) {:?}",
                (e.requests, e.failures, e.cancelled)
            ));
        }
        let f = samples(
            &rec,
            "meshless_request_duration_seconds",
            &[sv, ("class", "failure")],
        )
        .len();
        if f != 1 {
            v.push(format!("failure duration samples {f}, want 1"));
        }
        check(&v, &client, &rec);
    });
}

/// README: "a frame read after the deadline … make it `cancelled`". The whole body arrived in
/// time; the caller reads it after the deadline: the request is cancelled, and the endpoint,
/// which answered in time, is charged no failure.
#[test]
fn a_body_read_after_the_deadline_is_a_cancellation_not_the_endpoints_failure() {
    run(|snap| async move {
        let addr = common::serve_sockets(|mut socket, _| async move {
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\nxxxxxxxxxx")
                .await;
            let _ = socket.flush().await;
            tokio::time::sleep(ms(50)).await;
            let _ = socket.write_all(b"yyyyyyyyyy").await;
            hold(socket).await;
        })
        .await;
        let client = client_for(&[addr], "late_read")
            .deadline(ms(400))
            .build()
            .unwrap();
        let r = client.get("/").await.unwrap();
        let mut body = r.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len(), 10);
        tokio::time::sleep(ms(800)).await;
        let rest = body.frame().await;
        let was_err = matches!(rest, Some(Err(_)));
        drop(body);
        let rec = quiesce(&client, &snap).await;
        let mut v = crate::edges_support::violations(&client, &rec, "late_read");
        if !was_err {
            v.push(format!("the late read was no error: {rest:?}"));
        }
        want_outcomes(&client, (1, 0, 0, 1), &mut v);
        let e = &client.stats().endpoints[0];
        if e.failures != 0 {
            v.push(format!(
                "endpoint charged {} failure(s) for a body it sent in time",
                e.failures
            ));
        }
        check(&v, &client, &rec);
    });
}

/// Many concurrent requests, with outcomes of every kind and callers giving up at various
/// moments: the books balance, and the duration histogram has one sample per completed request.
#[test]
fn a_concurrent_mix_with_cancellations_balances() {
    run(|snap| async move {
        let n = Arc::new(AtomicUsize::new(0));
        let addr = common::serve_sockets(move |mut socket, _| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            async move {
                match i % 6 {
                    0 | 1 => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                    2 => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                    3 => cut_body(socket).await,
                    4 => {
                        tokio::time::sleep(ms(30 + (i as u64 % 7) * 20)).await;
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                    _ => hold(socket).await,
                }
            }
        })
        .await;
        let client = client_for(&[addr], "conc")
            .deadline(ms(600))
            .attempt_timeout(ms(250))
            .build()
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..120u64 {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                let patience = ms(40 + (i % 11) * 30);
                let _ = tokio::time::timeout(patience, async move {
                    if let Ok(r) = c.get("/").await {
                        let _ = r.into_body().collect().await;
                    }
                })
                .await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rec = quiesce(&client, &snap).await;
        let sv = ("service", "conc");
        let mut v = crate::edges_support::violations(&client, &rec, "conc");
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
        let s = client.stats();
        if s.requests != 120 {
            v.push(format!("requests {} != 120", s.requests));
        }
        let at_endpoints: u64 = s.endpoints.iter().map(|e| e.requests + e.cancelled).sum();
        let sent = s.requests + s.retries + s.stale_resends;
        if at_endpoints > sent {
            v.push(format!(
                "endpoints finished+cancelled {at_endpoints} > attempts sent {sent}"
            ));
        }
        eprintln!(
            "outcomes {:?} retries {} stale {} endpoints {:?}",
            outcomes(&client),
            s.retries,
            s.stale_resends,
            s.endpoints
        );
        check(&v, &client, &rec);
    });
}

/// README: "a stream silent for its default idle limit … make it `cancelled`" ("unset, a stream
/// may be silent at most as long as the request's deadline"), "the endpoint did nothing wrong".
/// A `text/event-stream` that sends one event then stays silent past the 300 ms deadline:
/// the request is cancelled, the endpoint charged no failure, books balanced.
#[test]
fn a_silent_event_stream_is_a_cancellation() {
    run(|snap| async move {
        let addr = common::serve_sockets(|mut socket, _| async move {
            let _ = socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
                      8\r\ndata: a\n\r\n",
                )
                .await;
            let _ = socket.flush().await;
            hold(socket).await;
        })
        .await;
        let client = client_for(&[addr], "sse")
            .deadline(ms(300))
            .build()
            .unwrap();
        let r = client.get("/events").await.unwrap();
        let mut body = r.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.is_data());
        let t = std::time::Instant::now();
        let next = tokio::time::timeout(Duration::from_secs(5), body.frame()).await;
        let waited = t.elapsed();
        drop(body);
        let rec = quiesce(&client, &snap).await;
        let mut v = crate::edges_support::violations(&client, &rec, "sse");
        if !matches!(next, Ok(Some(Err(_)))) {
            v.push(format!(
                "the silent stream did not end in an error: {next:?} after {waited:?}"
            ));
        }
        want_outcomes(&client, (1, 0, 0, 1), &mut v);
        let e = &client.stats().endpoints[0];
        if e.failures != 0 {
            v.push(format!("endpoint charged {} failure(s)", e.failures));
        }
        check(&v, &client, &rec);
    });
}
