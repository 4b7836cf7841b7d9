//! Odd values in configuration files (TOML, YAML, JSON) through the whole path a user takes
//! (`meshless::http::Client::from_*_str`: parse, check, build), and in gRPC service configs.
//! Each must give a `ConfigError` whose path names the field, and never panic nor silently
//! fall back.

#![cfg(feature = "serde")]

use meshless::http::Client;
use meshless::policy::GrpcServiceConfig;
use std::panic::{AssertUnwindSafe, catch_unwind};

const EP: &str = "endpoints = [\"127.0.0.1:8080\"]\n";

#[derive(Clone, Copy)]
enum F {
    Toml,
    Yaml,
    Json,
}

fn build(format: F, text: &str) -> Result<Client, meshless::ConfigError> {
    match format {
        F::Toml => Client::from_toml_str(text),
        F::Yaml => Client::from_yaml_str(text),
        F::Json => Client::from_json_str(text),
    }
}

/// (format, text, the path the error must name, or a prefix of it ending with '*').
fn cases() -> Vec<(F, String, &'static str)> {
    let t = |body: &str| format!("{EP}{body}");
    let mut v: Vec<(F, String, &'static str)> = vec![
        // endpoints
        (F::Toml, "endpoints = [\"not-an-addr\"]".into(), "endpoints*"),
        (F::Toml, "endpoints = [\"\"]".into(), "endpoints*"),
        (F::Toml, "endpoints = [\"127.0.0.1:99999\"]".into(), "endpoints*"),
        (F::Toml, "endpoints = []".into(), "endpoints*"),
        (F::Toml, "endpoints = \"127.0.0.1:80\"".into(), "endpoints*"),
        (F::Toml, "dns = \"\"".into(), "dns*"),
        (F::Toml, t("connect_timeout = \"0s\""), "connect_timeout"),
        (F::Toml, t("connect_timeout = \"-1s\""), "connect_timeout"),
        // durations
        (F::Toml, t("[deadline]\ntimeout = \"NaNs\""), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = \"inf\""), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = nan"), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = 5"), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = -5"), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = 2.5"), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = \"\""), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = \"   \""), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = \"1d\""), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = \"0s\""), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = \"0.0000000001s\""), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = \"1..5s\""), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = \".s\""), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = \"1 s\""), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = \"1e3ms\""), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = \"+-1s\""), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = \"1S\""), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = \"99999999999999999999999h\""), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = \"999999999999999999999999999999999999999999h\""), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = true"), "deadline.timeout"),
        (F::Toml, t("[deadline]\ntimeout = []"), "deadline.timeout"),
        (F::Toml, t("[deadline]\nheader = \"\""), "deadline.header"),
        (F::Toml, t("[deadline]\nheader = \"bad header\""), "deadline.header"),
        (F::Toml, t("[deadline]\nbody_idle_timeout = \"0s\""), "deadline.body_idle_timeout"),
        (F::Toml, t("[deadline]\nbody_idle_timeout = true"), "deadline.body_idle_timeout"),
        (
            F::Toml,
            t("[deadline]\nstreaming_content_types = [\"text/plain\", \"text/event-stream; charset=utf-8\"]"),
            "deadline.streaming_content_types[1]",
        ),
        (F::Toml, t("[deadline]\nstreaming_content_types = [\"\"]"), "deadline.streaming_content_types[0]"),
        (F::Toml, t("[attempt_timeout]\ntimeout = \"0ms\""), "attempt_timeout.timeout"),
        (F::Toml, t("[attempt_timeout]\ndeadline_header = \"a b\""), "attempt_timeout.deadline_header"),
        (F::Toml, t("[attempt_timeout]\ndeadline_header = \"\""), "attempt_timeout.deadline_header"),
        // budget
        (F::Toml, t("[budget]\nratio = nan"), "budget.ratio"),
        (F::Toml, t("[budget]\nratio = inf"), "budget.ratio"),
        (F::Toml, t("[budget]\nratio = 101"), "budget.ratio"),
        (F::Toml, t("[budget]\nratio = -0.1"), "budget.ratio"),
        (F::Toml, t("[budget]\nratio = \"0.2\""), "budget.ratio"),
        (F::Toml, t("[budget]\nmin_per_second = inf"), "budget.min_per_second"),
        (F::Toml, t("[budget]\nmin_per_second = -1"), "budget.min_per_second"),
        (F::Toml, t("[budget]\nmin_per_second = 1e300"), "budget.min_per_second"),
        (F::Toml, t("[budget]\nttl = \"99ms\""), "budget.ttl"),
        // retry
        (F::Toml, t("[retry]\nmax_retries = -1"), "retry.max_retries"),
        (F::Toml, t("[retry]\nmax_retries = 4294967296"), "retry.max_retries"),
        (F::Toml, t("[retry]\nmax_retries = \"2\""), "retry.max_retries"),
        (F::Toml, t("[retry]\nmax_retries = 1.5"), "retry.max_retries"),
        (F::Toml, t("[retry]\nbackoff = { kind = \"exponential\" }"), "retry.backoff.kind"),
        (F::Toml, t("[retry]\nbackoff = { base = \"0s\" }"), "retry.backoff.base"),
        (F::Toml, t("[retry]\nbackoff = { base = \"1s\", cap = \"10ms\" }"), "retry.backoff.cap"),
        (F::Toml, t("[retry]\nreplay_cap = -1"), "retry.replay_cap"),
        (F::Toml, t("[retry]\nmax_pushback = \"-1s\""), "retry.max_pushback"),
        // balance and outlier
        (F::Toml, t("[balance]\nmiss_weight = 1.5"), "balance.miss_weight"),
        (F::Toml, t("[balance]\nmiss_weight = nan"), "balance.miss_weight"),
        (F::Toml, t("[balance]\ndefault_rtt = \"0s\""), "balance.default_rtt"),
        (F::Toml, t("[balance]\ndecay = \"0s\""), "balance.decay"),
        (F::Toml, t("[balance.outlier]\nconsecutive_failures = 0"), "balance.outlier.consecutive_failures"),
        (F::Toml, t("[balance.outlier]\nconsecutive_failures = -3"), "balance.outlier.consecutive_failures"),
        (F::Toml, t("[balance.outlier]\nejection_jitter = 1.5"), "balance.outlier.ejection_jitter"),
        (F::Toml, t("[balance.outlier]\nmax_ejected_share = 150"), "balance.outlier.max_ejected_share"),
        (F::Toml, t("[balance.outlier]\nmax_ejected_share = nan"), "balance.outlier.max_ejected_share"),
        (F::Toml, t("[balance.outlier]\npanic_threshold = -1"), "balance.outlier.panic_threshold"),
        (F::Toml, t("[balance.outlier]\nslow_start_floor = 2"), "balance.outlier.slow_start_floor"),
        (F::Toml, t("[balance.outlier]\ninterval = \"0s\""), "balance.outlier.interval"),
        (F::Toml, t("[balance.outlier]\nbase_ejection_time = \"0s\""), "balance.outlier.base_ejection_time"),
        (F::Toml, t("[balance.outlier]\nprobe_timeout = \"0s\""), "balance.outlier.probe_timeout"),
        (F::Toml, t("[balance.outlier]\nfailure_percentage = { threshold = 150 }"), "balance.outlier.failure_percentage.threshold"),
        (F::Toml, t("[balance.outlier]\nfailure_percentage = { threshold = 0 }"), "balance.outlier.failure_percentage.threshold"),
        (F::Toml, t("[balance.outlier]\nfailure_percentage = { minimum_hosts = 0 }"), "balance.outlier.failure_percentage.minimum_hosts"),
        (F::Toml, t("[balance.outlier]\nsuccess_rate = { stdev_factor = nan }"), "balance.outlier.success_rate.stdev_factor"),
        (F::Toml, t("[balance.outlier]\nsuccess_rate = { stdev_factor = -1 }"), "balance.outlier.success_rate.stdev_factor"),
        (F::Toml, t("[balance.outlier]\nsuccess_rate = \"on\""), "balance.outlier.success_rate"),
        (F::Toml, t("[balance.outlier]\nsuccess_rate = true"), "balance.outlier.success_rate"),
        (F::Toml, t("[balance.outlier]\nlatency = { factor = 0.5 }"), "balance.outlier.latency.factor"),
        (F::Toml, t("[balance.outlier]\nlatency = { factor = nan }"), "balance.outlier.latency.factor"),
        (F::Toml, t("[balance.outlier]\nfoo = 1"), "balance.outlier.foo"),
        // breaker
        (F::Toml, t("[breaker]\nfailure_rate_threshold = 0"), "breaker.failure_rate_threshold"),
        (F::Toml, t("[breaker]\nfailure_rate_threshold = 1.5"), "breaker.failure_rate_threshold"),
        (F::Toml, t("[breaker]\nfailure_rate_threshold = 50"), "breaker.failure_rate_threshold"),
        (F::Toml, t("[breaker]\nfailure_rate_threshold = nan"), "breaker.failure_rate_threshold"),
        (F::Toml, t("[breaker]\nhalf_open_probes = 0"), "breaker.half_open_probes"),
        (F::Toml, t("[breaker]\nhalf_open_probes = 64"), "breaker.half_open_probes"),
        (F::Toml, t("[breaker]\nbreak_jitter = 2"), "breaker.break_jitter"),
        (F::Toml, t("[breaker]\nmax_break_duration = \"1ms\""), "breaker.max_break_duration"),
        (F::Toml, t("[breaker]\nwindow = \"1ms\""), "breaker.window"),
        (F::Toml, t("[breaker]\nminimum_calls = 0"), "breaker.minimum_calls"),
        (F::Toml, t("[breaker]\nslow_call_duration = \"0s\""), "breaker.slow_call_duration"),
        (F::Toml, t("[breaker]\nslow_call_rate_threshold = 0"), "breaker.slow_call_rate_threshold"),
        (F::Toml, t("[breaker]\nramp_start_share = 0"), "breaker.ramp_start_share"),
        (F::Toml, t("[breaker]\nprobe_timeout = \"0s\""), "breaker.probe_timeout"),
        // limit
        (F::Toml, t("[limit]\nalgorithm = { fixed = { max = 0 } }"), "limit.algorithm.fixed.max"),
        (F::Toml, t("[limit]\nalgorithm = \"fixed\""), "limit.algorithm*"),
        (F::Toml, t("[limit]\nalgorithm = { gradient = { min = 50, initial = 20 } }"), "limit.algorithm.gradient*"),
        (F::Toml, t("[limit]\nalgorithm = { gradient = { smoothing = 0 } }"), "limit.algorithm.gradient.smoothing"),
        (F::Toml, t("[limit]\nalgorithm = { gradient = { tolerance = 0.5 } }"), "limit.algorithm.gradient.tolerance"),
        (F::Toml, t("[limit]\nalgorithm = { gradient = { window = \"0s\" } }"), "limit.algorithm.gradient.window"),
        (F::Toml, t("[limit]\nalgorithm = { aimd = { backoff = 1.0 } }"), "limit.algorithm.aimd.backoff"),
        (F::Toml, t("[limit]\nalgorithm = { aimd = { timeout = \"0s\" } }"), "limit.algorithm.aimd.timeout"),
                (F::Toml, t("[limit]\nalgorithm = { bogus = {} }"), "limit.algorithm*"),
        (F::Toml, t("[limit]\nalgorithm = 5"), "limit.algorithm*"),
        // throttle
        (F::Toml, t("[throttle]\nk = 0.5"), "throttle.k"),
        (F::Toml, t("[throttle]\nk = nan"), "throttle.k"),
        (F::Toml, t("[throttle]\nwindow = \"25h\""), "throttle.window"),
        (F::Toml, t("[throttle]\nwindow = \"10ms\""), "throttle.window"),
        (F::Toml, t("[throttle]\nmax_probability = 1.5"), "throttle.max_probability"),
        (F::Toml, t("[throttle]\nmax_probability = 80"), "throttle.max_probability"),
        // hedge
        (F::Toml, t("[hedge]\nmax_hedges = 5"), "hedge.max_hedges"),
        (F::Toml, t("[hedge]\nmax_extra_load = 0"), "hedge.max_extra_load"),
        (F::Toml, t("[hedge]\nmax_extra_load = 5"), "hedge.max_extra_load"),
        (F::Toml, t("[hedge]\nmax_extra_load = nan"), "hedge.max_extra_load"),
        (F::Toml, t("[hedge]\nmin_per_second = -1"), "hedge.min_per_second"),
        (F::Toml, t("[hedge]\nnon_fatal_statuses = [503, 99]"), "hedge.non_fatal_statuses*"),
        (F::Toml, t("[hedge]\nnon_fatal_statuses = [70000]"), "hedge.non_fatal_statuses*"),
        (F::Toml, t("[hedge]\ndelay = { fixed = \"0s\" }"), "hedge.delay.fixed"),
        (F::Toml, t("[hedge]\ndelay = { percentile = { percentile = 1.0, min_samples = 100, window = \"30s\" } }"), "hedge.delay.percentile.percentile"),
        (F::Toml, t("[hedge]\ndelay = { percentile = { percentile = 95, min_samples = 100, window = \"30s\" } }"), "hedge.delay.percentile.percentile"),
        (F::Toml, t("[hedge]\ndelay = { percentile = { percentile = 0.9, min_samples = 100, window = \"10ms\" } }"), "hedge.delay.percentile.window"),
        (F::Toml, t("[hedge]\ndelay = \"20ms\""), "hedge.delay*"),
        (F::Toml, t("hedge = true"), "hedge*"),
        (F::Toml, t("hedge = \"on\""), "hedge*"),
        (F::Toml, t("hedge = 1"), "hedge*"),
        // routes
        (F::Toml, t("[[routes]]\nmatch = { methods = [\"get\"] }\nmax_retries = 0"), "routes[0].match.methods[0]"),
        (F::Toml, t("[[routes]]\nmatch = { methods = [\"G ET\"] }"), "routes[0].match.methods[0]"),
        (F::Toml, t("[[routes]]\nmatch = { path_prefix = \"v1\" }"), "routes[0].match.path_prefix"),
        (F::Toml, t("[[routes]]\nmatch = { path_prefix = \"\" }"), "routes[0].match.path_prefix"),
        (F::Toml, t("[[routes]]\nmatch = { path_prefix = \"/v1/../admin\" }"), "routes[0].match.path_prefix"),
        (F::Toml, t("[[routes]]\nmatch = { method = \"Search\" }"), "routes[0].match.method"),
        (F::Toml, t("[[routes]]\nmatch = { service = \"\" }"), "routes[0].match.service"),
        (F::Toml, t("[[routes]]\nmatch = { path_prefix = \"/a\" }\ntimeout = \"0s\""), "routes[0].timeout"),
        (F::Toml, t("[[routes]]\nmatch = { path_prefix = \"/a\" }\nattempt_timeout = \"0s\""), "routes[0].attempt_timeout"),
        (F::Toml, t("[[routes]]\nmatch = { path_prefix = \"/a\" }\nmax_retries = -1"), "routes[0].max_retries"),
        (F::Toml, t("[[routes]]\nmatch = { path_prefix = \"/a\" }\nhedge = { max_hedges = 9 }"), "routes[0].hedge.max_hedges"),
        (F::Toml, t("[[routes]]\nmatch = { path_prefix = \"/a\" }\nhedge = { delay = \"0s\" }"), "routes[0].hedge.delay"),
        (F::Toml, t("[[routes]]\nmatch = { path_prefix = \"/a\" }\nhedge = \"yes\""), "routes[0].hedge"),
        (F::Toml, t("[[routes]]\nmatch = { path_prefix = \"/a\" }\nidempotent = \"true\""), "routes[0].idempotent"),
        (F::Toml, t("[[routes]]\nmatch = { path_prefix = \"/a\" }\nbogus = 1"), "routes[0].bogus"),
        // unknown fields
        (F::Toml, t("retries = 3"), "retries"),
        (F::Toml, t("[retry]\nmax_retrys = 3"), "retry.max_retrys"),
        // YAML
        (F::Yaml, "endpoints: ['127.0.0.1:80']\nretry:\n  max_retries: 1e3\n".into(), "retry.max_retries"),
        (F::Yaml, "endpoints: ['127.0.0.1:80']\ndeadline: { timeout: 250 }\n".into(), "deadline.timeout"),
        (F::Yaml, "endpoints: ['127.0.0.1:80']\ndeadline: { timeout: .nan }\n".into(), "deadline.timeout"),
        (F::Yaml, "endpoints: ['127.0.0.1:80']\ndeadline: { timeout: ~ }\n".into(), "deadline.timeout"),
        (F::Yaml, "endpoints: ['127.0.0.1:80']\nmetrics: yes\n".into(), "metrics"),
        (F::Yaml, "endpoints: ['127.0.0.1:80']\nbudget: { ratio: .nan }\n".into(), "budget.ratio"),
        (F::Yaml, "endpoints: ['127.0.0.1:80']\nbudget: { ratio: .inf }\n".into(), "budget.ratio"),
        (F::Yaml, "endpoints: ['127.0.0.1:80']\nlimit: { algorithm: !fixed { max: 0 } }\n".into(), "limit.algorithm.fixed.max"),
        (F::Yaml, "endpoints: ['127.0.0.1:80']\nbreaker: { failure_rate_threshold: 90% }\n".into(), "breaker.failure_rate_threshold"),
        (F::Yaml, "endpoints: ['127.0.0.1:80']\nretry: {max_retries: 1}\nretry: {max_retries: 5}\n".into(), "*"),
        (F::Yaml, "endpoints: ['127.0.0.1:80']\nhedge: { max_hedges: 1, delay: { fixed: .inf } }\n".into(), "hedge.delay.fixed"),
        (F::Yaml, "endpoints: ['127.0.0.1:80']\nroutes:\n  - match: { methods: [post] }\n".into(), "routes[0].match.methods[0]"),
        // JSON
        (F::Json, "{\"endpoints\": [\"127.0.0.1:80\"], \"budget\": {\"ratio\": 1e400}}".into(), "budget.ratio"),
        (F::Json, "{\"endpoints\": [\"127.0.0.1:80\"], \"retry\": {\"max_retries\": 1}, \"retry\": {\"max_retries\": 2}}".into(), "*"),
        (F::Json, "{\"endpoints\": [\"127.0.0.1:80\"], \"deadline\": {\"timeout\": null}}".into(), "deadline.timeout"),
        (F::Json, "{\"endpoints\": [\"127.0.0.1:80\"], \"hedge\": {\"delay\": null}}".into(), "hedge.delay*"),
        (F::Json, "{\"endpoints\": [\"127.0.0.1:80\"], \"breaker\": {\"half_open_probes\": -1}}".into(), "breaker.half_open_probes"),
        (F::Json, "{\"endpoints\": [\"127.0.0.1:80\"], \"retry\": {\"max_retries\": 2.0}}".into(), "retry.max_retries"),
        (F::Json, "{\"endpoints\": [\"127.0.0.1:80\"]} trailing".into(), "*"),
    ];
    // Wrong shapes at the top and empty documents: an error, no panic (any path).
    v.push((F::Toml, "".into(), "endpoints*"));
    v.push((F::Yaml, "".into(), "*"));
    v.push((F::Json, "".into(), "*"));
    v.push((F::Yaml, "- a\n- b\n".into(), "*"));
    v.push((F::Json, "[]".into(), "*"));
    v.push((F::Json, "null".into(), "*"));
    v
}

fn matches(path: &str, want: &str) -> bool {
    match want.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => path == want,
    }
}

#[tokio::test]
async fn odd_values_give_a_config_error_naming_the_field() {
    let mut wrong = Vec::new();
    for (format, text, want) in cases() {
        let out = catch_unwind(AssertUnwindSafe(|| build(format, &text)));
        match out {
            Err(_) => wrong.push(format!("PANIC on {text:?}")),
            Ok(Ok(_)) => wrong.push(format!("ACCEPTED {text:?} (wanted an error at {want})")),
            Ok(Err(e)) if !matches(&e.path(), want) => wrong.push(format!(
                "WRONG PATH {text:?}: got {:?} ({e}), wanted {want}",
                e.path()
            )),
            Ok(Err(_)) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "{} case(s):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Deeply nested input must be an error, not a stack overflow (which aborts the process).
#[tokio::test]
async fn deep_nesting_is_an_error_not_a_crash() {
    let n = 20_000;
    let toml = format!("{EP}routes = {}{}", "[".repeat(n), "]".repeat(n));
    assert!(Client::from_toml_str(&toml).is_err());
    let json = format!(
        "{{\"endpoints\": [\"127.0.0.1:80\"], \"routes\": {}{}}}",
        "[".repeat(n),
        "]".repeat(n)
    );
    assert!(Client::from_json_str(&json).is_err());
    let yaml = format!(
        "endpoints: ['127.0.0.1:80']\nroutes: {}{}\n",
        "[".repeat(n),
        "]".repeat(n)
    );
    assert!(Client::from_yaml_str(&yaml).is_err());
}

/// A gRPC service config's odd values: errors naming the JSON field, no panic, no silent
/// change of meaning.
#[test]
fn grpc_service_config_odd_values() {
    let retry = |fields: &str| {
        format!(
            r#"{{"methodConfig": [{{"name": [{{"service": "a.S"}}], "retryPolicy": {{{fields}}}}}]}}"#
        )
    };
    let base = r#""maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]"#;
    let cases: Vec<(String, &str)> = vec![
        (retry(&base.replace("\"maxAttempts\": 3", "\"maxAttempts\": 1")), "methodConfig[0].retryPolicy.maxAttempts"),
        (retry(&base.replace("\"maxAttempts\": 3", "\"maxAttempts\": -1")), "methodConfig[0].retryPolicy.maxAttempts"),
        (retry(&base.replace("\"0.1s\"", "\"0s\"")), "methodConfig[0].retryPolicy.initialBackoff"),
        (retry(&base.replace("\"0.1s\"", "\"-0.1s\"")), "methodConfig[0].retryPolicy.initialBackoff"),
        (retry(&base.replace("\"1s\"", "\"1\"")), "methodConfig[0].retryPolicy.maxBackoff"),
        (retry(&base.replace("[\"UNAVAILABLE\"]", "[\"NOPE\"]")), "methodConfig[0].retryPolicy.retryableStatusCodes[0]"),
        (retry(&base.replace("[\"UNAVAILABLE\"]", "[17]")), "methodConfig[0].retryPolicy.retryableStatusCodes[0]"),
        (retry(&base.replace("[\"UNAVAILABLE\"]", "[-1]")), "methodConfig[0].retryPolicy.retryableStatusCodes[0]"),
        (retry(&base.replace("[\"UNAVAILABLE\"]", "[]")), "methodConfig[0].retryPolicy.retryableStatusCodes"),
        (retry(&base.replace("\"backoffMultiplier\": 2", "\"backoffMultiplier\": 2.0000001")), "methodConfig[0].retryPolicy.backoffMultiplier"),
        (
            r#"{"methodConfig": [{"name": [{"service": "a.S"}], "timeout": "-1s"}]}"#.into(),
            "methodConfig[0].timeout",
        ),
        (
            r#"{"methodConfig": [{"name": [{"service": "a.S"}], "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0s"}}]}"#.into(),
            "methodConfig[0].hedgingPolicy.hedgingDelay",
        ),
        (r#"{"retryThrottling": {"maxTokens": 0, "tokenRatio": 0.1}}"#.into(), "retryThrottling.maxTokens"),
        (r#"{"retryThrottling": {"maxTokens": 1001, "tokenRatio": 0.1}}"#.into(), "retryThrottling.maxTokens"),
        (r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0}}"#.into(), "retryThrottling.tokenRatio"),
        (r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": -1}}"#.into(), "retryThrottling.tokenRatio"),
        (r#"{"methodConfig": [{"name": [{"method": "M"}]}]}"#.into(), "methodConfig[0].name[0].service"),
        (r#"{"methodConfig": [{"name": [{}], "maxRequestMessageBytes": 10}]}"#.into(), "methodConfig[0].maxRequestMessageBytes"),
    ];
    let mut wrong = Vec::new();
    for (text, want) in cases {
        match catch_unwind(|| GrpcServiceConfig::from_json_str(&text)) {
            Err(_) => wrong.push(format!("PANIC on {text}")),
            Ok(Ok(parsed)) => wrong.push(format!("ACCEPTED {text} (wanted {want}): {parsed:?}")),
            Ok(Err(e)) if e.path() != want => wrong.push(format!(
                "WRONG PATH {text}: got {:?} ({e}), wanted {want}",
                e.path()
            )),
            Ok(Err(_)) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "{} case(s):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Written back and read again, a configuration is the same (the docs promise every value
/// round-trips), including edge values.
#[test]
fn configurations_round_trip_through_toml() {
    use meshless::policy::ClientConfig;
    let texts = [
        EP.to_string(),
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/config/client.toml"
        ))
        .unwrap(),
        format!(
            "{EP}[deadline]\ntimeout = \"18446744073709551615.999999999s\"\nbody_idle_timeout = \"1ns\"\n[hedge]\ndelay = {{ percentile = {{ percentile = 0.999, min_samples = 1, window = \"1s\" }} }}\n[limit]\nalgorithm = {{ gradient = {{}} }}\nmax_wait = \"1m30s\"\n[breaker]\nslow_call_duration = \"1.5s\"\n[balance.outlier]\nsuccess_rate = \"off\"\nlatency = {{ factor = 1.0000001 }}\n"
        ),
        format!(
            "{EP}[limit]\nalgorithm = {{ aimd = {{ backoff = 0.1 }} }}\n[retry]\nbackoff = {{ kind = \"none\" }}\nmax_pushback = \"0s\"\n"
        ),
    ];
    for text in texts {
        let config = ClientConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let written = config.to_toml_string();
        let again = ClientConfig::from_toml_str(&written)
            .unwrap_or_else(|e| panic!("written form refused: {e}\n{written}"));
        assert_eq!(config, again, "changed by a round trip:\n{written}");
    }
}

/// Contract: unknown fields are refused, bad values never silently fall back. A "choice"
/// table (`limit.algorithm`, `hedge.delay`) holding a second key — a second algorithm, or a
/// typo — must be refused in every format (TOML's tables let the first key win and dropped
/// the rest without a word).
#[test]
fn a_choice_table_with_a_second_key_is_refused() {
    use meshless::limit::Algorithm;
    use meshless::policy::ClientConfig;
    let mut accepted = Vec::new();
    for (format, text) in [
        (F::Toml, format!("{EP}[limit]\nalgorithm = {{ fixed = {{ max = 1 }}, aimd = {{}} }}")),
        (F::Toml, format!("{EP}[limit]\nalgorithm = {{ fixed = {{ max = 8 }}, bogus = 7 }}")),
        (F::Toml, format!("{EP}[hedge]\ndelay = {{ fixed = \"20ms\", percentile = {{ percentile = 0.5, min_samples = 1, window = \"1s\" }} }}")),
        (F::Yaml, "endpoints: ['127.0.0.1:80']\nlimit: { algorithm: { aimd: {}, fixed: { max: 2 } } }\n".to_string()),
        (F::Json, r#"{"endpoints": ["127.0.0.1:80"], "limit": {"algorithm": {"fixed": {"max": 3}, "max": 99}}}"#.to_string()),
    ] {
        let parsed = match format {
            F::Toml => ClientConfig::from_toml_str(&text),
            F::Yaml => ClientConfig::from_yaml_str(&text),
            F::Json => ClientConfig::from_json_str(&text),
        };
        if let Ok(config) = parsed {
            let algorithm: &Algorithm = &config.limit.algorithm;
            accepted.push(format!(
                "{text:?}\n   -> limit.algorithm = {algorithm:?}, hedge = {:?}",
                config.hedge.map(|h| h.delay)
            ));
        }
    }
    assert!(
        accepted.is_empty(),
        "accepted, the extra key dropped:\n{}",
        accepted.join("\n")
    );
}

/// A gRPC service config's zero `timeout` is refused by the import, at the service config's own
/// field (not later, under meshless's names `deadline.timeout` or `routes[0].timeout`).
#[test]
fn a_grpc_zero_timeout_is_refused_at_its_json_field() {
    use meshless::policy::{ClientConfig, GrpcServiceConfig};
    let text = r#"{"methodConfig": [{"name": [{"service": "a.S"}], "timeout": "0s"}]}"#;
    let imported = GrpcServiceConfig::from_json_str(text);
    let later = imported.as_ref().ok().map(|grpc| {
        let mut config = ClientConfig::from_toml_str(EP).unwrap();
        grpc.apply("a.S", "M", &mut config);
        let applied = config.validate().err().map(|e| e.path());
        let mut config = ClientConfig::from_toml_str(EP).unwrap();
        config.routes = grpc.routes();
        let routed = config.validate().err().map(|e| e.path());
        (applied, routed)
    });
    assert!(
        imported.is_err(),
        "imported; the zero is refused later as {later:?}"
    );
    assert_eq!(imported.unwrap_err().path(), "methodConfig[0].timeout");
}

/// A percentile hedge delay that gives only some of its settings takes the others' defaults,
/// as every other table of a configuration file does.
#[test]
fn a_percentile_delay_with_some_settings_takes_the_defaults_of_the_others() {
    use meshless::hedge::HedgeDelay;
    use meshless::policy::ClientConfig;
    use std::time::Duration;
    let text = format!("{EP}[hedge]\ndelay = {{ percentile = {{ percentile = 0.99 }} }}");
    let config = ClientConfig::from_toml_str(&text).expect("a valid configuration");
    let delay = config.hedge.expect("hedging configured").delay;
    assert_eq!(
        delay,
        HedgeDelay::Percentile {
            percentile: 0.99,
            min_samples: 100,
            window: Duration::from_secs(30),
        }
    );
}
