//! When a hedge is sent: after the fixed delay, or after the percentile of recent answers once
//! there are enough of them.

use super::support::{Upstream, answer, behind, fixed, get, ms};
use meshless::budget::Budget;
use meshless::hedge::{HedgeConfig, HedgeDelay, HedgeLayer};
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;

/// A p95 delay; no extra-load cap, so that the percentile is the configured one (under a cap,
/// it rises to fit nine tenths of it).
fn percentile_layer(min_samples: u32) -> HedgeLayer {
    let mut config = HedgeConfig::default();
    config.max_extra_load = 1.0;
    config.delay = HedgeDelay::Percentile {
        percentile: 0.95,
        min_samples,
        window: Duration::from_secs(30),
    };
    HedgeLayer::from_config(Budget::default(), &config)
        .unwrap()
        .metrics(false)
}

#[tokio::test(start_paused = true)]
async fn a_fixed_delay_hedges_at_that_instant_and_the_first_answer_wins() {
    let upstream = Upstream::new(ms(1), 200);
    upstream.script([(ms(100), 200), (ms(5), 200)]);
    let layer = fixed(Budget::default(), ms(10), 1, 1.0);
    let stats = layer.stats();
    let t0 = Instant::now();
    let (res, took) = answer(&layer, &upstream).await;
    assert_eq!(res.body(), "call 1", "the hedge answered first");
    assert_eq!(took, ms(15));
    let calls = upstream.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].at, t0);
    assert_eq!(calls[1].at, t0 + ms(10));
    assert_eq!((stats.hedges(), stats.won()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn an_answer_before_the_delay_sends_no_hedge() {
    let upstream = Upstream::new(ms(9), 200);
    let layer = fixed(Budget::default(), ms(10), 1, 1.0);
    let stats = layer.stats();
    let svc = behind(&layer, &upstream);
    for _ in 0..10 {
        svc.clone().oneshot(get()).await.unwrap();
    }
    // Long after: no timer left behind fires a hedge.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(upstream.count(), 10);
    assert_eq!((stats.requests(), stats.hedges()), (10, 0));
}

#[tokio::test(start_paused = true)]
async fn the_hedge_starts_at_the_p95_of_the_answers_fed() {
    let upstream = Upstream::new(ms(1), 200);
    upstream.script((1..=100).map(|i| (ms(i), 200)));
    let layer = percentile_layer(100);
    let stats = layer.stats();
    let svc = behind(&layer, &upstream);
    for i in 1..=100 {
        assert_eq!(stats.delay(), None, "no delay before answer {i}");
        svc.clone().oneshot(get()).await.unwrap();
    }
    assert_eq!(
        upstream.count(),
        100,
        "no hedge while the samples were too few"
    );
    let delay = stats.delay().expect("100 answers: the percentile is known");
    // The p95 of 1..=100 ms is 95 ms; the histogram's bucket is within 12.5% of it.
    let error = (delay.as_secs_f64() * 1e3 - 95.0).abs();
    assert!(error <= 95.0 / 8.0, "{delay:?}");

    upstream.script([(Duration::from_secs(1), 200), (ms(1), 200)]);
    let t0 = Instant::now();
    let res = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(res.body(), "call 101");
    let calls = upstream.calls();
    assert_eq!(calls[100].at, t0);
    // The delay has microsecond resolution; tokio's timer wheel fires on the next whole
    // millisecond of its clock.
    let sent = calls[101].at - t0;
    assert!(
        sent >= delay && sent < delay + ms(1),
        "the hedge starts at the percentile: {sent:?} for {delay:?}"
    );
    assert_eq!(Instant::now(), calls[101].at + ms(1));
    assert_eq!((stats.hedges(), stats.won()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn no_hedge_before_the_minimum_number_of_samples() {
    let upstream = Upstream::new(ms(10), 200);
    let layer = percentile_layer(20);
    let stats = layer.stats();
    let svc = behind(&layer, &upstream);
    for _ in 0..19 {
        svc.clone().oneshot(get()).await.unwrap();
    }
    // The 20th request is slow, but only 19 answers are known when it starts: no hedge.
    upstream.script([(ms(500), 200)]);
    svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(upstream.count(), 20);
    assert_eq!(stats.hedges(), 0);
    // Its answer is the 20th sample: the next slow request is hedged.
    let delay = stats.delay().expect("20 samples");
    assert!(delay < ms(12), "{delay:?}");
    upstream.script([(ms(500), 200)]);
    svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(upstream.count(), 22);
    assert_eq!(stats.hedges(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_sent_before_the_delay_is_known_is_hedged_once_it_is() {
    let upstream = Upstream::new(ms(10), 200);
    // The first request lands on a hanging endpoint, before anything is known.
    upstream.script([(Duration::from_secs(5), 200)]);
    let layer = percentile_layer(20);
    let stats = layer.stats();
    let svc = behind(&layer, &upstream);
    let t0 = Instant::now();
    let stuck = tokio::spawn(svc.clone().oneshot(get()));
    tokio::task::yield_now().await;
    assert_eq!(upstream.count(), 1);
    assert_eq!(stats.delay(), None);
    // Twenty answers of 10 ms, one after the other: the delay is known at 200 ms, and the
    // stuck request, sent 200 ms before, is past it: its hedge goes at once.
    for _ in 0..20 {
        svc.clone().oneshot(get()).await.unwrap();
    }
    let known = Instant::now();
    assert_eq!(known - t0, ms(200));
    let delay = stats.delay().expect("20 samples");
    assert!(delay < ms(12), "{delay:?}");
    let res = stuck.await.unwrap().unwrap();
    assert_eq!(
        res.body(),
        "call 21",
        "the hedge answered (calls count from 0)"
    );
    let calls = upstream.calls();
    assert_eq!(calls.len(), 22);
    assert_eq!(calls[21].at, known, "hedged as soon as the delay was known");
    assert_eq!(Instant::now(), known + ms(10));
    assert_eq!((stats.hedges(), stats.won()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_request_sent_before_the_delay_is_known_waits_for_its_own_delay() {
    let upstream = Upstream::new(ms(10), 200);
    let layer = percentile_layer(20);
    let stats = layer.stats();
    let svc = behind(&layer, &upstream);
    // Nineteen answers; then a slow request starts, and the twentieth answer (sent with it)
    // makes the delay known 10 ms later: the slow one is hedged at its own send + the delay.
    for _ in 0..19 {
        svc.clone().oneshot(get()).await.unwrap();
    }
    upstream.script([(Duration::from_secs(5), 200)]);
    let t0 = Instant::now();
    let slow = tokio::spawn(svc.clone().oneshot(get()));
    tokio::task::yield_now().await;
    svc.clone().oneshot(get()).await.unwrap();
    let delay = stats.delay().expect("20 samples");
    let res = slow.await.unwrap().unwrap();
    assert_eq!(res.body(), "call 21");
    let sent = upstream.calls()[21].at - t0;
    assert!(
        sent >= delay && sent < delay + ms(1),
        "hedged at its own send + the delay: {sent:?} for {delay:?}"
    );
    assert_eq!(stats.hedges(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_sent_before_the_delay_is_known_is_not_hedged_before_its_own_delay() {
    let upstream = Upstream::new(ms(10), 200);
    let layer = percentile_layer(20);
    let stats = layer.stats();
    let svc = behind(&layer, &upstream);
    // Twenty requests of 10 ms at once; 5 ms later one that hangs. The delay becomes known
    // (about 10 ms) when the twenty answer, at 10 ms: the stuck request, sent at 5 ms, is
    // hedged at its own send + the delay, about 15 ms, not at once.
    upstream.script(
        (0..20)
            .map(|_| (ms(10), 200))
            .chain([(Duration::from_secs(5), 200)]),
    );
    let t0 = Instant::now();
    let mut twenty = tokio::task::JoinSet::new();
    for _ in 0..20 {
        twenty.spawn(svc.clone().oneshot(get()));
    }
    tokio::time::sleep(ms(5)).await;
    let stuck = tokio::spawn(svc.clone().oneshot(get()));
    while let Some(res) = twenty.join_next().await {
        res.unwrap().unwrap();
    }
    assert_eq!(Instant::now() - t0, ms(10));
    let delay = stats.delay().expect("20 samples");
    assert!(delay > ms(8), "{delay:?}");
    let res = stuck.await.unwrap().unwrap();
    assert_eq!(res.body(), "call 21", "the hedge answered");
    let calls = upstream.calls();
    let sent = calls[21].at - calls[20].at;
    assert!(
        sent >= delay && sent < delay + ms(1),
        "hedged at its own send + the delay: {sent:?} for {delay:?}"
    );
    assert_eq!(stats.hedges(), 1);
}
