//! Open, half-open and the ramp: the refusal, the probes, the break ladder, cancellation.

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn open_refuses_with_a_typed_error_until_the_break_ends() {
    let upstream = Upstream::new();
    let (svc, handle) = breaker(&config(), &upstream);
    tokio::time::advance(5 * MS).await;
    let tripped = Instant::now();
    trip(&svc, &upstream, &handle).await;
    let received = upstream.received();
    tokio::time::advance(999 * MS).await;
    let err = call(&svc).await.unwrap_err();
    let why = rejected(&err);
    assert_eq!(why.state, BreakerState::Open);
    assert_eq!(why.reason, TripReason::FailureRate);
    assert!(!why.ramping);
    assert_eq!(why.until, Some(tripped + S), "the default break: 1 s");
    assert!(
        err.source().unwrap().to_string().contains("open"),
        "{err:?}"
    );
    assert_eq!(upstream.received(), received);
    tokio::time::advance(MS).await;
    assert!(call(&svc).await.is_ok(), "a probe once the break is over");
    assert_eq!(upstream.received(), received + 1);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_n_probes_at_once() {
    let upstream = Upstream::new();
    let (svc, handle) = breaker(&config(), &upstream);
    trip(&svc, &upstream, &handle).await;
    upstream.status(200);
    upstream.latency(100 * MS);
    tokio::time::advance(S).await;
    let received = upstream.received();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(svc.oneshot(Request::new(())))
        })
        .collect();
    let mut refused = Vec::new();
    let mut answered = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => answered += 1,
            Err(err) => refused.push(rejected(&err)),
        }
    }
    assert_eq!(answered, 3, "the default: 3 probes");
    assert_eq!(upstream.received() - received, 3);
    assert_eq!(refused.len(), 7);
    assert!(
        refused
            .iter()
            .all(|r| r.state == BreakerState::HalfOpen && !r.ramping && r.until.is_none())
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_with_a_longer_break() {
    let upstream = Upstream::new();
    let (svc, handle) = breaker(&config(), &upstream);
    trip(&svc, &upstream, &handle).await;
    // Doubling, up to the longest break (2 s by default).
    for expected in [2, 2, 2] {
        let err = call(&svc).await.unwrap_err();
        let until = rejected(&err).until.unwrap();
        tokio::time::advance(until - Instant::now()).await;
        // The probe fails: open again, for longer.
        assert_eq!(call(&svc).await.unwrap().status(), 503);
        let err = call(&svc).await.unwrap_err();
        let why = rejected(&err);
        assert_eq!(why.state, BreakerState::Open);
        assert_eq!(why.reason, TripReason::ProbeFailed);
        assert_eq!(why.until, Some(Instant::now() + expected * S));
    }
    assert_eq!(handle.stats().trips, 4);
}

#[tokio::test(start_paused = true)]
async fn successful_probes_ramp_traffic_back_to_full() {
    let upstream = Upstream::new();
    let (svc, handle) = breaker(&config(), &upstream);
    trip(&svc, &upstream, &handle).await;
    upstream.status(200);
    tokio::time::advance(S).await;
    assert_eq!(calls(&svc, 3).await, 0, "three probes, one after the other");
    assert_eq!(handle.state(), BreakerState::HalfOpen);
    let ramp_start = Instant::now();
    // Each tenth of the ramp (1 s by default), 100 requests: the admitted share rises from
    // 10% to all.
    let mut admitted = Vec::new();
    for _ in 0..10 {
        let refused = calls(&svc, 100).await;
        admitted.push(100 - refused);
        tokio::time::advance(100 * MS).await;
    }
    assert_eq!(admitted[0], 10, "{admitted:?}");
    assert!(admitted.windows(2).all(|w| w[0] < w[1]), "{admitted:?}");
    assert_eq!(Instant::now(), ramp_start + S);
    assert_eq!(
        calls(&svc, 100).await,
        0,
        "all traffic at the end of the ramp"
    );
    assert_eq!(handle.state(), BreakerState::Closed);
    // A refusal during the ramp says so.
    let (svc, handle) = breaker(&config(), &upstream);
    trip(&svc, &upstream, &handle).await;
    upstream.status(200);
    tokio::time::advance(S).await;
    calls(&svc, 3).await;
    let mut why = None;
    for _ in 0..10 {
        if let Err(err) = call(&svc).await {
            why = Some(rejected(&err));
        }
    }
    let why = why.expect("90% refused at first");
    assert!(why.ramping);
    assert_eq!(why.state, BreakerState::HalfOpen);
    assert_eq!(why.until, Some(Instant::now() + S));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_frees_its_slot_and_counts_nothing() {
    let upstream = Upstream::new();
    let (mut svc, handle) = breaker(&config(), &upstream);
    trip(&svc, &upstream, &handle).await;
    upstream.status(200);
    upstream.latency(Duration::from_secs(3600));
    tokio::time::advance(S).await;
    let mut probes = Vec::new();
    for _ in 0..3 {
        svc.ready().await.unwrap();
        probes.push(svc.call(Request::new(())));
    }
    let err = call(&svc).await.unwrap_err();
    assert!(!rejected(&err).ramping, "every probe slot taken");
    drop(probes.pop());
    assert_eq!(handle.state(), BreakerState::HalfOpen, "counted nothing");
    // The freed slot goes to the next request: it reaches the (hanging) upstream.
    let received = upstream.received();
    let next = tokio::time::timeout(10 * MS, call(&svc)).await;
    assert!(next.is_err(), "admitted, so still waiting: {next:?}");
    assert_eq!(upstream.received(), received + 1);
    assert_eq!(handle.stats().trips, 1);
}

#[tokio::test(start_paused = true)]
async fn lost_probes_reopen_after_the_probe_timeout() {
    let upstream = Upstream::new();
    let mut short = config();
    short.probe_timeout = 5 * S;
    let (mut svc, handle) = breaker(&short, &upstream);
    trip(&svc, &upstream, &handle).await;
    upstream.latency(Duration::from_secs(3600));
    tokio::time::advance(S).await;
    let mut probes = Vec::new();
    for _ in 0..3 {
        svc.ready().await.unwrap();
        probes.push(svc.call(Request::new(())));
    }
    tokio::time::advance(5 * S).await;
    let err = call(&svc).await.unwrap_err();
    let why = rejected(&err);
    assert_eq!(
        (why.state, why.reason),
        (BreakerState::Open, TripReason::ProbeTimedOut)
    );
    assert_eq!(why.until, Some(Instant::now() + 2 * S));
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_refuses_without_waiting_for_the_inner_service() {
    let (mock, mut upstream) = tower_test::mock::pair::<Request<()>, Response<()>>();
    let layer = BreakerLayer::from_config(&config()).unwrap().metrics(false);
    let handle = layer.handle();
    let mut svc = layer.layer(mock);
    upstream.allow(20);
    for _ in 0..20 {
        svc.ready().await.unwrap();
        let answer = svc.call(Request::new(()));
        let (_, respond) = upstream.next_request().await.unwrap();
        respond.send_response(Response::builder().status(503).body(()).unwrap());
        assert_eq!(answer.await.unwrap().status(), 503);
    }
    assert_eq!(handle.state(), BreakerState::Open);
    // The inner service is not ready (a balancer waiting for an endpoint, say), yet the open
    // circuit answers at once.
    let ready = tokio::time::timeout(100 * MS, svc.ready()).await;
    let err = ready
        .expect("ready at once")
        .unwrap()
        .call(Request::new(()))
        .await;
    assert_eq!(rejected(&err.unwrap_err()).state, BreakerState::Open);
    // Isolated: the same.
    handle.isolate();
    let ready = tokio::time::timeout(100 * MS, svc.ready()).await;
    let err = ready
        .expect("ready at once")
        .unwrap()
        .call(Request::new(()))
        .await;
    assert_eq!(rejected(&err.unwrap_err()).state, BreakerState::Isolated);
    // Once a probe may go, it waits for the inner service like any request.
    handle.reset();
    let waiting = tokio::time::timeout(100 * MS, svc.ready()).await;
    assert!(waiting.is_err(), "closed: waits for the inner service");
    assert_eq!(handle.stats().rejected, 2);
}
