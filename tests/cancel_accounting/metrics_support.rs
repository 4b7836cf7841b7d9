//! Copied from tests/edges_support/mod.rs (the metrics recorder and the books every request must leave true).
//! Shared by the edge tests: a real-clock runtime with a local metrics recorder, and the
//! bookkeeping checks every request must leave true once it has ended.
#![allow(dead_code, unused_imports)]

#[allow(unused_imports)]
pub use bytes::Bytes;
pub use http_body_util::BodyExt;
pub use meshless::error::Kind;
pub use meshless::http::Client;
pub use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
pub use std::future::Future;
pub use std::net::SocketAddr;
pub use std::sync::Arc;
pub use std::sync::atomic::{AtomicUsize, Ordering};
pub use std::time::Duration;
pub use tokio::io::{AsyncReadExt, AsyncWriteExt};
pub use tokio::net::TcpStream;

pub const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One metric series.
#[derive(Debug)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: DebugValue,
}

#[derive(Debug)]
pub struct Recorded(pub Vec<Series>);

impl Recorded {
    pub fn take(snap: &Snapshotter) -> Recorded {
        Recorded(
            snap.snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _u, _d, value)| {
                    let (_k, key) = key.into_parts();
                    let labels = key
                        .labels()
                        .map(|l| (l.key().to_string(), l.value().to_string()))
                        .collect();
                    Series {
                        name: key.name().to_string(),
                        labels,
                        value,
                    }
                })
                .collect(),
        )
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Series> + 'a {
        self.0.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
    }

    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                DebugValue::Counter(n) => *n,
                other => panic!("{name} not a counter: {other:?}"),
            })
            .sum()
    }

    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let v: Vec<f64> = self
            .matching(name, labels)
            .map(|s| match &s.value {
                DebugValue::Gauge(v) => v.into_inner(),
                other => panic!("{name} not a gauge: {other:?}"),
            })
            .collect();
        if v.is_empty() {
            None
        } else {
            Some(v.iter().sum())
        }
    }

    pub fn hist_len(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        self.matching(name, labels)
            .map(|s| match &s.value {
                DebugValue::Histogram(v) => v.len(),
                other => panic!("{name} not a histogram: {other:?}"),
            })
            .sum()
    }

    pub fn dump(&self, prefix: &str) -> String {
        let mut out = String::new();
        for s in &self.0 {
            if s.name.starts_with(prefix) {
                let v = match &s.value {
                    DebugValue::Counter(n) => format!("{n}"),
                    DebugValue::Gauge(g) => format!("{}", g.into_inner()),
                    DebugValue::Histogram(h) => format!("hist[{}]", h.len()),
                };
                out.push_str(&format!("{} {:?} = {}\n", s.name, s.labels, v));
            }
        }
        out
    }
}

/// Runs `test` on a current-thread runtime, real clock, with a fresh local recorder; the
/// test gets the snapshotter to read what was recorded.
pub fn run<F, T>(test: impl FnOnce(Snapshotter) -> F) -> T
where
    F: Future<Output = T>,
{
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(test(snap))
    })
}

/// Waits (real time, polling) until `cond` holds, at most `bound`.
pub async fn wait_until(bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = tokio::time::Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > bound {
            return false;
        }
        tokio::time::sleep(ms(5)).await;
    }
}

/// Everything that must agree once every request has ended. Returns a list of violations.
pub fn violations(client: &Client, rec: &Recorded, service: &str) -> Vec<String> {
    let mut v = Vec::new();
    let s = client.stats();
    let sv = [("service", service)];
    if s.requests != s.successes + s.failures + s.cancelled {
        v.push(format!(
            "stats: requests {} != successes {} + failures {} + cancelled {}",
            s.requests, s.successes, s.failures, s.cancelled
        ));
    }
    let m_req = rec.count("meshless_requests_total", &sv);
    let m_done = rec.count("meshless_requests_completed_total", &sv);
    if m_req != s.requests {
        v.push(format!(
            "metric requests_total {m_req} != stats.requests {}",
            s.requests
        ));
    }
    if m_req != m_done {
        v.push(format!(
            "metric requests_total {m_req} != sum completed {m_done}"
        ));
    }
    for (class, want) in [
        ("success", s.successes),
        ("failure", s.failures),
        ("cancelled", s.cancelled),
    ] {
        let got = rec.count(
            "meshless_requests_completed_total",
            &[("service", service), ("class", class)],
        );
        if got != want {
            v.push(format!("completed{{class={class}}} {got} != stats {want}"));
        }
    }
    let attempts = rec.count("meshless_attempts_total", &sv);
    let retries = rec.count("meshless_retries_total", &sv);
    if attempts != m_req + retries {
        v.push(format!(
            "attempts_total {attempts} != requests_total {m_req} + retries_total {retries}"
        ));
    }
    if retries != s.retries {
        v.push(format!(
            "retries_total {retries} != stats.retries {}",
            s.retries
        ));
    }
    for e in &s.endpoints {
        let key = e.key.to_string();
        let el = [("service", service), ("endpoint", key.as_str())];
        if e.in_flight != 0 {
            v.push(format!(
                "endpoint {key}: in_flight {} after the end",
                e.in_flight
            ));
        }
        let mr = rec.count("meshless_endpoint_requests_total", &el);
        if mr != e.requests {
            v.push(format!(
                "endpoint {key}: metric requests {mr} != stats {}",
                e.requests
            ));
        }
        let mf = rec.count("meshless_endpoint_failures_total", &el);
        if mf != e.failures {
            v.push(format!(
                "endpoint {key}: metric failures {mf} != stats {}",
                e.failures
            ));
        }
        let mc = rec.count("meshless_endpoint_cancelled_total", &el);
        if mc != e.cancelled {
            v.push(format!(
                "endpoint {key}: metric cancelled {mc} != stats {}",
                e.cancelled
            ));
        }
    }
    let limit = client.limit();
    if limit.in_flight() != 0 {
        v.push(format!(
            "limit in_flight {} after the end",
            limit.in_flight()
        ));
    }
    if limit.waiting() != 0 {
        v.push(format!("limit waiting {} after the end", limit.waiting()));
    }
    if let Some(g) = rec.gauge("meshless_concurrency_in_flight", &sv) {
        if g != 0.0 {
            v.push(format!("gauge concurrency_in_flight {g} after the end"));
        }
    }
    v
}

/// Waits until no endpoint has a request in flight and the limit holds no permit, then
/// returns the violations.
pub async fn settle_and_check(client: &Client, snap: &Snapshotter, service: &str) -> Vec<String> {
    settle(client, snap, service).await.0
}

/// The snapshotter resets counters when read: the snapshot taken here is kept for the test
/// (and for `report`).
pub async fn settle(
    client: &Client,
    snap: &Snapshotter,
    service: &str,
) -> (Vec<String>, Arc<Recorded>) {
    let c = client.clone();
    wait_until(Duration::from_secs(3), move || {
        c.stats().endpoints.iter().all(|e| e.in_flight == 0) && c.limit().in_flight() == 0
    })
    .await;
    let rec = Arc::new(Recorded::take(snap));
    LAST.with(|l| *l.borrow_mut() = Some(rec.clone()));
    (violations(client, &rec, service), rec)
}

thread_local! {
    static LAST: std::cell::RefCell<Option<Arc<Recorded>>> = const { std::cell::RefCell::new(None) };
}

pub fn report(v: &[String], client: &Client, _snap: &Snapshotter) {
    if !v.is_empty() {
        let rec = LAST.with(|l| l.borrow().clone()).expect("a snapshot");
        panic!(
            "violations:\n  {}\nstats: {:#?}\nmetrics:\n{}",
            v.join("\n  "),
            client.stats(),
            rec.dump("meshless_")
        );
    }
}

/// Reads until the peer closes (holding the connection open, silent).
pub async fn hold(mut socket: TcpStream) {
    let mut sink = [0u8; 256];
    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// A 200 with `body` after `delay`, then keeps serving heads on the connection.
pub async fn answer_after(mut socket: TcpStream, delay: Duration, body: &'static str) {
    tokio::time::sleep(delay).await;
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        body
    );
    let _ = socket.write_all(head.as_bytes()).await;
    hold(socket).await;
}

pub fn client_for(addrs: &[SocketAddr], service: &str) -> meshless::http::ClientBuilder {
    Client::builder()
        .endpoints(addrs.iter().map(|a| a.to_string()))
        .service_name(service)
}
