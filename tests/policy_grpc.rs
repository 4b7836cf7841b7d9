//! A gRPC service config imported into meshless's settings: what maps to what, and what is
//! refused rather than run differently from what the file asks.
#![cfg(feature = "serde")]

use meshless::backoff::BackoffKind;
use meshless::classify::{Code, Retryable};
use meshless::hedge::HedgeDelay;
use meshless::policy::{ClientConfig, GrpcMethodName, GrpcServiceConfig};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

/// The shape of a service config as published with a real service: a default entry, a
/// service-wide retry policy, one hedged method, throttling, and a load-balancing policy.
const SERVICE_CONFIG: &str = r#"{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [
    {
      "name": [{}],
      "timeout": "10s"
    },
    {
      "name": [
        {"service": "google.pubsub.v1.Subscriber"},
        {"service": "google.pubsub.v1.Publisher", "method": "GetTopic"}
      ],
      "timeout": "60s",
      "retryPolicy": {
        "maxAttempts": 5,
        "initialBackoff": "0.100s",
        "maxBackoff": "60s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE", "deadline_exceeded", 8],
        "perAttemptRecvTimeout": "5s"
      }
    },
    {
      "name": [{"service": "google.pubsub.v1.Subscriber", "method": "Pull"}],
      "timeout": "0.5s",
      "hedgingPolicy": {
        "maxAttempts": 7,
        "hedgingDelay": "0.05s",
        "nonFatalStatusCodes": ["UNAVAILABLE"]
      }
    }
  ],
  "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}
}"#;

fn import() -> GrpcServiceConfig {
    GrpcServiceConfig::from_json_str(SERVICE_CONFIG).expect("imports")
}

#[test]
fn a_service_config_maps_onto_meshless_settings() {
    let grpc = import();
    assert_eq!(grpc.methods.len(), 3);

    let retried = &grpc.methods[1];
    assert_eq!(
        retried.names[1],
        GrpcMethodName {
            service: Some("google.pubsub.v1.Publisher".into()),
            method: Some("GetTopic".into()),
        }
    );
    assert_eq!(retried.timeout, Some(Duration::from_secs(60)));
    assert_eq!(retried.attempt_timeout, Some(Duration::from_secs(5)));
    let retry = retried.retry.as_ref().expect("a retry policy");
    assert_eq!(
        retry.max_retries, 4,
        "maxAttempts 5 = 1 attempt + 4 retries"
    );
    assert_eq!(retry.backoff.kind, BackoffKind::FullJitter);
    assert_eq!(retry.backoff.base, 100 * MS);
    assert_eq!(retry.backoff.cap, Duration::from_secs(60));
    assert_eq!(
        retried.retryable_codes,
        [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted
        ],
        "names in any case and numbers"
    );
    assert!(retried.hedge.is_none());

    // The classifier retries exactly the listed codes (if the call is idempotent).
    let rules = retried.classifier();
    for code in [
        Code::Unavailable,
        Code::DeadlineExceeded,
        Code::ResourceExhausted,
    ] {
        assert_eq!(
            rules.classify_code(code).retryable(),
            Retryable::IfIdempotent,
            "{code:?}"
        );
    }
    assert_eq!(
        rules.classify_code(Code::Internal).retryable(),
        Retryable::Never
    );
    let hedged_rules = grpc.methods[2].classifier();
    assert_eq!(
        hedged_rules
            .classify_code(Code::DeadlineExceeded)
            .retryable(),
        Retryable::Never
    );

    let hedged = &grpc.methods[2];
    let hedge = hedged.hedge.as_ref().expect("a hedging policy");
    assert_eq!(
        hedge.max_hedges, 4,
        "maxAttempts 7 is read as gRPC's cap of 5"
    );
    assert_eq!(hedge.delay, HedgeDelay::Fixed(50 * MS));
    assert_eq!(hedged.timeout, Some(500 * MS));

    let budget = grpc.budget.as_ref().expect("retryThrottling");
    assert_eq!(
        budget.ratio, 0.0909,
        "0.1 / 1.1: a failure costs 1, a success earns 0.1"
    );
    assert_eq!(budget.min_per_second, 0.5, "10 / 2 tokens spare per 10 s");
    budget.validate().expect("a valid budget");
}

#[test]
fn methods_match_as_grpc_matches_them() {
    let grpc = import();
    let timeout = |service, method| grpc.policy_for(service, method).and_then(|p| p.timeout);
    assert_eq!(
        timeout("google.pubsub.v1.Subscriber", "Pull"),
        Some(500 * MS)
    );
    assert_eq!(
        timeout("google.pubsub.v1.Subscriber", "Ack"),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        timeout("google.pubsub.v1.Publisher", "GetTopic"),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        timeout("google.pubsub.v1.Publisher", "Publish"),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        timeout("other.Service", "Any"),
        Some(Duration::from_secs(10))
    );
}

#[test]
fn applying_a_method_policy_sets_the_client_config() {
    let grpc = import();
    let mut retried = ClientConfig::default();
    retried.endpoints = vec!["127.0.0.1:1".into()];
    grpc.apply("google.pubsub.v1.Subscriber", "Ack", &mut retried)
        .expect("matches");
    assert_eq!(retried.deadline.timeout, Duration::from_secs(60));
    assert_eq!(
        retried.attempt_timeout.timeout,
        Some(Duration::from_secs(5))
    );
    assert_eq!(retried.retry.max_retries, 4);
    assert_eq!(retried.budget.ratio, 0.0909);
    assert!(retried.hedge.is_none());
    retried.validate().expect("valid");

    let mut hedged = ClientConfig::default();
    hedged.endpoints = vec!["127.0.0.1:1".into()];
    grpc.apply("google.pubsub.v1.Subscriber", "Pull", &mut hedged)
        .expect("matches");
    assert_eq!(
        hedged.retry.max_retries, 0,
        "a hedged method is not retried too"
    );
    assert_eq!(hedged.hedge.as_ref().map(|h| h.max_hedges), Some(4));
    hedged.validate().expect("valid");
    meshless::http::ClientBuilder::from_config(&hedged).expect("builds");
}

#[test]
fn what_meshless_cannot_do_as_written_is_refused() {
    let method = |body: &str| format!(r#"{{"methodConfig": [{{"name": [{{}}], {body}}}]}}"#);
    let retry = |fields: &str| {
        method(&format!(
            r#""retryPolicy": {{"maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s", {fields}}}"#
        ))
    };
    for (text, path) in [
        (
            retry(r#""backoffMultiplier": 1.5, "retryableStatusCodes": ["UNAVAILABLE"]"#),
            "methodConfig[0].retryPolicy.backoffMultiplier",
        ),
        (
            retry(r#""backoffMultiplier": 2, "retryableStatusCodes": []"#),
            "methodConfig[0].retryPolicy.retryableStatusCodes",
        ),
        (
            retry(
                r#""backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", "SOMETIMES"]"#,
            ),
            "methodConfig[0].retryPolicy.retryableStatusCodes[1]",
        ),
        (
            retry(r#""backoffMultiplier": 2, "retryableStatusCodes": [17]"#),
            "methodConfig[0].retryPolicy.retryableStatusCodes[0]",
        ),
        (
            method(
                r#""retryPolicy": {"maxAttempts": 1, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": [14]}"#,
            ),
            "methodConfig[0].retryPolicy.maxAttempts",
        ),
        (
            method(
                r#""retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "0.1s", "backoffMultiplier": 2, "retryableStatusCodes": [14]}"#,
            ),
            "methodConfig[0].retryPolicy.maxBackoff",
        ),
        (
            method(
                r#""retryPolicy": {"maxAttempts": 2, "initialBackoff": "-1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": [14]}"#,
            ),
            "methodConfig[0].retryPolicy.initialBackoff",
        ),
        (
            method(
                r#""retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": [14]}, "hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "1s"}"#,
            ),
            "methodConfig[0].hedgingPolicy",
        ),
        (
            method(r#""hedgingPolicy": {"maxAttempts": 3}"#),
            "methodConfig[0].hedgingPolicy.hedgingDelay",
        ),
        (
            method(r#""waitForReady": true"#),
            "methodConfig[0].waitForReady",
        ),
        (
            method(r#""maxRequestMessageBytes": 1024"#),
            "methodConfig[0].maxRequestMessageBytes",
        ),
        (method(r#""timeout": "soon""#), "methodConfig[0].timeout"),
        (
            r#"{"methodConfig": [{"name": [{"method": "Get"}]}]}"#.to_string(),
            "methodConfig[0].name[0].service",
        ),
        (
            r#"{"healthCheckConfig": {"serviceName": ""}}"#.to_string(),
            "healthCheckConfig",
        ),
        (
            r#"{"retryThrottling": {"maxTokens": 5000, "tokenRatio": 0.1}}"#.to_string(),
            "retryThrottling.maxTokens",
        ),
        (
            r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0}}"#.to_string(),
            "retryThrottling.tokenRatio",
        ),
    ] {
        let err = GrpcServiceConfig::from_json_str(&text).expect_err(&text);
        assert_eq!(err.path(), path, "{text}: {err}");
        assert!(
            err.to_string().starts_with(&format!("invalid {path}: ")),
            "{err}"
        );
    }
    // waitForReady: false is gRPC's default behaviour, and meshless's.
    GrpcServiceConfig::from_json_str(&method(r#""waitForReady": false"#)).expect("accepted");
}
