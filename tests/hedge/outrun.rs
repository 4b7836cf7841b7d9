//! What the balancer learns from an attempt a hedge outran: not a failure, but a miss (an
//! attempt that gave the caller no answer) and a lower bound of its endpoint's latency, so that
//! hedging does not make a slow endpoint look idle and draw more first attempts to it.

use super::support::{Upstream, fixed, get, ms};
use http_body_util::BodyExt;
use meshless::balance::{Balance, EndpointStats};
use meshless::budget::Budget;
use std::time::Duration;
use tower::{Layer, ServiceExt, service_fn};

/// A balance of a slow endpoint `a` and a fast one `b` whose tiny weight makes it look dear, so
/// that every first attempt goes to `a` and every hedge (which avoids `a`) to `b`.
fn balance(slow: &Upstream, fast: &Upstream) -> Balance<&'static str, ReqSvc> {
    let balance = Balance::builder().metrics(false).default_rtt(ms(1)).build();
    let (slow, fast) = (slow.clone(), fast.clone());
    balance.insert_weighted("a", boxed(slow), 1.0);
    balance.insert_weighted("b", boxed(fast), 1e-6);
    balance
}

type Req = http::Request<meshless::retry::ReplayBody<String>>;
type ReqSvc = tower::util::BoxCloneSyncService<Req, http::Response<String>, tower::BoxError>;

fn boxed(upstream: Upstream) -> ReqSvc {
    tower::util::BoxCloneSyncService::new(service_fn(move |req: Req| upstream.clone().call(req)))
}

async fn body<B: http_body::Body>(res: http::Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn stats(balance: &Balance<&'static str, ReqSvc>, key: &str) -> EndpointStats<&'static str> {
    balance
        .endpoints()
        .into_iter()
        .find(|e| e.key == key)
        .expect("the endpoint")
}

#[tokio::test(start_paused = true)]
async fn an_outrun_attempt_raises_its_endpoint_estimate_to_what_it_waited() {
    let (slow, fast) = (
        Upstream::new(Duration::from_secs(5), 200),
        Upstream::new(ms(1), 200),
    );
    let balance = balance(&slow, &fast);
    let svc = fixed(Budget::default(), ms(20), 1, 1.0).layer(balance.clone());
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(
        body(res).await,
        "call 0",
        "the fast endpoint's first call: the hedge"
    );
    let a = stats(&balance, "a");
    assert_eq!((a.failures, a.cancelled, a.in_flight), (0, 1, 0));
    // 1 ms before; the attempt waited 21 ms before the hedge's answer outran it.
    assert!(a.rtt >= ms(20), "{a:?}");
}

/// An outrun attempt is a miss: its endpoint's cost is divided by the share of its attempts
/// that answered, so each outrun makes it dearer, by a bounded step, and the misses fade
/// within seconds.
#[tokio::test(start_paused = true)]
async fn an_outrun_attempt_is_a_miss_that_makes_its_endpoint_dearer() {
    let (slow, fast) = (Upstream::new(ms(100), 200), Upstream::new(ms(1), 200));
    let balance = balance(&slow, &fast);
    // One answer teaches the balancer that `a` takes 100 ms.
    let res = balance.clone().oneshot(get()).await.unwrap();
    assert_eq!(body(res).await, "call 0");
    let before = stats(&balance, "a").rtt;
    assert!(before >= ms(99), "{before:?}");
    // The next request to `a` is outrun after 11 ms: a quarter of a miss (the default
    // weight), so `a` costs 100 ms / 0.75.
    let svc = fixed(Budget::default(), ms(10), 1, 1.0).layer(balance.clone());
    svc.oneshot(get()).await.unwrap();
    let a = stats(&balance, "a");
    assert_eq!((a.failures, a.cancelled, a.requests), (0, 1, 1));
    assert!(a.rtt >= before * 4 / 3 - ms(1), "{before:?} then {a:?}");
    // Outrun again: dearer still (100 ms / 0.5625), but never a failure.
    let svc = fixed(Budget::default(), ms(10), 1, 1.0).layer(balance.clone());
    svc.oneshot(get()).await.unwrap();
    let again = stats(&balance, "a");
    assert_eq!((again.failures, again.cancelled), (0, 2));
    assert!(again.rtt > a.rtt + ms(30), "{a:?} then {again:?}");
    assert!(again.rtt < before * 2, "{before:?} then {again:?}");
    // The misses fade within seconds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = stats(&balance, "a").rtt;
    assert!(later < before, "{later:?}");
}

#[tokio::test(start_paused = true)]
async fn a_hedge_that_loses_to_the_first_attempt_teaches_nothing() {
    // The first attempt (to `a`) answers at 15 ms; the hedge, sent to `b` at 10 ms, would have
    // answered at 30 ms. Cancelled 5 ms in, it says nothing of `b`: it started a delay late.
    let (first, hedge) = (Upstream::new(ms(15), 200), Upstream::new(ms(20), 200));
    let balance = balance(&first, &hedge);
    let svc = fixed(Budget::default(), ms(10), 1, 1.0).layer(balance.clone());
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(body(res).await, "call 0");
    assert_eq!(hedge.count(), 1, "the hedge was sent");
    let b = stats(&balance, "b");
    assert_eq!((b.failures, b.cancelled, b.in_flight), (0, 1, 0));
    assert!(b.rtt < ms(2), "unchanged from its 1 ms default: {b:?}");
}
