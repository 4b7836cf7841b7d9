//! Label cardinality under raw, per-request values.

use crate::common;
use crate::edges_support::*;
use crate::support::*;
use std::borrow::Cow;

/// `BreakerConfig::max_routes` (default 32): "bounds memory and label cardinality of per_route
/// breakers". A route function that (wrongly) names every path: 300 distinct paths must give
/// at most 32 route label values (plus the client-wide breaker's empty one) in every breaker
/// family; and no other family takes a label value from the path.
#[test]
fn per_route_breaker_labels_stay_bounded_by_max_routes() {
    run(|snap| async move {
        let addr = common::serve_heads(|_| async {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
        })
        .await;
        let client = client_for(&[addr], "routes")
            .breaker_per_route(|_m, uri, _h| Some(Cow::Owned(uri.path().to_string())))
            .build()
            .unwrap();
        for i in 0..300 {
            let r = client.get(format!("/item/{i}")).await.unwrap();
            r.into_body().collect().await.unwrap();
        }
        let rec = quiesce(&client, &snap).await;
        let mut v = crate::edges_support::violations(&client, &rec, "routes");
        for family in [
            "meshless_breaker_state",
            "meshless_breaker_transitions_total",
            "meshless_breaker_rejected_total",
        ] {
            let routes = label_values(&rec, family, "route");
            if routes.len() > 33 {
                v.push(format!(
                    "{family}: {} route label values (max_routes 32)",
                    routes.len()
                ));
            }
        }
        for s in &rec.0 {
            for (k, val) in &s.labels {
                if k != "route" && val.contains("/item/") {
                    v.push(format!("{} has a path in label {k}={val}", s.name));
                }
            }
        }
        if rec.0.len() > 33 * 16 + 64 {
            v.push(format!("{} series after 300 distinct paths", rec.0.len()));
        }
        check(&v, &client, &rec);
    });
}

/// README: "Labels are bounded: `service` (set by you), `endpoint` …". Every family of the
/// table is labelled by `service`: with every layer on, every `meshless_` series a client
/// records carries `service="<its name>"` (two clients then never mix).
#[test]
fn every_series_carries_its_clients_service_label() {
    use meshless::hedge::{HedgeConfig, HedgeDelay};
    use meshless::limit::{Algorithm, LimitConfig};
    use meshless::throttle::ThrottleConfig;
    run(|snap| async move {
        let fast = common::serve_heads(|_| async {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec()
        })
        .await;
        let hang = common::serve_sockets(|socket, _| hold(socket)).await;
        let mut hedge = HedgeConfig::default();
        hedge.enabled = true;
        hedge.delay = HedgeDelay::Fixed(ms(20));
        hedge.max_extra_load = 1.0;
        hedge.min_per_second = 1000.0;
        let mut limit = LimitConfig::default();
        limit.algorithm = Algorithm::Fixed { max: 100 };
        let mut throttle = ThrottleConfig::default();
        throttle.enabled = true;
        let client = client_for(&[fast, hang], "svc_a")
            .deadline(ms(400))
            .attempt_timeout(ms(150))
            .hedge(hedge)
            .limit(limit)
            .throttle(throttle)
            .breaker_per_route(|_m, _u, _h| Some(Cow::Borrowed("r")))
            .build()
            .unwrap();
        for _ in 0..8 {
            if let Ok(r) = client.get("/").await {
                let _ = r.into_body().collect().await;
            }
        }
        let rec = quiesce(&client, &snap).await;
        let mut v = Vec::new();
        for s in &rec.0 {
            if s.name.starts_with("meshless_")
                && !s
                    .labels
                    .iter()
                    .any(|(k, val)| k == "service" && val == "svc_a")
            {
                v.push(format!(
                    "{} {:?} has no service=\"svc_a\"",
                    s.name, s.labels
                ));
            }
        }
        check(&v, &client, &rec);
    });
}

/// README: "`meshless_concurrency_limit` … the concurrency limit in force …; absent with no
/// limit". A default client (no limit): no such series.
#[test]
fn no_limit_means_no_concurrency_limit_series() {
    run(|snap| async move {
        let addr = common::serve_heads(|_| async {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
        })
        .await;
        let client = client_for(&[addr], "nolimit").build().unwrap();
        let r = client.get("/").await.unwrap();
        r.into_body().collect().await.unwrap();
        let rec = quiesce(&client, &snap).await;
        let mut v = Vec::new();
        let n = rec
            .0
            .iter()
            .filter(|s| s.name == "meshless_concurrency_limit")
            .count();
        if n != 0 {
            v.push(format!(
                "{n} meshless_concurrency_limit series with no limit"
            ));
        }
        check(&v, &client, &rec);
    });
}

/// Two clients that share a `service` name (the label is "set by you"; nothing documents it as
/// unique) record into the same series: counters add up, and so must the gauges that count
/// things — `meshless_balancer_endpoints` is "endpoints by state", so 1 + 1 endpoints are 2
/// active; once one client is dropped ("dropping it retires its endpoints, which takes them out
/// of the gauges"), 1.
#[test]
fn two_clients_of_one_service_add_up_in_the_gauges() {
    run(|snap| async move {
        let a = common::serve_heads(|_| async {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
        })
        .await;
        let b = common::serve_heads(|_| async {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
        })
        .await;
        let c1 = client_for(&[a], "dup").build().unwrap();
        let c2 = client_for(&[b], "dup").build().unwrap();
        for c in [&c1, &c2] {
            let r = c.get("/").await.unwrap();
            r.into_body().collect().await.unwrap();
        }
        // (The debugging snapshotter resets gauges as well as counters when read: one snapshot.)
        drop(c2);
        let rec = quiesce(&c1, &snap).await;
        let mut v = Vec::new();
        let sv = ("service", "dup");
        let req = rec.count("meshless_requests_total", &[sv]);
        if req != 2 {
            v.push(format!("requests_total {req}"));
        }
        let active = rec.gauge("meshless_balancer_endpoints", &[sv, ("state", "active")]);
        if active != Some(1.0) {
            v.push(format!(
                "after dropping one client, balancer_endpoints{{active}} {active:?}, want 1"
            ));
        }
        check(&v, &c1, &rec);
    });
}
