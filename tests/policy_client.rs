//! A client built from a configuration file sends requests through a real fleet, and the
//! file's settings are the ones it runs with.
#![cfg(feature = "serde")]

use meshless::error::Kind;
use meshless::http::Client;
use meshless::testing::{Behavior, Fleet, Latency};
use std::time::Duration;

fn endpoints(fleet: &Fleet) -> String {
    let addrs: Vec<String> = fleet.addrs().iter().map(|a| format!("\"{a}\"")).collect();
    format!("[{}]", addrs.join(", "))
}

/// A TOML client config for `fleet` with `extra` sections; the outlier detector is off so that
/// one always-failing endpoint stays in and every attempt reaches it.
fn toml(fleet: &Fleet, extra: &str) -> String {
    format!(
        "endpoints = {}\nmetrics = false\n[balance.outlier]\nconsecutive_failures = 'off'\n{extra}",
        endpoints(fleet)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_from_a_file_sends_through_the_fleet_with_the_files_retries() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().errors(1.0, http::StatusCode::SERVICE_UNAVAILABLE))
        .start()
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("meshless-policy-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (retries, attempts) in [(0u64, 1u64), (3, 4)] {
        let path = dir.join(format!("client-{retries}.toml"));
        let text = toml(
            &fleet,
            &format!(
                "[retry]\nmax_retries = {retries}\nbackoff = {{ base = '1ms', cap = '2ms' }}\n"
            ),
        );
        std::fs::write(&path, text).unwrap();
        let client = Client::from_file(&path).expect("a valid file");
        let before = fleet.backend(0).counters().requests();
        for _ in 0..3 {
            let res = client.get("/").await.expect("answered");
            assert_eq!(res.status(), 503);
        }
        let sent = fleet.backend(0).counters().requests() - before;
        assert_eq!(sent, 3 * attempts, "max_retries = {retries}");
        assert_eq!(client.retry_stats().retries(), 3 * retries);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_deadline_bounds_a_slow_upstream() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().latency(Latency::fixed(Duration::from_millis(400))))
        .start()
        .await
        .unwrap();
    let client = Client::from_toml_str(&toml(&fleet, "[deadline]\ntimeout = '0.05s'\n")).unwrap();
    let started = std::time::Instant::now();
    let err = client.get("/").await.expect_err("past the deadline");
    assert_eq!(err.kind(), Kind::DeadlineExceeded);
    assert!(
        started.elapsed() < Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );

    let patient = Client::from_toml_str(&toml(&fleet, "[deadline]\ntimeout = '2s'\n")).unwrap();
    assert_eq!(patient.get("/").await.expect("in time").status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_and_json_build_the_same_client() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy())
        .backend(Behavior::healthy())
        .start()
        .await
        .unwrap();
    let yaml = format!(
        "endpoints: {}\nmetrics: false\nservice_name: yaml\nhedge: {{delay: {{fixed: 50ms}}}}\n",
        endpoints(&fleet)
    );
    let json = format!(
        r#"{{"endpoints": {}, "metrics": false, "limit": {{"algorithm": {{"fixed": {{"max": 4}}}}}}}}"#,
        endpoints(&fleet)
    );
    for client in [
        Client::from_yaml_str(&yaml).unwrap(),
        Client::from_json_str(&json).unwrap(),
    ] {
        for _ in 0..4 {
            assert_eq!(client.get("/").await.expect("answered").status(), 200);
        }
    }
    assert_eq!(fleet.totals().responses_2xx, 8);
    let json_client = Client::from_json_str(&json).unwrap();
    assert_eq!(json_client.limit().limit(), 4);
}

#[test]
fn a_bad_file_builds_no_client_and_says_where() {
    let err = Client::from_toml_str("endpoints = ['127.0.0.1:1']\n[retry.backoff]\nbase = '0s'\n")
        .expect_err("refused");
    assert_eq!(err.path(), "retry.backoff.base");
    let err = Client::from_toml_str("endpoints = ['localhost:80']").expect_err("refused");
    assert_eq!(err.setting(), "endpoints");
}
