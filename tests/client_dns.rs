//! `meshless::http::Client` following a DNS name, against real local backends.

use meshless::testing::{Behavior, Fleet};
use std::time::Duration;

#[tokio::test]
async fn a_dns_name_resolves_to_live_endpoints() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy())
        .start()
        .await
        .expect("fleet starts");
    let port = fleet.addrs()[0].port();
    let client = meshless::http::Client::builder()
        .dns(format!("localhost:{port}"))
        .dns_refresh(Duration::from_millis(50))
        .deadline(Duration::from_secs(5))
        .build()
        .expect("valid configuration");
    // The first resolution happens in the background; the balancer waits for it (fail-fast).
    for _ in 0..20 {
        let res = client.get("/").await.expect("answered");
        assert_eq!(res.status(), 200);
    }
    let endpoints = client.endpoints();
    assert!(
        endpoints.iter().any(|e| e.key == fleet.addrs()[0]),
        "{endpoints:?}"
    );
    assert_eq!(fleet.backend(0).counters().requests(), 20);
}

#[test]
fn dns_needs_a_runtime_and_says_so() {
    let err = meshless::http::Client::builder()
        .dns("localhost:80")
        .build()
        .expect_err("no runtime here");
    assert_eq!(err.setting(), "dns");
}
