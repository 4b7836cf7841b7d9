//! `Duration::MAX` in the outlier, budget and backoff settings: accepted, read as "no limit"
//! for a limit or a cap, clamped to the largest supported value for a period that must stay
//! finite, and then exercised so that nothing downstream overflows.
//!
//! Paused tokio time throughout: days of ejection pass in no real time. The detector's own
//! ladder, driven for thousands of years with explicit instants, is a unit test
//! (`outlier::duration_limits_tests`): no balancer timer can be advanced that far.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use meshless::backoff::Backoff;
use meshless::balance::Balance;
use meshless::budget::Budget;
use meshless::outlier::{OutlierConfig, OutlierConfigBuilder, Status};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Every duration setting of the detector at `Duration::MAX`.
fn all_max() -> OutlierConfigBuilder {
    OutlierConfig::builder()
        .interval(Duration::MAX)
        .base_ejection_time(Duration::MAX)
        .max_ejection_time(Duration::MAX)
        .probe_timeout(Duration::MAX)
        .slow_start(Duration::MAX)
}

/// The end of `status`'s ejection; panics if it is not ejected.
fn until(status: Status) -> Instant {
    match status {
        Status::Ejected { until, .. } => until,
        other => panic!("not ejected: {other:?}"),
    }
}

#[test]
fn every_outlier_duration_accepts_duration_max() {
    let b = OutlierConfig::builder;
    let each = [
        b().interval(Duration::MAX),
        b().base_ejection_time(Duration::MAX),
        b().max_ejection_time(Duration::MAX),
        b().probe_timeout(Duration::MAX),
        b().slow_start(Duration::MAX),
        all_max(),
    ];
    for builder in each {
        builder.build().unwrap();
    }
    let config = all_max().build().unwrap();
    // Periods clamp to their largest supported value...
    assert_eq!(config.interval(), HOUR);
    assert_eq!(config.base_ejection_time(), DAY);
    assert_eq!(config.slow_start(), HOUR);
    // ...limits keep "no limit".
    assert_eq!(config.max_ejection_time(), Duration::MAX);
    assert_eq!(config.probe_timeout(), Duration::MAX);
    // An unset maximum follows a base above its default.
    let config = b().base_ejection_time(Duration::MAX).build().unwrap();
    assert_eq!(config.max_ejection_time(), DAY);
}

#[test]
fn what_is_truly_invalid_is_still_refused_by_name() {
    let b = OutlierConfig::builder;
    let cases = [
        (b().interval(Duration::ZERO).build(), "outlier.interval"),
        (
            b().base_ejection_time(Duration::ZERO).build(),
            "outlier.base_ejection_time",
        ),
        (
            b().probe_timeout(Duration::ZERO).build(),
            "outlier.probe_timeout",
        ),
        (
            b().base_ejection_time(Duration::MAX)
                .max_ejection_time(HOUR)
                .build(),
            "outlier.max_ejection_time",
        ),
        (
            all_max().ejection_jitter(f64::NAN).build(),
            "outlier.ejection_jitter",
        ),
        (
            all_max().max_ejected_share(f64::NAN).build(),
            "outlier.max_ejected_share",
        ),
    ];
    for (result, setting) in cases {
        assert_eq!(result.unwrap_err().setting(), setting);
    }
    let err = Budget::builder().ttl(Duration::ZERO).build().unwrap_err();
    assert_eq!(err.setting(), "budget.ttl");
    let err = Budget::builder()
        .ttl(Duration::MAX)
        .ratio(f64::NAN)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "budget.ratio");
    let err = Backoff::full_jitter(Duration::ZERO, Duration::MAX).unwrap_err();
    assert_eq!(err.setting(), "backoff.base");
    let err = Backoff::decorrelated_jitter(Duration::MAX, MINUTE).unwrap_err();
    assert_eq!(err.setting(), "backoff.cap");
}

/// One endpoint's answers and the requests it received.
#[derive(Clone)]
struct Mock {
    status: StatusCode,
    hits: Arc<AtomicUsize>,
}

impl Mock {
    fn new(status: StatusCode) -> Self {
        Mock {
            status,
            hits: Arc::default(),
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<Empty<Bytes>>,
        Response = Response<Empty<Bytes>>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static {
        let mock = self.clone();
        service_fn(move |_req: Request<Empty<Bytes>>| {
            let mock = mock.clone();
            async move {
                mock.hits.fetch_add(1, Ordering::SeqCst);
                let mut res = Response::new(Empty::new());
                *res.status_mut() = mock.status;
                Ok::<_, Infallible>(res)
            }
        })
    }
}

/// A balancer whose detector has every duration at `Duration::MAX`: it ejects a failing
/// endpoint for a day, probes it when the day is over, doubles the ejection on each failed
/// probe, and runs its hourly sweeps, all through the public API and without panicking.
#[tokio::test(start_paused = true)]
async fn a_balance_with_duration_max_outlier_settings_ejects_probes_and_sweeps() {
    let config = all_max().ejection_jitter(0.0).build().unwrap();
    let bad = Mock::new(StatusCode::INTERNAL_SERVER_ERROR);
    let good = Mock::new(StatusCode::OK);
    // No miss weight: P2C keeps drawing `bad` as often as `good`, so that its failures reach
    // the detector instead of only its cost.
    let balance = Balance::builder().outlier(config).miss_weight(0.0).build();
    balance.insert("bad", bad.service());
    balance.insert("good", good.service());
    let status_of = |key: &str| {
        balance
            .endpoints()
            .into_iter()
            .find(|e| e.key == key)
            .map(|e| e.status)
            .expect("the endpoint is in the balancer")
    };
    let send = || async {
        let res = balance.clone().oneshot(Request::new(Empty::new())).await;
        res.map(|r| r.status()).map_err(|e| e.kind())
    };

    // A few hundred requests over a few seconds: five failures in a row eject `bad`.
    for _ in 0..300 {
        let _ = send().await;
        tokio::time::advance(10 * MS).await;
    }
    assert_eq!(bad.hits(), 5);
    let ends = until(status_of("bad"));
    let left = ends.duration_since(Instant::now());
    assert!(
        left > DAY - 5 * Duration::from_secs(1) && left <= DAY,
        "{left:?}"
    );
    assert_eq!(status_of("good"), Status::Active);

    // A day of hourly sweeps (interval clamped to an hour), with traffic in each hour: the
    // sweeps judge only `good`, which stays in, and `bad` gets nothing.
    for _ in 0..23 {
        tokio::time::advance(HOUR).await;
        for _ in 0..10 {
            assert_eq!(send().await, Ok(StatusCode::OK));
        }
    }
    assert_eq!(bad.hits(), 5);
    assert_eq!(status_of("good"), Status::Active);

    // Each failed probe doubles the ejection, past any default maximum.
    let mut length = DAY;
    for probe in 1..=5 {
        tokio::time::advance(ends_in(until(status_of("bad")))).await;
        while bad.hits() == 4 + probe {
            let _ = send().await;
        }
        assert_eq!(bad.hits(), 5 + probe, "one probe only");
        length *= 2;
        let left = until(status_of("bad")).duration_since(Instant::now());
        assert!(left.abs_diff(length) <= MS, "probe {probe}: {left:?}");
    }
    let stats = balance.stats();
    assert_eq!((stats.active, stats.ejected), (1, 1));
    assert_eq!(
        stats
            .endpoints
            .iter()
            .find(|e| e.key == "bad")
            .map(|e| e.ejections),
        Some(6)
    );
}

/// How long from now until `t` (zero if it passed).
fn ends_in(t: Instant) -> Duration {
    t.saturating_duration_since(Instant::now())
}

#[tokio::test(start_paused = true)]
async fn a_budget_with_a_ttl_of_duration_max_keeps_deposits_for_an_hour() {
    // The default reserve is 10 retries a second over the ttl, which counts as an hour.
    let budget = Budget::builder().ttl(Duration::MAX).build().unwrap();
    assert_eq!(budget.ttl(), HOUR);
    assert_eq!(budget.balance(), 36_000.0);

    let budget = Budget::builder()
        .ttl(Duration::MAX)
        .min_per_second(0.0)
        .ratio(1.0)
        .build()
        .unwrap();
    for _ in 0..3 {
        budget.deposit();
    }
    assert!(budget.try_withdraw());
    let token = budget.withdraw().expect("a second retry");
    token.refund();
    assert_eq!(budget.balance(), 2.0);
    // Still there just before the hour is up, gone at the hour (deposits and withdrawals).
    tokio::time::advance(HOUR - Duration::from_secs(1)).await;
    assert_eq!(budget.balance(), 2.0);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(budget.balance(), 0.0);
    assert!(!budget.try_withdraw());
    // And the window keeps moving without overflow, far later. (Reading the balance moves
    // the window first: a deposit reads the clock only now and then.)
    tokio::time::advance(1000 * DAY).await;
    assert_eq!(budget.balance(), 0.0);
    budget.deposit();
    assert!(budget.try_withdraw());
}

#[test]
fn a_backoff_of_duration_max_waits_at_most_the_clamped_base_first_then_grows_uncapped() {
    let full = Backoff::full_jitter(Duration::MAX, Duration::MAX).unwrap();
    let decorrelated = Backoff::decorrelated_jitter(Duration::MAX, Duration::MAX).unwrap();
    assert_eq!(full.cap(), Duration::MAX);
    let (mut longest, mut grew) = (Duration::ZERO, false);
    for _ in 0..200 {
        // Full jitter: the n-th wait is at most an hour × 2ⁿ.
        let mut s = full.start();
        let mut ceiling = HOUR;
        for _ in 0..100 {
            let wait = s.next_delay();
            assert!(wait <= ceiling, "{wait:?} > {ceiling:?}");
            ceiling = ceiling.saturating_mul(2);
            longest = longest.max(wait);
        }
        // Decorrelated: never below the base, an hour; at most three times the last wait.
        let mut s = decorrelated.start();
        let mut last = HOUR;
        for _ in 0..100 {
            let wait = s.next_delay();
            assert!(wait >= HOUR && wait <= last.saturating_mul(3), "{wait:?}");
            grew |= wait > 3 * HOUR;
            last = wait;
        }
    }
    // Uncapped: the waits really do grow past the base.
    assert!(longest > 1000 * DAY, "{longest:?}");
    assert!(grew);
    // A finite cap above the clamped base still caps.
    let capped = Backoff::full_jitter(Duration::MAX, 90 * MINUTE).unwrap();
    let mut s = capped.start();
    for _ in 0..100 {
        assert!(s.next_delay() <= 90 * MINUTE);
    }
}
