//! The tonic channel honours the caller's `grpc-timeout` (on by default): a caller's own
//! deadline. tonic's endpoint channel enforces the same `grpc-timeout` with a timer of its own
//! (`GrpcTimeout`), due at the same instant: when it fires first, the attempt ends in an
//! endpoint error (`TimeoutExpired`) that the balancer and the breaker classify as the
//! endpoint's failure, not as the caller's deadline.

use crate::support::*;
use meshless::tonic::Channel;
use tower::ServiceExt;

fn call(timeout_header: &str) -> http::Request<tonic::body::Body> {
    http::Request::post("http://svc.example/hold.S/Hold")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout_header)
        .body(tonic::body::Body::empty())
        .unwrap()
}

#[tokio::test]
async fn callers_grpc_timeout_charges_no_endpoint_over_tonic() {
    let (addr, _rx) = h2_server().await;
    let mut b = meshless::breaker::BreakerConfig::default();
    b.consecutive_failures = 5;
    let channel = Channel::builder()
        .endpoint(tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap())
        .deadline(Duration::from_secs(10))
        .max_retries(0)
        .breaker(b)
        .metrics(false)
        .build()
        .unwrap();
    let mut codes = Vec::new();
    for _ in 0..20 {
        let r = timeout(BOUND, channel.clone().oneshot(call("40m")))
            .await
            .expect("ended by the caller's grpc-timeout");
        let status = r.expect_err("never answered");
        codes.push((status.code(), status.message().to_string()));
    }
    let until = tokio::time::Instant::now() + BOUND;
    while channel.endpoints().iter().any(|e| e.in_flight > 0) && tokio::time::Instant::now() < until
    {
        tokio::time::sleep(ms(5)).await;
    }
    let eps = channel.endpoints();
    let failures: u64 = eps.iter().map(|e| e.failures).sum();
    let cancelled: u64 = eps.iter().map(|e| e.cancelled).sum();
    let br = channel.breaker().stats();
    eprintln!("codes {codes:?}\nendpoints {eps:#?}\nbreaker {br:?}");
    assert!(
        codes
            .iter()
            .all(|(c, _)| *c == tonic::Code::DeadlineExceeded),
        "{codes:?}"
    );
    assert_eq!(
        (failures, cancelled, br.failures, br.trips),
        (0, 20, 0, 0),
        "the caller's own grpc-timeout was charged to the endpoint / breaker \
         (endpoint failures, cancelled, breaker failures, trips): {eps:#?} {br:?}"
    );
}

/// The https refusal: `https`/`HTTPS` request URIs to an `http` endpoint are refused as
/// INTERNAL, charged to no endpoint and never retried; relative and `http` URIs still go.
#[tokio::test]
async fn https_refusal_and_what_still_goes() {
    let (addr, _rx) = h2_server().await;
    let channel = Channel::builder()
        .endpoint(tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap())
        .deadline(Duration::from_secs(2))
        .idempotent_method("/ok.S/M")
        .metrics(false)
        .build()
        .unwrap();
    let req = |uri: http::Uri| {
        http::Request::post(uri)
            .header("content-type", "application/grpc")
            .body(tonic::body::Body::empty())
            .unwrap()
    };
    for uri in ["/ok.S/M", "http://svc.example/ok.S/M"] {
        let r = timeout(BOUND, channel.clone().oneshot(req(uri.parse().unwrap())))
            .await
            .unwrap();
        assert!(r.is_ok(), "{uri}: {r:?}");
    }
    let upper = http::Uri::builder()
        .scheme("HTTPS")
        .authority("svc.example")
        .path_and_query("/ok.S/M")
        .build()
        .unwrap();
    for uri in ["https://svc.example/ok.S/M".parse().unwrap(), upper] {
        let s = timeout(BOUND, channel.clone().oneshot(req(uri.clone())))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(s.code(), tonic::Code::Internal, "{uri}: {s:?}");
    }
    let eps = channel.endpoints();
    let f: u64 = eps.iter().map(|e| e.failures).sum();
    assert_eq!(f, 0, "{eps:#?}");
    assert_eq!(channel.retry_stats().retries(), 0);
}
