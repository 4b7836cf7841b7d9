//! One shape for configuration: every layer's settings are a plain struct whose `Default` is
//! what the builders produce, checked by one `validate` that names the field at fault, and
//! turned into a working layer by `from_config`. Edge values mean what the docs say.

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use meshless::ConfigError;
use meshless::backoff::{Backoff, BackoffConfig, BackoffKind};
use meshless::balance::{Balance, BalanceBuilder, BalanceConfig};
use meshless::budget::{Budget, BudgetConfig};
use meshless::deadline::{
    AttemptTimeoutConfig, AttemptTimeoutLayer, DEADLINE_HEADER, DeadlineConfig, DeadlineLayer,
};
use meshless::error::{Error, Kind};
use meshless::retry::{
    DEFAULT_MAX_PUSHBACK, DEFAULT_MAX_RETRIES, DEFAULT_REPLAY_CAP, DEFAULT_REPLAY_FRAMES,
    ReplayBody, RetryConfig, RetryLayer,
};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

#[test]
fn the_defaults_are_the_documented_ones_and_what_the_builders_produce() {
    // The README's "Defaults and where they come from" table, field by field.
    let budget = BudgetConfig::default();
    assert_eq!(
        (budget.ttl, budget.min_per_second, budget.ratio),
        (10 * SEC, 10.0, 0.2)
    );
    assert_eq!(Budget::builder().config(), budget);
    assert_eq!(Budget::default().config(), budget);

    let backoff = BackoffConfig::default();
    assert_eq!(
        (backoff.kind, backoff.base, backoff.cap),
        (BackoffKind::FullJitter, 25 * MS, 250 * MS)
    );
    assert_eq!(Backoff::default().config(), backoff);

    let retry = RetryConfig::default();
    assert_eq!(retry.max_retries, DEFAULT_MAX_RETRIES);
    assert_eq!(retry.max_retries, 2);
    assert_eq!(retry.backoff, backoff);
    assert_eq!(retry.replay_cap, DEFAULT_REPLAY_CAP);
    assert_eq!(retry.replay_cap, 64 * 1024);
    assert_eq!(retry.replay_frames, DEFAULT_REPLAY_FRAMES);
    assert_eq!(retry.replay_frames, 1024);
    assert_eq!(retry.max_pushback, DEFAULT_MAX_PUSHBACK);
    assert_eq!(retry.max_pushback, 10 * SEC);
    assert!(!retry.pushback_per_endpoint);
    assert_eq!(RetryLayer::new(Budget::default()).config(), retry);

    let deadline = DeadlineConfig::default();
    assert_eq!(deadline.timeout, 10 * SEC);
    assert!(!deadline.honor_inbound);
    assert_eq!(deadline.header, DEADLINE_HEADER);
    assert_eq!(deadline.body_idle_timeout, None);
    assert!(deadline.streaming_content_types.is_empty());
    assert_eq!(DeadlineLayer::new(10 * SEC).config(), deadline);

    let attempt = AttemptTimeoutConfig::default();
    assert_eq!(
        (attempt.timeout, attempt.deadline_header.as_deref()),
        (None, None)
    );
    assert_eq!(AttemptTimeoutLayer::deadline_only().config(), attempt);

    let balance = BalanceConfig::default();
    assert_eq!(balance.default_rtt, 30 * MS);
    assert_eq!(balance.decay, 10 * SEC);
    assert_eq!(balance.fail_fast, 3 * SEC);
    assert_eq!(balance.miss_weight, 0.25);
    assert_eq!(balance.max_pushback, 300 * SEC);
    assert!(!balance.rtt_at_headers);
    assert_eq!(balance.outlier, meshless::outlier::OutlierConfig::default());
    assert_eq!(Balance::builder().config(), balance);

    for result in [
        budget.validate(),
        backoff.validate(),
        retry.validate(),
        deadline.validate(),
        attempt.validate(),
        balance.validate(),
    ] {
        assert_eq!(result, Ok(()));
    }
}

#[test]
fn the_fluent_setters_write_the_same_struct_as_from_config() {
    let budget = Budget::builder()
        .ttl(5 * SEC)
        .min_per_second(1.5)
        .ratio(0.3);
    let mut config = BudgetConfig::default();
    (config.ttl, config.min_per_second, config.ratio) = (5 * SEC, 1.5, 0.3);
    assert_eq!(budget.config(), config);
    assert_eq!(Budget::from_config(&config).unwrap().config(), config);

    let retry = RetryLayer::new(Budget::default())
        .max_retries(4)
        .backoff(Backoff::decorrelated_jitter(10 * MS, SEC).unwrap())
        .replay_cap(7)
        .replay_frames(3)
        .max_pushback(2 * SEC)
        .pushback_per_endpoint(true);
    let mut config = RetryConfig::default();
    config.max_retries = 4;
    config.backoff.kind = BackoffKind::DecorrelatedJitter;
    (config.backoff.base, config.backoff.cap) = (10 * MS, SEC);
    (config.replay_cap, config.replay_frames) = (7, 3);
    config.max_pushback = 2 * SEC;
    config.pushback_per_endpoint = true;
    assert_eq!(retry.config(), config);
    let built = RetryLayer::from_config(Budget::default(), &config).unwrap();
    assert_eq!(built.config(), config);

    let deadline = DeadlineLayer::new(2 * SEC)
        .honor_inbound(true)
        .header(http::HeaderName::from_static(
            "x-envoy-expected-rq-timeout-ms",
        ))
        .body_idle_timeout(SEC)
        .streaming_content_type(http::HeaderValue::from_static("application/x-ndjson"));
    let mut config = DeadlineConfig::default();
    config.timeout = 2 * SEC;
    config.honor_inbound = true;
    config.header = "x-envoy-expected-rq-timeout-ms".into();
    config.body_idle_timeout = Some(SEC);
    config.streaming_content_types = vec!["application/x-ndjson".into()];
    assert_eq!(deadline.config(), config);
    assert_eq!(
        DeadlineLayer::from_config(&config).unwrap().config(),
        config
    );

    let attempt = AttemptTimeoutLayer::new(300 * MS).deadline_header(true);
    let mut config = AttemptTimeoutConfig::default();
    config.timeout = Some(300 * MS);
    config.deadline_header = Some(DEADLINE_HEADER.into());
    assert_eq!(attempt.config(), config);
    assert_eq!(
        AttemptTimeoutLayer::from_config(&config).unwrap().config(),
        config
    );

    let balance = Balance::builder()
        .default_rtt(5 * MS)
        .decay(SEC)
        .fail_fast(500 * MS)
        .miss_weight(0.1)
        .max_pushback(SEC)
        .rtt_at_headers(true);
    let mut config = BalanceConfig::default();
    (config.default_rtt, config.decay, config.fail_fast) = (5 * MS, SEC, 500 * MS);
    (config.miss_weight, config.max_pushback) = (0.1, SEC);
    config.rtt_at_headers = true;
    assert_eq!(balance.config(), config);
    assert_eq!(
        BalanceBuilder::from_config(&config).unwrap().config(),
        config
    );
}

/// Every invalid value of every field, the error it must give, and a piece of its message
/// (the bad value, or what it was compared with).
/// One invalid value: what `validate` said, and the setting, index and piece of the message it
/// must give.
type Case = (
    Result<(), ConfigError>,
    &'static str,
    Option<usize>,
    &'static str,
);

fn invalid_values() -> Vec<Case> {
    let budget = |f: fn(&mut BudgetConfig)| {
        let mut c = BudgetConfig::default();
        f(&mut c);
        c.validate()
    };
    let backoff = |f: fn(&mut BackoffConfig)| {
        let mut c = BackoffConfig::default();
        f(&mut c);
        c.validate()
    };
    let retry = |f: fn(&mut RetryConfig)| {
        let mut c = RetryConfig::default();
        f(&mut c);
        c.validate()
    };
    let deadline = |f: fn(&mut DeadlineConfig)| {
        let mut c = DeadlineConfig::default();
        f(&mut c);
        c.validate()
    };
    let attempt = |f: fn(&mut AttemptTimeoutConfig)| {
        let mut c = AttemptTimeoutConfig::default();
        f(&mut c);
        c.validate()
    };
    let balance = |f: fn(&mut BalanceConfig)| {
        let mut c = BalanceConfig::default();
        f(&mut c);
        c.validate()
    };
    vec![
        (
            budget(|c| c.ttl = Duration::ZERO),
            "budget.ttl",
            None,
            "0ns",
        ),
        (budget(|c| c.ttl = 99 * MS), "budget.ttl", None, "99ms"),
        (budget(|c| c.ratio = f64::NAN), "budget.ratio", None, "NaN"),
        (budget(|c| c.ratio = -0.1), "budget.ratio", None, "-0.1"),
        (budget(|c| c.ratio = 100.5), "budget.ratio", None, "100.5"),
        (
            budget(|c| c.ratio = f64::INFINITY),
            "budget.ratio",
            None,
            "inf",
        ),
        (
            budget(|c| c.min_per_second = -1.0),
            "budget.min_per_second",
            None,
            "-1",
        ),
        (
            budget(|c| c.min_per_second = f64::NAN),
            "budget.min_per_second",
            None,
            "NaN",
        ),
        (
            budget(|c| c.min_per_second = f64::INFINITY),
            "budget.min_per_second",
            None,
            "inf",
        ),
        // 1e9 retries a second over 10 s is ten times the most a window can hold.
        (
            budget(|c| c.min_per_second = 1e9),
            "budget.min_per_second",
            None,
            "1000000000",
        ),
        (
            backoff(|c| c.base = Duration::ZERO),
            "backoff.base",
            None,
            "0ns",
        ),
        (backoff(|c| c.cap = 24 * MS), "backoff.cap", None, "24ms"),
        (
            backoff(|c| (c.kind, c.cap) = (BackoffKind::DecorrelatedJitter, MS)),
            "backoff.cap",
            None,
            "1ms",
        ),
        (
            retry(|c| c.backoff.base = Duration::ZERO),
            "retry.backoff.base",
            None,
            "0ns",
        ),
        (
            retry(|c| c.backoff.cap = MS),
            "retry.backoff.cap",
            None,
            "1ms",
        ),
        (
            deadline(|c| c.timeout = Duration::ZERO),
            "deadline.timeout",
            None,
            "0ns",
        ),
        (
            deadline(|c| c.header = String::new()),
            "deadline.header",
            None,
            "\"\"",
        ),
        (
            deadline(|c| c.header = "no spaces".into()),
            "deadline.header",
            None,
            "no spaces",
        ),
        (
            deadline(|c| c.body_idle_timeout = Some(Duration::ZERO)),
            "deadline.body_idle_timeout",
            None,
            "0ns",
        ),
        (
            deadline(|c| c.streaming_content_types = vec![String::new()]),
            "deadline.streaming_content_types",
            Some(0),
            "\"\"",
        ),
        (
            deadline(|c| {
                c.streaming_content_types = vec!["video/mp4".into(), "ndjson".into()];
            }),
            "deadline.streaming_content_types",
            Some(1),
            "ndjson",
        ),
        (
            deadline(|c| {
                c.streaming_content_types = vec!["text/plain; charset=utf-8".into()];
            }),
            "deadline.streaming_content_types",
            Some(0),
            "charset",
        ),
        (
            deadline(|c| c.streaming_content_types = vec!["text/\u{e9}".into()]),
            "deadline.streaming_content_types",
            Some(0),
            "text/",
        ),
        (
            attempt(|c| c.timeout = Some(Duration::ZERO)),
            "attempt.timeout",
            None,
            "0ns",
        ),
        (
            attempt(|c| c.deadline_header = Some("a:b".into())),
            "attempt.deadline_header",
            None,
            "a:b",
        ),
        (
            balance(|c| c.decay = Duration::ZERO),
            "balance.decay",
            None,
            "0ns",
        ),
        (
            balance(|c| c.default_rtt = Duration::ZERO),
            "balance.default_rtt",
            None,
            "0ns",
        ),
    ]
}

#[test]
fn every_invalid_value_is_refused_by_the_name_of_its_field() {
    for (result, setting, index, value) in invalid_values() {
        let err = result.expect_err(setting);
        assert_eq!(err.setting(), setting, "{err}");
        assert_eq!(err.index(), index, "{err}");
        assert!(err.problem().contains(value), "{err} should show {value}");
        let shown = match index {
            Some(i) => format!("invalid {setting}[{i}]: "),
            None => format!("invalid {setting}: "),
        };
        assert!(err.to_string().starts_with(&shown), "{err}");
    }
}

#[test]
fn the_builders_and_from_config_refuse_through_the_same_check() {
    let mut config = BudgetConfig::default();
    config.ratio = f64::NAN;
    let from_config = Budget::from_config(&config).unwrap_err();
    let fluent = Budget::builder().ratio(f64::NAN).build().unwrap_err();
    assert_eq!(from_config, fluent);
    assert_eq!(fluent, config.validate().unwrap_err());

    let fluent = Backoff::full_jitter(SEC, MS).unwrap_err();
    let mut config = BackoffConfig::default();
    (config.base, config.cap) = (SEC, MS);
    assert_eq!(Backoff::from_config(&config).unwrap_err(), fluent);

    let mut config = RetryConfig::default();
    config.backoff.base = Duration::ZERO;
    let err = RetryLayer::from_config(Budget::default(), &config).unwrap_err();
    assert_eq!(err.setting(), "retry.backoff.base");

    let mut config = DeadlineConfig::default();
    config.header = "bad header".into();
    let err = DeadlineLayer::from_config(&config).unwrap_err();
    assert_eq!(err, config.validate().unwrap_err());

    let mut config = AttemptTimeoutConfig::default();
    config.timeout = Some(Duration::ZERO);
    let err = AttemptTimeoutLayer::from_config(&config).unwrap_err();
    assert_eq!(err.setting(), "attempt.timeout");

    let fluent = Balance::builder()
        .decay(Duration::ZERO)
        .validate()
        .unwrap_err();
    let mut config = BalanceConfig::default();
    config.decay = Duration::ZERO;
    assert_eq!(BalanceBuilder::from_config(&config).unwrap_err(), fluent);
    assert_eq!(fluent.setting(), "balance.decay");
}

#[path = "config/layers.rs"]
mod layers;
