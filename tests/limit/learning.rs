//! An adaptive limit that is still learning (the gradient's slow start, AIMD before its first
//! drop) holds a guess, not a finding: a request over it waits for a permit (never past its
//! deadline, at most a second without one) instead of being refused. Once the limit has seen
//! the upstream drop, excess is refused at once again.

use super::*;
use meshless::deadline::RequestDeadline;
use meshless::error::Kind;
use meshless::limit::{AimdConfig, Algorithm};

const MS: Duration = Duration::from_millis(1);

/// `n` requests sent at once; their outcomes, in order.
async fn burst(svc: &Svc, n: usize) -> Vec<Result<StatusCode, Error>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| spawn_fetch(svc.clone(), Ask::default()))
        .collect();
    let mut outcomes = Vec::with_capacity(n);
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

fn refused(outcomes: &[Result<StatusCode, Error>]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, Err(e) if e.kind() == Kind::ConcurrencyLimited))
        .count()
}

fn aimd(initial: u32) -> LimitLayer {
    let mut config = AimdConfig::default();
    config.initial = initial;
    LimitLayer::new(Algorithm::Aimd(config))
}

async fn one_drop(svc: &mut Svc) {
    let drop503 = Ask {
        status: Some(StatusCode::SERVICE_UNAVAILABLE),
        ..Ask::default()
    };
    fetch(svc, drop503).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_burst_over_a_gradient_limit_in_slow_start_waits_and_is_served() {
    let upstream = Upstream::flat(10 * MS);
    let (svc, handle) = limited(LimitLayer::adaptive(), &upstream);
    assert_eq!(handle.limit(), 20);
    let started = Instant::now();
    let outcomes = burst(&svc, 50).await;
    assert!(
        outcomes.iter().all(|o| matches!(o, Ok(StatusCode::OK))),
        "{outcomes:?}"
    );
    assert_eq!(handle.rejected(), 0);
    assert!(handle.limit() > 20, "grew while used: {}", handle.limit());
    // 20 at first, then the permits they free (and the limit's growth) take the rest.
    assert!(started.elapsed() >= 20 * MS, "{:?}", started.elapsed());
    assert!(started.elapsed() <= 30 * MS, "{:?}", started.elapsed());
}

#[tokio::test(start_paused = true)]
async fn after_a_drop_the_gradient_limit_refuses_excess_at_once() {
    let upstream = Upstream::flat(10 * MS);
    let (mut svc, handle) = limited(LimitLayer::adaptive(), &upstream);
    one_drop(&mut svc).await;
    let limit = handle.limit() as usize;
    let started = Instant::now();
    let tasks: Vec<_> = (0..limit + 10)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                let outcome = fetch(&mut svc, Ask::default()).await;
                (outcome, started.elapsed())
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let at_once: Vec<_> = outcomes
        .iter()
        .filter(|(o, _)| matches!(o, Err(e) if e.kind() == Kind::ConcurrencyLimited))
        .map(|(_, t)| *t)
        .collect();
    assert!(at_once.len() >= 10, "{outcomes:?}");
    assert!(at_once.iter().all(|t| t.is_zero()), "{at_once:?}");
}

#[tokio::test(start_paused = true)]
async fn aimd_lets_a_burst_wait_until_its_first_drop_then_refuses_excess() {
    let upstream = Upstream::flat(10 * MS);
    let (mut svc, handle) = limited(aimd(20), &upstream);
    let outcomes = burst(&svc, 50).await;
    assert_eq!(refused(&outcomes), 0, "{outcomes:?}");
    assert!(handle.limit() > 20, "{}", handle.limit());

    one_drop(&mut svc).await;
    let limit = handle.limit() as usize;
    let outcomes = burst(&svc, limit + 10).await;
    assert!(refused(&outcomes) >= 10, "{outcomes:?}");
}

#[tokio::test(start_paused = true)]
async fn a_learning_wait_ends_at_the_deadline_or_after_a_second() {
    // The upstream never answers: the first 20 hold every permit.
    let upstream = Upstream::flat(Duration::from_secs(3600));
    let (svc, handle) = limited(LimitLayer::adaptive(), &upstream);
    let _holders: Vec<_> = (0..20)
        .map(|_| spawn_fetch(svc.clone(), Ask::default()))
        .collect();
    tokio::time::sleep(MS).await;
    assert_eq!(handle.in_flight(), 20);

    let started = Instant::now();
    let mut plain = svc.clone();
    let waited = fetch(&mut plain, Ask::default()).await;
    assert!(
        matches!(&waited, Err(e) if e.kind() == Kind::ConcurrencyLimited),
        "{waited:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(1));

    let started = Instant::now();
    let mut req = request(Ask::default());
    req.extensions_mut()
        .insert(RequestDeadline(started + 300 * MS));
    let mut with_deadline = svc.clone();
    let waited = with_deadline.ready().await.unwrap().call(req).await;
    assert!(waited.is_err(), "no permit came");
    assert!(
        started.elapsed() <= 300 * MS,
        "never past the deadline: {:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn successes_that_come_late_end_the_wait_and_turn_the_waiters_away() {
    // Latency grows with the requests served at once: a queue at the upstream.
    let upstream = Upstream::new(|serving, _| MS * serving);
    let (svc, handle) = limited(LimitLayer::adaptive(), &upstream);
    let started = Instant::now();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                let outcome = fetch(&mut svc, Ask::default()).await;
                (outcome, started.elapsed())
            })
        })
        .collect();
    let mut first_refusal = None::<Duration>;
    let mut served = 0;
    for task in tasks {
        match task.await.unwrap() {
            (Ok(_), _) => served += 1,
            (Err(e), at) => {
                assert_eq!(e.kind(), Kind::ConcurrencyLimited, "{e}");
                first_refusal = Some(first_refusal.map_or(at, |f| f.min(at)));
            }
        }
    }
    assert!(served >= 20, "{served} served");
    // A run of late successes ends the wait within a round trip or two, long before slow
    // start's two 100 ms windows would.
    let first = first_refusal.expect("waiters were turned away");
    assert!(first < 100 * MS, "first refusal at {first:?}");
    assert_eq!(handle.waiting(), 0, "nobody is left waiting");
}
