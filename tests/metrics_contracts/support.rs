//! Helpers of the audit.
#![allow(dead_code)]

use crate::edges_support::*;

/// Every sample of the histograms of `name` whose labels include `labels`.
pub fn samples(rec: &Recorded, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    rec.0
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .flat_map(|s| match &s.value {
            DebugValue::Histogram(v) => v.iter().map(|x| x.into_inner()).collect::<Vec<_>>(),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .collect()
}

/// The values `label` takes over the series of `name`.
pub fn label_values(rec: &Recorded, name: &str, label: &str) -> std::collections::BTreeSet<String> {
    rec.0
        .iter()
        .filter(|s| s.name == name)
        .filter_map(|s| s.labels.iter().find(|(k, _)| k == label))
        .map(|(_, v)| v.clone())
        .collect()
}

/// Waits until nothing is in flight at any endpoint nor in the limit, then takes the snapshot.
/// (The snapshotter resets counters: take it once per test.)
pub async fn quiesce(client: &Client, snap: &Snapshotter) -> Recorded {
    let c = client.clone();
    let ok = wait_until(Duration::from_secs(5), move || {
        c.stats().endpoints.iter().all(|e| e.in_flight == 0) && c.limit().in_flight() == 0
    })
    .await;
    assert!(ok, "requests still in flight: {:?}", client.stats());
    // Let the tasks that end bodies and connections run.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    Recorded::take(snap)
}

/// `(requests, successes, failures, cancelled)` of the client's stats.
pub fn outcomes(client: &Client) -> (u64, u64, u64, u64) {
    let s = client.stats();
    (s.requests, s.successes, s.failures, s.cancelled)
}

/// Notes a violation unless the client's (requests, successes, failures, cancelled) are `want`.
pub fn want_outcomes(client: &Client, want: (u64, u64, u64, u64), v: &mut Vec<String>) {
    let got = outcomes(client);
    if got != want {
        v.push(format!("(req, ok, fail, cancel) = {got:?}, want {want:?}"));
    }
}

/// Panics with every violation, the stats and the metrics.
pub fn check(v: &[String], client: &Client, rec: &Recorded) {
    if !v.is_empty() {
        panic!(
            "violations:\n  {}\nstats: {:#?}\nmetrics:\n{}",
            v.join("\n  "),
            client.stats(),
            rec.dump("meshless_")
        );
    }
}

/// A 200 head promising 100 bytes, 10 sent, then the connection closed.
pub async fn cut_body(mut socket: TcpStream) {
    let _ = socket
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nxxxxxxxxxx")
        .await;
    let _ = socket.flush().await;
    let _ = socket.shutdown().await;
}
