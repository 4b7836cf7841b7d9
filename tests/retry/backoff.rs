//! Backoff bounds between attempts.

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn backoff_full_jitter_waits_stay_under_the_exponential_ceiling() {
    const RETRIES: usize = 6;
    const REQUESTS: usize = 30;
    let ceilings = [25, 50, 100, 200, 250, 250];
    let budget = Budget::builder().min_per_second(100.0).build().unwrap();
    let layer = RetryLayer::new(budget)
        .max_retries(RETRIES as u32)
        .backoff(Backoff::full_jitter(ms(25), ms(250)).unwrap());
    let stats = layer.stats();
    let (inner, log) = mock::<String>(vec![reply(503)]);
    let mut svc = layer.layer(inner);

    let mut waits: Vec<Vec<Duration>> = Vec::new();
    for _ in 0..REQUESTS {
        let before = log.count();
        let started = Instant::now();
        let res = send(&mut svc, get("/items")).await.unwrap();
        assert_eq!(res.status(), 503);
        let arrivals = log.arrivals()[before..].to_vec();
        assert_eq!(arrivals.len(), RETRIES + 1);
        assert_eq!(
            arrivals[0],
            started - log.start,
            "the first attempt is not delayed"
        );
        let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
        for (n, (gap, ceiling)) in gaps.iter().zip(ceilings).enumerate() {
            assert!(
                *gap <= ms(ceiling),
                "wait before retry {} was {gap:?}, over min(250, 25·2^{n}) = {ceiling} ms",
                n + 1
            );
        }
        waits.push(gaps);
    }
    assert_eq!(stats.retries(), (REQUESTS * RETRIES) as u64);
    // The waits are jittered, not fixed at zero or at the ceiling: over 90 samples whose
    // ceiling is 200-250 ms, some fall in each half (failure odds ~2^-90 each way).
    let late: Vec<Duration> = waits.iter().flat_map(|g| g[3..].to_vec()).collect();
    assert!(late.iter().any(|w| *w < ms(100)), "{late:?}");
    assert!(late.iter().any(|w| *w > ms(125)), "{late:?}");
    let total: Duration = waits.iter().flatten().sum();
    assert!(total > Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn backoff_none_retries_at_the_same_instant() {
    let (inner, log) = mock::<String>(vec![reply(503), fail(io::ErrorKind::ConnectionReset)]);
    let start = Instant::now();
    let layer = RetryLayer::new(Budget::default())
        .max_retries(4)
        .backoff(Backoff::none());
    let err = send(&mut layer.layer(inner), get("/items"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::RetriesExhausted);
    assert_eq!(log.arrivals(), vec![Duration::ZERO; 5]);
    assert_eq!(Instant::now() - start, Duration::ZERO);
}
