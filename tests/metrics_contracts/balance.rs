//! Attempts the balancer moves around: refused connections, pushback on every endpoint.

use crate::common;
use crate::edges_support::*;
use crate::support::*;

fn attempts_charged_once(client: &Client, v: &mut Vec<String>) {
    let s = client.stats();
    let at_endpoints: u64 = s.endpoints.iter().map(|e| e.requests + e.cancelled).sum();
    let attempts = s.requests + s.retries + s.stale_resends;
    if at_endpoints != attempts {
        v.push(format!(
            "endpoints finished+cancelled {at_endpoints} != requests+retries+stale_resends {attempts}"
        ));
    }
}

/// One endpoint refuses connections, one answers: every request succeeds, each counted once;
/// every attempt (the refused ones included) charged to one endpoint; metrics = stats.
#[test]
fn refused_connections_are_attempts_charged_once() {
    run(|snap| async move {
        let refused = common::refusing_port();
        let fast = common::serve_heads(|_| async {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
        })
        .await;
        let client = client_for(&[refused, fast], "refused")
            .deadline(Duration::from_secs(5))
            .build()
            .unwrap();
        for i in 0..20 {
            let r = if i % 2 == 0 {
                client.get("/").await
            } else {
                client.post("/", "x").await
            };
            r.unwrap().into_body().collect().await.unwrap();
        }
        let rec = quiesce(&client, &snap).await;
        let mut v = crate::edges_support::violations(&client, &rec, "refused");
        want_outcomes(&client, (20, 20, 0, 0), &mut v);
        attempts_charged_once(&client, &mut v);
        let d = samples(
            &rec,
            "meshless_request_duration_seconds",
            &[("service", "refused")],
        )
        .len();
        if d != 20 {
            v.push(format!("{d} duration samples for 20 requests"));
        }
        check(&v, &client, &rec);
    });
}

/// Two endpoints that each answer their first request `503` + `Retry-After: 1`, then `200`: the
/// request's retries meet every endpoint pushing back and wait. One request, one success, each
/// attempt charged once, `retries_total` = the retries the endpoints saw.
#[test]
fn a_retry_that_waits_for_pushback_is_counted_once() {
    run(|snap| async move {
        let mk = || {
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
        };
        let a = mk().await;
        let b = mk().await;
        let client = client_for(&[a, b], "pb2")
            .deadline(Duration::from_secs(5))
            .build()
            .unwrap();
        let r = client.get("/").await.unwrap();
        assert_eq!(r.status(), 200);
        r.into_body().collect().await.unwrap();
        let rec = quiesce(&client, &snap).await;
        let mut v = crate::edges_support::violations(&client, &rec, "pb2");
        want_outcomes(&client, (1, 1, 0, 0), &mut v);
        attempts_charged_once(&client, &mut v);
        let s = client.stats();
        let finished: u64 = s.endpoints.iter().map(|e| e.requests).sum();
        if s.retries + 1 != finished {
            v.push(format!(
                "retries {} + 1 != attempts the endpoints finished {finished}",
                s.retries
            ));
        }
        check(&v, &client, &rec);
    });
}

/// The same, with a deadline too short to wait for the pushback: the request fails at once
/// (`EndpointsPushingBack`), counted once as a failure in stats and metrics.
#[test]
fn every_endpoint_pushing_back_fails_once() {
    run(|snap| async move {
        let addr = common::serve_heads(|_| async {
            b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 5\r\ncontent-length: 0\r\n\r\n"
                .to_vec()
        })
        .await;
        let client = client_for(&[addr], "pb_fail")
            .deadline(Duration::from_secs(2))
            .build()
            .unwrap();
        // The first gets its 503 (or, its retry meeting the endpoint's pushback, an error).
        if let Ok(r) = client.get("/").await {
            assert_eq!(r.status(), 503);
            r.into_body().collect().await.unwrap();
        }
        let e = match client.get("/").await {
            Ok(r) => {
                r.into_body().collect().await.unwrap();
                "an answer".to_string()
            }
            Err(e) => format!("{:?} {e}", e.kind()),
        };
        let rec = quiesce(&client, &snap).await;
        let mut v = crate::edges_support::violations(&client, &rec, "pb_fail");
        want_outcomes(&client, (2, 0, 2, 0), &mut v);
        // README: "`meshless_attempts_total` … attempts sent": a request that failed at once
        // because every endpoint was pushing back sent nothing.
        let s = client.stats();
        let at_endpoints: u64 = s.endpoints.iter().map(|e| e.requests + e.cancelled).sum();
        let m_attempts = rec.count("meshless_attempts_total", &[("service", "pb_fail")]);
        if m_attempts != at_endpoints {
            v.push(format!(
                "attempts_total {m_attempts} != attempts the endpoint saw {at_endpoints} (second: {e})"
            ));
        }
        let reasons = label_values(&rec, "meshless_requests_completed_total", "reason");
        eprintln!("reasons {reasons:?}; second: {e}");
        check(&v, &client, &rec);
    });
}
