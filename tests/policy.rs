//! Policies as data: every layer's settings read from TOML, YAML and JSON, durations in every
//! form, and every mistake refused with the path of the field at fault.
#![cfg(feature = "serde")]

use meshless::backoff::BackoffKind;
use meshless::chaos::{ChaosConfig, ChaosRule};
use meshless::hedge::{HedgeConfig, HedgeDelay};
use meshless::limit::{AimdConfig, Algorithm, GradientConfig, LimitConfig};
use meshless::outlier::{LatencyPolicy, OutlierConfig};
use meshless::policy::{ClientConfig, Format, parse_duration};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

/// A client config with every section away from its defaults.
fn everything_changed() -> ClientConfig {
    let mut c = ClientConfig::default();
    c.endpoints = vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()];
    c.dns = Some("example.test:443".into());
    c.service_name = "payments".into();
    c.metrics = false;
    c.connect_timeout = 1500 * MS;
    c.http2_prior_knowledge = true;
    c.deadline.timeout = 800 * MS;
    c.deadline.honor_inbound = true;
    c.deadline.body_idle_timeout = Some(Duration::from_secs(30));
    c.deadline.streaming_content_types = vec!["application/x-ndjson".into()];
    c.attempt_timeout.timeout = Some(250 * MS);
    c.attempt_timeout.deadline_header = Some("x-attempt-ms".into());
    c.budget.ratio = 0.1;
    c.budget.ttl = Duration::from_secs(30);
    c.retry.max_retries = 3;
    c.retry.backoff.kind = BackoffKind::DecorrelatedJitter;
    c.retry.backoff.base = 50 * MS;
    c.retry.backoff.cap = Duration::from_secs(2);
    c.retry.max_pushback = Duration::MAX;
    c.balance.fail_fast = Duration::from_nanos(1_500_001);
    c.balance.outlier = OutlierConfig::builder()
        .consecutive_failures(None)
        .success_rate(None)
        .latency(Some(LatencyPolicy::default().factor(5.0)))
        .max_ejection_time(Duration::from_secs(300))
        .build()
        .unwrap();
    c.breaker.slow_call_duration = Some(Duration::from_secs(1));
    c.breaker.failure_rate_threshold = 0.25;
    c.limit.algorithm = Algorithm::Gradient(GradientConfig::default());
    c.limit.max_wait = 20 * MS;
    c.throttle.enabled = true;
    c.throttle.k = 1.5;
    let mut hedge = HedgeConfig::default();
    hedge.delay = HedgeDelay::Fixed(20 * MS);
    hedge.max_hedges = 2;
    c.hedge = Some(hedge);
    c
}

fn write<T: Serialize>(format: Format, value: &T) -> String {
    match format {
        Format::Toml => toml::to_string(value).expect("toml"),
        Format::Yaml => serde_norway::to_string(value).expect("yaml"),
        Format::Json => serde_json::to_string_pretty(value).expect("json"),
        _ => unreachable!(),
    }
}

const FORMATS: [Format; 3] = [Format::Toml, Format::Yaml, Format::Json];

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    for format in FORMATS {
        let text = write(format, value);
        let back: T = format
            .parse(&text)
            .unwrap_or_else(|e| panic!("{format:?}: {e}\n{text}"));
        assert_eq!(&back, value, "{format:?}:\n{text}");
    }
}

#[test]
fn a_whole_client_round_trips_through_every_format() {
    let config = everything_changed();
    round_trip(&config);
    for format in FORMATS {
        let back = ClientConfig::parse(format, &write(format, &config)).expect("valid");
        assert_eq!(back, config, "{format:?}");
    }
    // What is printed is what is read.
    assert_eq!(
        ClientConfig::from_toml_str(&config.to_toml_string()),
        Ok(config)
    );
}

#[test]
fn every_layer_config_round_trips_through_every_format() {
    round_trip(&meshless::retry::RetryConfig::default());
    round_trip(&meshless::budget::BudgetConfig::default());
    round_trip(&meshless::backoff::BackoffConfig::default());
    round_trip(&meshless::deadline::DeadlineConfig::default());
    round_trip(&meshless::deadline::AttemptTimeoutConfig::default());
    round_trip(&meshless::balance::BalanceConfig::default());
    round_trip(&OutlierConfig::default());
    round_trip(&meshless::breaker::BreakerConfig::default());
    round_trip(&meshless::throttle::ThrottleConfig::default());
    round_trip(&HedgeConfig::default());
    for algorithm in [
        Algorithm::Fixed { max: 64 },
        Algorithm::Gradient(GradientConfig::default()),
        Algorithm::Aimd(AimdConfig::default()),
        Algorithm::Unlimited,
    ] {
        let mut limit = LimitConfig::default();
        limit.algorithm = algorithm;
        round_trip(&limit);
    }
    let mut chaos = ChaosConfig::default();
    chaos.enabled = true;
    chaos.seed = Some(7);
    chaos.faults.error_rate = 0.1;
    chaos.faults.error_headers = vec![("retry-after".into(), "1".into())];
    let mut rule = ChaosRule::default();
    rule.method = Some("POST".into());
    rule.path_prefix = Some("/slow".into());
    rule.faults.delay_rate = 1.0;
    rule.faults.delay = 150 * MS;
    chaos.rules = vec![rule];
    round_trip(&chaos);
    chaos.validate().expect("a valid chaos config");
}

#[test]
fn an_empty_section_is_the_defaults() {
    let config = ClientConfig::from_toml_str(
        "endpoints = ['127.0.0.1:1']\n[retry]\n[breaker]\n[balance.outlier]\n",
    )
    .unwrap();
    let mut expected = ClientConfig::default();
    expected.endpoints = vec!["127.0.0.1:1".into()];
    assert_eq!(config, expected);
}

#[test]
fn durations_read_in_every_form() {
    for (text, expected) in [
        ("250ms", 250 * MS),
        ("2s", Duration::from_secs(2)),
        ("1m", Duration::from_secs(60)),
        ("1h", Duration::from_secs(3600)),
        ("0.25s", 250 * MS),
        (".5s", 500 * MS),
        ("1.000000001s", Duration::new(1, 1)),
        ("1m30s", Duration::from_secs(90)),
        ("1h2m3s4ms", Duration::new(3723, 4_000_000)),
        ("10us", Duration::from_micros(10)),
        ("10µs", Duration::from_micros(10)),
        ("7ns", Duration::from_nanos(7)),
        ("0s", Duration::ZERO),
        ("18446744073709551615.999999999s", Duration::MAX),
    ] {
        assert_eq!(parse_duration(text), Ok(expected), "{text}");
        // And in a file, in the three formats.
        let toml = format!("max_pushback = \"{text}\"");
        let yaml = format!("max_pushback: \"{text}\"");
        let json = format!("{{\"max_pushback\": \"{text}\"}}");
        for (format, text) in [
            (Format::Toml, toml),
            (Format::Yaml, yaml),
            (Format::Json, json),
        ] {
            let retry: meshless::retry::RetryConfig = format.parse(&text).unwrap();
            assert_eq!(retry.max_pushback, expected, "{format:?} {text}");
        }
    }
    // A YAML scalar needs no quotes.
    let retry: meshless::retry::RetryConfig = Format::Yaml.parse("max_pushback: 0.25s").unwrap();
    assert_eq!(retry.max_pushback, 250 * MS);
}

#[test]
fn bad_durations_are_refused_with_the_reason() {
    for (text, reason) in [
        ("-1s", "negative"),
        ("-0.5s", "negative"),
        ("NaNs", "number"),
        ("inf", "number"),
        ("250", "unit"),
        ("1.5", "unit"),
        ("10 parsecs", "unknown unit"),
        ("3d", "unknown unit"),
        ("1.2.3s", "not a duration"),
        ("", "empty"),
        ("18446744073709551616s", "longer"),
        (
            "99999999999999999999999999999999999999999h",
            "not a duration",
        ),
    ] {
        let err = parse_duration(text).expect_err(text);
        assert!(err.contains(reason), "{text:?}: {err}");
        let toml = format!("[retry]\nmax_pushback = \"{text}\"\n");
        let err = ClientConfig::from_toml_str(&toml).expect_err(text);
        assert_eq!(err.path(), "retry.max_pushback", "{text:?}: {err}");
        assert!(err.problem().contains(reason), "{text:?}: {err}");
    }
    // A bare number has no unit, in every format.
    for (format, text) in [
        (Format::Toml, "[deadline]\ntimeout = 250"),
        (Format::Yaml, "deadline: {timeout: 250}"),
        (Format::Json, r#"{"deadline": {"timeout": 0.25}}"#),
    ] {
        let err = ClientConfig::parse(format, text).expect_err(text);
        assert_eq!(err.path(), "deadline.timeout", "{format:?}: {err}");
        assert!(err.problem().contains("no unit"), "{format:?}: {err}");
    }
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    for (format, text, path) in [
        (Format::Toml, "retires = 3", "retires"),
        (
            Format::Toml,
            "[retry.backoff]\nbse = '1s'",
            "retry.backoff.bse",
        ),
        (
            Format::Yaml,
            "balance: {outlier: {intervall: 1s}}",
            "balance.outlier.intervall",
        ),
        (
            Format::Json,
            r#"{"hedge": {"max_hedge": 1}}"#,
            "hedge.max_hedge",
        ),
        (
            Format::Json,
            r#"{"limit": {"algorithm": {"fixed": {"max": 1, "min": 1}}}}"#,
            "limit.algorithm.fixed.min",
        ),
    ] {
        let err = ClientConfig::parse(format, text).expect_err(text);
        assert_eq!(err.path(), path, "{format:?} {text}: {err}");
        assert!(err.problem().contains("unknown field"), "{err}");
        assert!(
            err.to_string().starts_with(&format!("invalid {path}: ")),
            "{err}"
        );
    }
}

#[test]
fn a_bad_value_is_refused_naming_its_full_path() {
    let endpoints = "endpoints = ['127.0.0.1:1']\n";
    for (text, path) in [
        ("[budget]\nratio = -1.0", "budget.ratio"),
        (
            "[retry.backoff]\nbase = '1s'\ncap = '10ms'",
            "retry.backoff.cap",
        ),
        ("[retry]\nmax_retries = 'three'", "retry.max_retries"),
        ("[retry]\nmax_retries = -1", "retry.max_retries"),
        ("[deadline]\ntimeout = '0s'", "deadline.timeout"),
        (
            "[deadline]\nstreaming_content_types = ['a/b', 'nope']",
            "deadline.streaming_content_types[1]",
        ),
        (
            "[attempt_timeout]\ntimeout = '0s'",
            "attempt_timeout.timeout",
        ),
        ("[balance]\ndecay = '0s'", "balance.decay"),
        (
            "[balance.outlier]\ninterval = '0s'",
            "balance.outlier.interval",
        ),
        (
            "[balance.outlier.latency]\nfactor = 0.5",
            "balance.outlier.latency.factor",
        ),
        (
            "[breaker]\nfailure_rate_threshold = 2.0",
            "breaker.failure_rate_threshold",
        ),
        (
            "[limit.algorithm.fixed]\nmax = 0",
            "limit.algorithm.fixed.max",
        ),
        (
            "[limit.algorithm.gradient]\nsmoothing = 7.0",
            "limit.algorithm.gradient.smoothing",
        ),
        ("[throttle]\nk = -1.0", "throttle.k"),
        ("[hedge]\nmax_hedges = 9", "hedge.max_hedges"),
        ("[hedge.delay]\nfixed = '0s'", "hedge.delay.fixed"),
        ("connect_timeout = '0s'", "connect_timeout"),
    ] {
        let err = ClientConfig::from_toml_str(&format!("{endpoints}{text}")).expect_err(text);
        assert_eq!(err.path(), path, "{text}: {err}");
        assert!(
            err.to_string().starts_with(&format!("invalid {path}: ")),
            "{err}"
        );
    }
    let err = ClientConfig::from_toml_str("").unwrap_err();
    assert_eq!(err.path(), "endpoints");
}

#[test]
fn off_turns_an_optional_setting_off_in_every_format() {
    for (format, text) in [
        (
            Format::Toml,
            "endpoints = ['127.0.0.1:1']\nhedge = 'off'\n[balance.outlier]\nsuccess_rate = 'off'\nconsecutive_failures = 'off'\n[breaker]\nslow_call_duration = 'off'\n",
        ),
        (
            Format::Yaml,
            "endpoints: ['127.0.0.1:1']\nhedge: null\nbalance: {outlier: {success_rate: false, consecutive_failures: off}}\nbreaker: {slow_call_duration: none}\n",
        ),
        (
            Format::Json,
            r#"{"endpoints": ["127.0.0.1:1"], "hedge": "off", "balance": {"outlier": {"success_rate": null, "consecutive_failures": "off"}}, "breaker": {"slow_call_duration": null}}"#,
        ),
    ] {
        let config =
            ClientConfig::parse(format, text).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert!(config.hedge.is_none(), "{format:?}");
        assert!(
            config.balance.outlier.success_rate().is_none(),
            "{format:?}"
        );
        assert!(
            config.balance.outlier.consecutive_failures().is_none(),
            "{format:?}"
        );
        assert!(OutlierConfig::default().success_rate().is_some());
        assert!(config.breaker.slow_call_duration.is_none(), "{format:?}");
    }
    let config = ClientConfig::from_toml_str(
        "endpoints = ['127.0.0.1:1']\n[balance.outlier]\nconsecutive_failures = 7\n[hedge.delay.percentile]\npercentile = 0.9\nmin_samples = 10\nwindow = '10s'\n",
    )
    .unwrap();
    assert_eq!(config.balance.outlier.consecutive_failures(), Some(7));
    assert_eq!(
        config.hedge.map(|h| h.delay),
        Some(HedgeDelay::Percentile {
            percentile: 0.9,
            min_samples: 10,
            window: Duration::from_secs(10)
        })
    );
}

#[test]
fn a_longer_base_ejection_carries_the_default_maximum_with_it() {
    let config = ClientConfig::from_toml_str(
        "endpoints = ['127.0.0.1:1']\n[balance.outlier]\nbase_ejection_time = '2m'\n",
    )
    .unwrap();
    assert_eq!(
        config.balance.outlier.max_ejection_time(),
        Duration::from_secs(120)
    );
    let err = ClientConfig::from_toml_str(
        "endpoints = ['127.0.0.1:1']\n[balance.outlier]\nbase_ejection_time = '2m'\nmax_ejection_time = '90s'\n",
    )
    .unwrap_err();
    assert_eq!(err.path(), "balance.outlier.max_ejection_time");
}

#[test]
fn files_are_read_by_their_extension() {
    let dir = std::env::temp_dir().join(format!("meshless-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = everything_changed();
    for (name, format) in [
        ("c.toml", Format::Toml),
        ("c.yaml", Format::Yaml),
        ("c.yml", Format::Yaml),
        ("c.json", Format::Json),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, write(format, &config)).unwrap();
        assert_eq!(ClientConfig::from_file(&path), Ok(config.clone()), "{name}");
    }
    let ini = dir.join("c.ini");
    std::fs::write(&ini, "").unwrap();
    assert_eq!(ClientConfig::from_file(&ini).unwrap_err().setting(), "file");
    assert_eq!(
        ClientConfig::from_file(dir.join("missing.toml"))
            .unwrap_err()
            .setting(),
        "file"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_choice_is_written_the_same_way_in_every_format() {
    for (format, text) in [
        (Format::Toml, "[algorithm.fixed]\nmax = 3"),
        (Format::Toml, "algorithm = { fixed = { max = 3 } }"),
        (Format::Yaml, "algorithm: {fixed: {max: 3}}"),
        (Format::Yaml, "algorithm: !fixed {max: 3}"),
        (Format::Json, r#"{"algorithm": {"fixed": {"max": 3}}}"#),
    ] {
        let limit: LimitConfig = format.parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(limit.algorithm, Algorithm::Fixed { max: 3 }, "{text}");
    }
    for (format, text) in [
        (Format::Toml, "algorithm = 'unlimited'"),
        (Format::Yaml, "algorithm: unlimited"),
        (Format::Json, r#"{"algorithm": "unlimited"}"#),
    ] {
        let limit: LimitConfig = format.parse(text).unwrap();
        assert_eq!(limit.algorithm, Algorithm::Unlimited, "{text}");
    }
    for (format, text) in [
        (Format::Yaml, "delay: {fixed: 50ms}"),
        (Format::Json, r#"{"delay": {"fixed": "0.05s"}}"#),
        (Format::Toml, "delay = { fixed = '50ms' }"),
    ] {
        let hedge: HedgeConfig = format.parse(text).unwrap();
        assert_eq!(hedge.delay, HedgeDelay::Fixed(50 * MS), "{text}");
    }
    let err = Format::Toml
        .parse::<LimitConfig>("algorithm = 'fixd'")
        .unwrap_err();
    assert_eq!(err.path(), "algorithm");
    assert!(err.problem().contains("unknown variant"), "{err}");
}
