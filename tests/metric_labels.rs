//! Metric label cardinality of `meshless::http::Client` against a real local server.
//! Thousands of distinct paths, methods, hosts, per-route breaker names, HTTP statuses and gRPC
//! statuses must not grow the set of series: the second wave of distinct requests adds none.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Clone)]
struct Rec(Arc<Registry<Key, AtomicStorage>>);

impl Recorder for Rec {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

impl Rec {
    /// Every series: its name and sorted labels.
    fn series(&self) -> BTreeSet<String> {
        let mut all = BTreeSet::new();
        let mut visit = |key: &Key| {
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            all.insert(format!("{}{{{}}}", key.name(), labels.join(",")));
        };
        self.0.visit_counters(|k, _| visit(k));
        self.0.visit_gauges(|k, _| visit(k));
        self.0.visit_histograms(|k, _| visit(k));
        all
    }

    /// The distinct values each label key takes.
    fn values(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut visit = |key: &Key| {
            for l in key.labels() {
                map.entry(l.key().to_string())
                    .or_default()
                    .insert(l.value().to_string());
            }
        };
        self.0.visit_counters(|k, _| visit(k));
        self.0.visit_gauges(|k, _| visit(k));
        self.0.visit_histograms(|k, _| visit(k));
        map
    }
}

/// Answers by path: `/s/NNN` with status NNN, `/g/X` as gRPC with `grpc-status: X` in the
/// head, `/t/X` as gRPC with `grpc-status: X` in the trailers, anything else 200.
async fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let path = req.uri().path().to_string();
                    let mut res = Response::new(Full::new(Bytes::from_static(b"x")));
                    if let Some(code) = path.strip_prefix("/s/") {
                        *res.status_mut() =
                            StatusCode::from_u16(code.parse().unwrap_or(200)).unwrap_or_default();
                    } else if let Some(code) = path.strip_prefix("/g/") {
                        let h = res.headers_mut();
                        h.insert("content-type", HeaderValue::from_static("application/grpc"));
                        h.insert("grpc-status", HeaderValue::from_str(code).expect("value"));
                        h.insert("grpc-message", HeaderValue::from_str(&path).expect("value"));
                    }
                    Ok::<_, Infallible>(res)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// One wave of distinct requests, numbered from `from`.
async fn wave(client: &meshless::http::Client, port: u16, from: usize, n: usize) {
    let mut sent = 0;
    let send = |req: Request<Empty<Bytes>>| {
        let call = client.request(req);
        async move {
            // Any answer or error will do: only the series count.
            let _ = call.await.map(|res| res.status());
        }
    };
    for i in from..from + n {
        send(Request::get(format!("/p/{i}")).body(Empty::new()).unwrap()).await;
        let method = Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        send(
            Request::builder()
                .method(method)
                .uri("/m")
                .body(Empty::new())
                .unwrap(),
        )
        .await;
        send(
            Request::get(format!("http://h{i}.example:{port}/h"))
                .body(Empty::new())
                .unwrap(),
        )
        .await;
        sent += 3;
    }
    // Every status the server can send (hyper refuses 1xx as a final status: 200 for those).
    for code in 100..=599u16 {
        send(
            Request::get(format!("/s/{code}?wave={from}"))
                .body(Empty::new())
                .unwrap(),
        )
        .await;
        sent += 1;
    }
    // gRPC statuses, known and not.
    for code in [
        "0", "1", "2", "4", "13", "14", "16", "17", "99", "12345", "abc", "-1",
    ] {
        let mut req = Request::post(format!("/g/{code}"))
            .body(Empty::new())
            .unwrap();
        req.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        send(req).await;
        sent += 1;
    }
    assert!(sent > n);
}

#[test]
fn thousands_of_distinct_requests_add_no_series() {
    let rec = Rec(Arc::new(Registry::atomic()));
    metrics::with_local_recorder(&rec, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let addr = server().await;
                let client = meshless::http::Client::builder()
                    .endpoints([addr.to_string()])
                    .service_name("labels")
                    .deadline(Duration::from_secs(5))
                    .max_retries(0)
                    // A route per path: the bound (32 by default) must hold.
                    .breaker_per_route(|method, uri, _| {
                        Some(Cow::Owned(format!("{method} {}", uri.path())))
                    })
                    .build()
                    .expect("client");
                wave(&client, addr.port(), 0, 700).await;
                let first = rec.series();
                wave(&client, addr.port(), 700, 700).await;
                let second = rec.series();
                let added: Vec<_> = second.difference(&first).collect();
                assert!(added.is_empty(), "the second wave added series: {added:#?}");

                let values = rec.values();
                let routes = values.get("route").cloned().unwrap_or_default();
                assert!(routes.len() <= 33, "{} route values", routes.len());
                assert!(client.breaker().routes().len() <= 32);
                // `route` is what our route function names (bounded above); no other label
                // may carry request data.
                for (key, vals) in values.iter().filter(|(k, _)| *k != "route") {
                    for v in vals {
                        assert!(
                            !v.contains("FOO") && !v.contains(".example") && !v.contains("/s/"),
                            "label {key}={v} carries request data"
                        );
                    }
                }
                eprintln!(
                    "series: {}, label values: {:?}",
                    second.len(),
                    values.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
                );
                // 33 breakers (32 routes and the client-wide one) × 16 series each, and a
                // fixed set besides.
                let without_route = second.iter().filter(|s| !s.contains("route=")).count();
                assert!(second.len() - without_route <= 33 * 16);
                assert!(without_route < 100, "{without_route} series: {second:#?}");
            })
    });
}
