//! `meshless::http::Client` speaking HTTP/2 with prior knowledge, as gRPC clients do.

use meshless::testing::{Behavior, Fleet};

#[tokio::test]
async fn http2_prior_knowledge_is_spoken_end_to_end() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy())
        .backend(Behavior::healthy())
        .start()
        .await
        .expect("fleet starts");
    let client = meshless::http::Client::builder()
        .endpoints(fleet.addrs().iter().map(|a| a.to_string()))
        .http2_prior_knowledge(true)
        .build()
        .expect("valid configuration");
    for _ in 0..50 {
        let res = client.get("/").await.expect("answered");
        assert_eq!(res.status(), 200);
        assert_eq!(res.version(), http::Version::HTTP_2);
    }
    // Multiplexed: a handful of connections at most, not one per request.
    let connections: u64 = fleet
        .backends()
        .iter()
        .map(|b| b.counters().connections())
        .sum();
    assert!(connections <= 4, "{connections} connections");
    assert_eq!(fleet.totals().requests, 50);
}
