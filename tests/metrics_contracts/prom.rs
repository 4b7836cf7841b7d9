//! The same books through the Prometheus exporter the README shows.

use crate::common;
use crate::edges_support::*;
use crate::support::*;
use metrics_exporter_prometheus::PrometheusBuilder;

/// Sum of the samples of `name` whose label set includes every `labels` pair.
fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A mixed workload (successes, 503s retried, cut bodies, deadline timeouts, cancellations)
/// through a Prometheus recorder: the rendered counters and histogram counts equal
/// `Client::stats()`.
#[test]
fn prometheus_render_matches_the_stats() {
    let recorder = PrometheusBuilder::new()
        .set_buckets(meshless::observe::LATENCY_BUCKETS)
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    let (client, text) = metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let n = Arc::new(AtomicUsize::new(0));
                let addr = common::serve_sockets(move |mut socket, _| {
                    let i = n.fetch_add(1, Ordering::SeqCst);
                    async move {
                        match i % 5 {
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
                            _ => hold(socket).await,
                        }
                    }
                })
                .await;
                let client = client_for(&[addr], "prom")
                    .deadline(ms(300))
                    .build()
                    .unwrap();
                for i in 0..40u64 {
                    let _ = tokio::time::timeout(ms(150 + (i % 3) * 100), async {
                        if let Ok(r) = client.get("/").await {
                            let _ = r.into_body().collect().await;
                        }
                    })
                    .await;
                }
                let c = client.clone();
                assert!(
                    wait_until(Duration::from_secs(5), move || {
                        c.stats().endpoints.iter().all(|e| e.in_flight == 0)
                    })
                    .await
                );
                (client, handle.render())
            })
    });
    let s = client.stats();
    let sv = ("service", "prom");
    let mut v = Vec::new();
    let checks = [
        ("meshless_requests_total", vec![sv], s.requests),
        (
            "meshless_requests_completed_total",
            vec![sv, ("class", "success")],
            s.successes,
        ),
        (
            "meshless_requests_completed_total",
            vec![sv, ("class", "failure")],
            s.failures,
        ),
        (
            "meshless_requests_completed_total",
            vec![sv, ("class", "cancelled")],
            s.cancelled,
        ),
        (
            "meshless_request_duration_seconds_count",
            vec![sv, ("class", "success")],
            s.successes,
        ),
        (
            "meshless_request_duration_seconds_count",
            vec![sv, ("class", "failure")],
            s.failures,
        ),
        (
            "meshless_request_duration_seconds_count",
            vec![sv, ("class", "cancelled")],
            s.cancelled,
        ),
        ("meshless_retries_total", vec![sv], s.retries),
        ("meshless_attempts_total", vec![sv], s.requests + s.retries),
        (
            "meshless_attempt_timeouts_total",
            vec![sv],
            s.attempt_timeouts,
        ),
        (
            "meshless_endpoint_requests_total",
            vec![sv],
            s.endpoints.iter().map(|e| e.requests).sum(),
        ),
        (
            "meshless_endpoint_failures_total",
            vec![sv],
            s.endpoints.iter().map(|e| e.failures).sum(),
        ),
        (
            "meshless_endpoint_cancelled_total",
            vec![sv],
            s.endpoints.iter().map(|e| e.cancelled).sum(),
        ),
        (
            "meshless_endpoint_latency_seconds_count",
            vec![sv],
            s.endpoints.iter().map(|e| e.requests).sum(),
        ),
    ];
    for (name, labels, want) in checks {
        let got = sum(&text, name, &labels);
        if got != want as f64 {
            v.push(format!("{name}{labels:?}: rendered {got}, stats {want}"));
        }
    }
    if s.requests != s.successes + s.failures + s.cancelled || s.requests != 40 {
        v.push(format!("stats {s:?}"));
    }
    assert!(v.is_empty(), "{}\nstats {s:#?}\n{text}", v.join("\n"));
}
