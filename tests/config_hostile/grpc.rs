//! The gRPC service config import: hostile values refused at their JSON path, empty names read as
//! gRFC A2 says, names given twice refused, and what is imported is a valid client config.

use super::*;

fn grpc(text: &str) -> Result<GrpcServiceConfig, meshless::ConfigError> {
    catch_unwind(|| GrpcServiceConfig::from_json_str(text))
        .unwrap_or_else(|_| panic!("PANIC on {text}"))
}

#[test]
fn grpc_hostile_values() {
    let retry = |fields: &str| {
        format!(
            r#"{{"methodConfig": [{{"name": [{{"service": "a.S"}}], "retryPolicy": {{{fields}}}}}]}}"#
        )
    };
    let rp = |attempts: &str, init: &str, max: &str, codes: &str| {
        retry(&format!(
            r#""maxAttempts": {attempts}, "initialBackoff": {init}, "maxBackoff": {max}, "backoffMultiplier": 2, "retryableStatusCodes": {codes}"#
        ))
    };
    let ok_codes = r#"["UNAVAILABLE"]"#;
    let cases: Vec<(String, &str)> = vec![
        (rp("0", "\"0.1s\"", "\"1s\"", ok_codes), "methodConfig[0].retryPolicy.maxAttempts"),
        (rp("4294967296", "\"0.1s\"", "\"1s\"", ok_codes), "methodConfig[0].retryPolicy.maxAttempts"),
        (rp("3", "\"1e9s\"", "\"1e9s\"", ok_codes), "methodConfig[0].retryPolicy.initialBackoff"),
        (rp("3", "\"+\"", "\"1s\"", ok_codes), "methodConfig[0].retryPolicy.initialBackoff"),
        (rp("3", "0.1", "\"1s\"", ok_codes), "methodConfig[0].retryPolicy.initialBackoff"),
        (rp("3", "\"0.1s\"", "\"1s\"", r#"["UNAVAILABLE", "OK"]"#), "?"),
        (rp("3", "\"0.1s\"", "\"1s\"", r#"[0]"#), "?"),
        (rp("3", "\"0.1s\"", "\"1s\"", r#"[4294967310]"#), "methodConfig[0].retryPolicy.retryableStatusCodes[0]"),
        (rp("3", "\"0.1s\"", "\"1s\"", r#"[14.0]"#), "methodConfig[0].retryPolicy.retryableStatusCodes[0]"),
        (rp("3", "\"0.1s\"", "\"1s\"", r#"[""]"#), "methodConfig[0].retryPolicy.retryableStatusCodes[0]"),
        (rp("3", "\"0.1s\"", "\"1s\"", r#"["GRPC_UNAVAILABLE"]"#), "methodConfig[0].retryPolicy.retryableStatusCodes[0]"),
        (rp("3", "\"0.1s\"", "\"1s\"", r#"[null]"#), "methodConfig[0].retryPolicy.retryableStatusCodes[0]"),
        (retry(r#""maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"], "perAttemptRecvTimeout": "0s""#), "methodConfig[0].retryPolicy.perAttemptRecvTimeout"),
        (retry(r#""maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"], "bogus": 1"#), "methodConfig[0].retryPolicy.bogus"),
        (retry(r#""maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2"#), "methodConfig[0].retryPolicy*"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}], "hedgingPolicy": {"maxAttempts": 3}}]}"#.into(), "methodConfig[0].hedgingPolicy.hedgingDelay"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}], "hedgingPolicy": {"maxAttempts": 1, "hedgingDelay": "1s"}}]}"#.into(), "methodConfig[0].hedgingPolicy.maxAttempts"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}], "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "1s", "nonFatalStatusCodes": ["NOPE"]}}]}"#.into(), "methodConfig[0].hedgingPolicy.nonFatalStatusCodes[0]"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}], "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "1s"}, "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#.into(), "methodConfig[0].hedgingPolicy"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}]}, {"name": [{"service": "a.S"}]}]}"#.into(), "methodConfig[1].name[0]*"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S", "method": "M"}, {"service": "a.S", "method": "M"}]}]}"#.into(), "methodConfig[0].name[1]*"),
        (r#"{"methodConfig": [{"name": [{}]}, {"name": [{}]}]}"#.into(), "methodConfig[1].name[0]*"),
        (r#"{"methodConfig": [{"name": [{"service": "", "method": "M"}]}]}"#.into(), "methodConfig[0].name[0].service"),
        (r#"{"methodConfig": [{"name": [{"service": "a b"}], "timeout": "1s"}]}"#.into(), "methodConfig[0].name[0].service"),
        (r#"{"methodConfig": [{"name": [{"service": "a/b"}], "timeout": "1s"}]}"#.into(), "methodConfig[0].name[0].service"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S", "method": "M/N"}], "timeout": "1s"}]}"#.into(), "methodConfig[0].name[0].method"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S", "method": "M", "x": 1}]}]}"#.into(), "methodConfig[0].name[0].x"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}], "timeout": "1e400s"}]}"#.into(), "methodConfig[0].timeout"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}], "timeout": 1}]}"#.into(), "methodConfig[0].timeout"),
        (r#"{"methodConfig": [{"name": [{"service": "a.S"}], "waitForReady": true}]}"#.into(), "methodConfig[0].waitForReady"),
        (r#"{"methodConfig": {}}"#.into(), "methodConfig"),
        (r#"{"retryThrottling": {"maxTokens": -1, "tokenRatio": 0.1}}"#.into(), "retryThrottling.maxTokens"),
        (r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 1e309}}"#.into(), "retryThrottling.tokenRatio"),
        (r#"{"retryThrottling": {"maxTokens": 10}}"#.into(), "retryThrottling*"),
        (r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1, "x": 1}}"#.into(), "retryThrottling.x"),
        (r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.00001}}"#.into(), "retryThrottling.tokenRatio"),
        (r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}, "retryThrottling": {"maxTokens": 1, "tokenRatio": 0.1}}"#.into(), "*"),
    ];
    let mut wrong = Vec::new();
    for (text, want) in cases {
        match grpc(&text) {
            r if want == "?" => eprintln!(
                "INFO {text} -> {:?}",
                r.map(|g| g
                    .methods
                    .iter()
                    .map(|m| m.retryable_codes.clone())
                    .collect::<Vec<_>>())
            ),
            Ok(parsed) => wrong.push(format!(
                "ACCEPTED {text} (want {want}): budget={:?} policies={:?}",
                parsed.budget.map(|b| b.ratio),
                parsed
                    .methods
                    .iter()
                    .map(|m| (&m.names, m.retry.as_ref().map(|r| r.max_retries)))
                    .collect::<Vec<_>>()
            )),
            Err(e) => {
                let path = e.path();
                let ok = match want.strip_suffix('*') {
                    Some(p) => path.starts_with(p),
                    None => path == want,
                };
                if !ok {
                    wrong.push(format!(
                        "WRONG PATH {text}: got {path:?} ({e}), want {want}"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} case(s):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// What the importer accepts must make a valid client config, through both ways of using it
/// (`apply` to a client config, `routes()` on a client): otherwise the error comes later under
/// meshless's names instead of at the service config's field.
#[test]
fn what_grpc_import_accepts_is_a_valid_client_config() {
    let texts = [
        r#"{"methodConfig": [{"name": [{"service": "a.S"}], "retryPolicy": {"maxAttempts": 1000, "initialBackoff": "1ns", "maxBackoff": "18446744073709551615s", "backoffMultiplier": 2, "retryableStatusCodes": [14]}}]}"#,
        r#"{"methodConfig": [{"name": [{"service": "a.S"}], "hedgingPolicy": {"maxAttempts": 1000, "hedgingDelay": "18446744073709551615s"}}]}"#,
        r#"{"methodConfig": [{"name": [{"service": "a.S"}], "timeout": "18446744073709551615.999999999s"}]}"#,
        r#"{"retryThrottling": {"maxTokens": 1000, "tokenRatio": 1e300}}"#,
        r#"{"retryThrottling": {"maxTokens": 0.000001, "tokenRatio": 0.001}}"#,
        r#"{"methodConfig": [{"name": [{"service": ""}], "timeout": "1s"}]}"#,
        r#"{"methodConfig": [{"name": [{"service": "a b"}], "timeout": "1s"}]}"#,
        r#"{"methodConfig": [{"name": [{"service": "a.S", "method": "M?x"}], "timeout": "1s"}]}"#,
        r#"{"methodConfig": [{"name": [{"service": "a.S", "method": ""}], "timeout": "1s"}]}"#,
        r#"{"methodConfig": [{"name": [], "timeout": "1s"}]}"#,
        r#"{"methodConfig": [{"timeout": "1s"}]}"#,
    ];
    let mut wrong = Vec::new();
    for text in texts {
        let Ok(imported) = grpc(text) else { continue };
        let mut config = cfg(EP).unwrap();
        if catch_unwind(AssertUnwindSafe(|| imported.apply("a.S", "M", &mut config))).is_err() {
            wrong.push(format!("PANIC apply {text}"));
            continue;
        }
        if let Err(e) = config.validate() {
            wrong.push(format!(
                "imported {text}\n   but apply() gives an invalid config: {} ({e})",
                e.path()
            ));
        }
        let mut config = cfg(EP).unwrap();
        config.routes = imported.routes();
        if let Err(e) = config.validate() {
            wrong.push(format!(
                "imported {text}\n   but routes() give an invalid config: {} ({e})",
                e.path()
            ));
        }
        if let Ok(c) = ClientBuilder::from_config(&config) {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let _g = rt.enter();
            if catch_unwind(AssertUnwindSafe(|| c.build())).is_err() {
                wrong.push(format!("PANIC build {text}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// gRFC A2: a name with an empty service (or none) is the default entry; `{"service": ""}`
/// must apply to every call that no other entry names (as grpc-go and grpc-core read it).
#[test]
fn grpc_empty_service_string_is_the_default_entry() {
    let g = grpc(r#"{"methodConfig": [{"name": [{"service": ""}], "timeout": "3s"}]}"#)
        .expect("imports");
    let policy = g.policy_for("any.Service", "Any");
    assert!(
        policy.is_some(),
        "{{\"service\": \"\"}} imported but matches no call: {:?}",
        g.methods[0].names
    );
}

/// gRFC A6 refuses tokenRatio 0 and so does the importer; a small positive tokenRatio, which
/// meshless's four decimal places would make 0, is refused at its field rather than becoming
/// the refused value silently.
#[test]
fn a_token_ratio_too_small_to_keep_is_refused_at_its_field() {
    let err = grpc(r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.00004}}"#)
        .expect_err("a ratio that rounds to nothing");
    assert_eq!(err.path(), "retryThrottling.tokenRatio", "{err}");
    let g = grpc(r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.0001}}"#)
        .expect("the smallest ratio kept");
    assert!(g.budget.expect("a budget").ratio > 0.0);
}
