//! `.metrics(false)` on the client: nothing recorded by any layer, and the stats stay.

use crate::common;
use crate::edges_support::*;
use crate::support::*;
use meshless::hedge::{HedgeConfig, HedgeDelay};
use meshless::limit::{Algorithm, LimitConfig};
use meshless::throttle::ThrottleConfig;
use std::borrow::Cow;

/// README: "`.metrics(false)` on `http::ClientBuilder` … turns metrics off; `stats()` and
/// tracing stay". Every layer on (hedging, a limit, throttling, per-route breakers), with
/// retries, cut bodies and cancellations: no `meshless_` series at all.
#[test]
fn metrics_off_on_the_client_silences_every_layer() {
    run(|snap| async move {
        let n = Arc::new(AtomicUsize::new(0));
        let addr = common::serve_sockets(move |mut socket, _| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            async move {
                match i % 4 {
                    0 => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                    1 => cut_body(socket).await,
                    2 => hold(socket).await,
                    _ => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                }
            }
        })
        .await;
        let other = common::serve_sockets(|socket, _| hold(socket)).await;
        let mut hedge = HedgeConfig::default();
        hedge.enabled = true;
        hedge.delay = HedgeDelay::Fixed(ms(20));
        hedge.max_extra_load = 1.0;
        hedge.min_per_second = 1000.0;
        let mut limit = LimitConfig::default();
        limit.algorithm = Algorithm::Fixed { max: 100 };
        let mut throttle = ThrottleConfig::default();
        throttle.enabled = true;
        let client = client_for(&[addr, other], "off")
            .metrics(false)
            .deadline(ms(400))
            .attempt_timeout(ms(150))
            .hedge(hedge)
            .limit(limit)
            .throttle(throttle)
            .breaker_per_route(|_m, _u, _h| Some(Cow::Borrowed("r")))
            .build()
            .unwrap();
        for _ in 0..12 {
            let _ = tokio::time::timeout(ms(300), async {
                if let Ok(r) = client.get("/").await {
                    let _ = r.into_body().collect().await;
                }
            })
            .await;
        }
        let rec = quiesce(&client, &snap).await;
        let names: std::collections::BTreeSet<&str> =
            rec.0.iter().map(|s| s.name.as_str()).collect();
        let mut v = Vec::new();
        if !names.is_empty() {
            v.push(format!("metrics(false), yet recorded: {names:?}"));
        }
        if client.stats().requests == 0 {
            v.push("stats stay on".into());
        }
        check(&v, &client, &rec);
    });
}
