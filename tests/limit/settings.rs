//! Settings refused by name, and the metrics the limit records.

use super::*;
use meshless::limit::{AimdConfig, Algorithm, GradientConfig, LimitConfig};
use meshless::observe::{CONCURRENCY_IN_FLIGHT, CONCURRENCY_LIMIT, CONCURRENCY_REJECTED_TOTAL};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

fn refused(config: LimitConfig) -> &'static str {
    config.validate().expect_err("refused").setting()
}

fn with(algorithm: Algorithm) -> LimitConfig {
    let mut config = LimitConfig::default();
    config.algorithm = algorithm;
    config
}

type Snapshot = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// The value of the series `name`, which must be labelled `service=users` alone.
fn value(snapshot: &Snapshot, name: &str) -> Option<f64> {
    let (key, _, _, value) = snapshot.iter().find(|(key, ..)| key.key().name() == name)?;
    let labels: Vec<_> = key
        .key()
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    assert_eq!(labels, vec!["service=users"]);
    match value {
        DebugValue::Gauge(v) => Some(v.into_inner()),
        DebugValue::Counter(v) => Some(*v as f64),
        DebugValue::Histogram(_) => None,
    }
}

#[test]
fn validate_names_the_bad_field() {
    assert!(LimitConfig::default().validate().is_ok());
    assert_eq!(refused(with(Algorithm::Fixed { max: 0 })), "limit.max");
    let gradient = |edit: fn(&mut GradientConfig)| {
        let mut g = GradientConfig::default();
        edit(&mut g);
        refused(with(Algorithm::Gradient(g)))
    };
    assert_eq!(gradient(|g| g.min = 0), "limit.min");
    assert_eq!(gradient(|g| g.max = 10), "limit.max");
    assert_eq!(gradient(|g| g.initial = 300), "limit.initial");
    assert_eq!(gradient(|g| g.smoothing = 1.5), "limit.smoothing");
    assert_eq!(gradient(|g| g.tolerance = f64::NAN), "limit.tolerance");
    assert_eq!(gradient(|g| g.tolerance = 0.9), "limit.tolerance");
    assert_eq!(gradient(|g| g.window = Duration::ZERO), "limit.window");
    assert_eq!(gradient(|g| g.min_samples = 0), "limit.min_samples");
    assert_eq!(gradient(|g| g.long_window = 0), "limit.long_window");
    let aimd = |edit: fn(&mut AimdConfig)| {
        let mut a = AimdConfig::default();
        edit(&mut a);
        refused(with(Algorithm::Aimd(a)))
    };
    assert_eq!(aimd(|a| a.backoff = 1.0), "limit.backoff");
    assert_eq!(aimd(|a| a.timeout = Duration::ZERO), "limit.timeout");
    assert_eq!(aimd(|a| a.initial = 1), "limit.initial");
    assert!(LimitLayer::from_config(&with(Algorithm::Fixed { max: 0 })).is_err());
    let mut config = with(Algorithm::Fixed { max: 3 });
    config.max_wait = Duration::from_millis(5);
    assert_eq!(LimitLayer::from_config(&config).unwrap().config(), config);
}

#[test]
fn the_limit_in_flight_and_refusals_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let during = metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(async {
                let upstream = Upstream::flat(Duration::from_millis(10));
                let layer = LimitLayer::fixed(2).service_name("users");
                let (mut svc, _handle) = limited(layer, &upstream);
                let held = send(
                    &mut svc,
                    Ask {
                        body: true,
                        ..Ask::default()
                    },
                )
                .await
                .unwrap();
                let during = snapshotter.snapshot().into_vec();
                let second = send(
                    &mut svc,
                    Ask {
                        body: true,
                        ..Ask::default()
                    },
                )
                .await
                .unwrap();
                assert!(send(&mut svc, Ask::default()).await.is_err());
                drop((held, second));
                during
            })
    });
    assert_eq!(value(&during, CONCURRENCY_LIMIT), Some(2.0));
    assert_eq!(value(&during, CONCURRENCY_IN_FLIGHT), Some(1.0));
    let after = snapshotter.snapshot().into_vec();
    // The debugging recorder's snapshot swaps a gauge to 0, and the in-flight gauge moves by
    // steps: its value now is the sum of what the snapshots read.
    let now = value(&during, CONCURRENCY_IN_FLIGHT).unwrap_or(f64::NAN)
        + value(&after, CONCURRENCY_IN_FLIGHT).unwrap_or(f64::NAN);
    assert_eq!(now, 0.0);
    assert_eq!(value(&after, CONCURRENCY_REJECTED_TOTAL), Some(1.0));
}
