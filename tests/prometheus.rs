//! Scrapes `examples/prometheus.rs` over real HTTP: a meshless client under faults, the
//! Prometheus recorder, `/metrics` served on 127.0.0.1 (a port the OS picks). Checks that every
//! family is there and that the counts add up:
//!
//! - `requests_total` = the sum of `requests_completed_total` over classes and reasons;
//! - `attempts_total` = `requests_total` + the sum of `retries_total`;
//! - every attempt that reached an endpoint is in `endpoint_requests_total`;
//! - `request_duration_seconds_count` = `requests_total`;
//! - each endpoint is in exactly one state, and the balancer counts every endpoint once.
//!
//! One test in this binary: the recorder is global to the process.

#[path = "../examples/prometheus.rs"]
#[allow(dead_code)] // the example's `main` and options are not used here
mod example;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use meshless::observe;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// One sample line: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format: comments skipped, label values unescaped.
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let value: f64 = value.parse().expect("a numeric value");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => (name.to_string(), parse_labels(rest.trim_end_matches('}'))),
        };
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        rest = &after[end..];
    }
    labels
}

struct Scrape(Vec<Sample>);

impl Scrape {
    fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                filter
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    fn names(&self) -> BTreeSet<&str> {
        self.0.iter().map(|s| s.name.as_str()).collect()
    }

    fn values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }
}

async fn scrape(addr: SocketAddr) -> (String, String) {
    let client = HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{addr}/metrics").parse().unwrap();
    let res = client.get(uri).await.expect("GET /metrics");
    assert_eq!(res.status(), 200);
    let content_type = res.headers()[http::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (content_type, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_serves_every_family_and_the_counts_add_up() {
    let handle = example::install_recorder().unwrap();
    let fleet = example::start_fleet().await.unwrap();
    let client = example::client(&fleet).unwrap();
    let (addr, server) = example::serve_metrics(handle, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0);

    let ok = example::run_load(&client, 400, 16).await;
    assert!(ok >= 300, "most requests succeed through the faults: {ok}");

    let (content_type, text) = scrape(addr).await;
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(text.contains("# HELP meshless_requests_total"), "described");
    let m = Scrape(parse(&text));
    let svc = [("service", example::SERVICE)];

    // Every family of the table (ejections only once an endpoint was ejected).
    let names = m.names();
    let histogram = |name: &str| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .all(|suffix| names.contains(format!("{name}{suffix}").as_str()))
    };
    for counter_or_gauge in [
        observe::REQUESTS_TOTAL,
        observe::REQUESTS_COMPLETED_TOTAL,
        observe::ATTEMPTS_TOTAL,
        observe::RETRIES_TOTAL,
        observe::RETRIES_REFUSED_TOTAL,
        observe::REPLAY_OVERFLOWS_TOTAL,
        observe::ATTEMPT_TIMEOUTS_TOTAL,
        observe::ENDPOINT_REQUESTS_TOTAL,
        observe::ENDPOINT_FAILURES_TOTAL,
        observe::ENDPOINT_RTT_EWMA_SECONDS,
        observe::ENDPOINT_STATE,
        observe::BALANCER_ENDPOINTS,
        observe::BALANCER_FAIL_FAST_TOTAL,
    ] {
        assert!(
            names.contains(counter_or_gauge),
            "{counter_or_gauge} missing"
        );
    }
    for family in [
        observe::REQUEST_DURATION_SECONDS,
        observe::BACKOFF_SECONDS,
        observe::ENDPOINT_LATENCY_SECONDS,
    ] {
        assert!(histogram(family), "{family} missing or not a histogram");
    }

    // The counts add up (nothing is in flight: every request was awaited).
    let requests = m.sum(observe::REQUESTS_TOTAL, &svc);
    let completed = m.sum(observe::REQUESTS_COMPLETED_TOTAL, &svc);
    let ok_count = m.sum(
        observe::REQUESTS_COMPLETED_TOTAL,
        &[svc[0], ("class", "success")],
    );
    let failed = m.sum(
        observe::REQUESTS_COMPLETED_TOTAL,
        &[svc[0], ("class", "failure")],
    );
    let attempts = m.sum(observe::ATTEMPTS_TOTAL, &svc);
    let retries = m.sum(observe::RETRIES_TOTAL, &svc);
    assert_eq!(requests, 400.0);
    assert_eq!(requests, ok_count + failed, "requests = ok + failed");
    assert_eq!(requests, completed, "nothing cancelled");
    assert_eq!(
        attempts,
        requests + retries,
        "attempts = requests + retries"
    );
    assert!(retries > 0.0, "the faults cause retries");
    let at_endpoints = m.sum(observe::ENDPOINT_REQUESTS_TOTAL, &svc);
    assert!(at_endpoints <= attempts && at_endpoints > 0.0);
    assert_eq!(
        m.sum("meshless_request_duration_seconds_count", &svc),
        requests
    );
    assert_eq!(
        m.sum("meshless_endpoint_latency_seconds_count", &svc),
        at_endpoints
    );

    // The client's own snapshot tells the same story.
    let stats = client.stats();
    assert_eq!(stats.requests as f64, requests);
    assert_eq!(stats.retries as f64, retries);
    assert_eq!(stats.successes as f64, ok_count);

    // Five endpoints, each in exactly one state.
    let endpoints = m.values(observe::ENDPOINT_STATE, "endpoint");
    assert_eq!(endpoints.len(), 5, "{endpoints:?}");
    for endpoint in &endpoints {
        let states = m.sum(observe::ENDPOINT_STATE, &[("endpoint", endpoint.as_str())]);
        assert_eq!(states, 1.0, "{endpoint}");
    }
    assert_eq!(m.sum(observe::BALANCER_ENDPOINTS, &svc), 5.0);
    // Labels stay bounded: reasons and classes come from fixed sets.
    assert!(
        m.values(observe::REQUESTS_COMPLETED_TOTAL, "class")
            .is_subset(&BTreeSet::from([
                "success".into(),
                "failure".into(),
                "cancelled".into()
            ]))
    );

    server.abort();
    fleet.shutdown().await;
}
