//! The adaptive limits: the gradient limit falls when latency grows with concurrency and only
//! then; AIMD's steps; which outcomes give samples.

use super::*;
use meshless::error::Kind;
use meshless::limit::{AimdConfig, Algorithm, GradientConfig};
use std::sync::atomic::{AtomicBool, AtomicU64};

const MS: Duration = Duration::from_millis(1);

fn gradient(edit: impl FnOnce(&mut GradientConfig)) -> LimitLayer {
    let mut config = GradientConfig::default();
    edit(&mut config);
    LimitLayer::new(Algorithm::Gradient(config))
}

fn stop(tasks: Vec<tokio::task::JoinHandle<()>>) {
    tasks.iter().for_each(|t| t.abort());
}

/// The limit every `step` for `steps` steps.
async fn watch(handle: &LimitHandle, step: Duration, steps: usize) -> Vec<u32> {
    let mut seen = Vec::with_capacity(steps);
    for _ in 0..steps {
        tokio::time::sleep(step).await;
        seen.push(handle.limit());
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn a_flat_latency_lets_the_gradient_limit_grow_to_its_max() {
    let upstream = Upstream::flat(20 * MS);
    let (svc, handle) = limited(LimitLayer::adaptive(), &upstream);
    assert_eq!(handle.limit(), 20);
    let tasks = load(&svc, 220, 5 * MS);
    let seen = watch(&handle, Duration::from_secs(1), 20).await;
    stop(tasks);
    assert_eq!(handle.limit(), 200, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "never cut: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn latency_that_grows_with_concurrency_makes_the_gradient_limit_fall() {
    // Up to 20 requests are served at once; beyond, they queue: latency = base × in flight / 20.
    let queueing = Arc::new(AtomicBool::new(false));
    let q = queueing.clone();
    let upstream = Upstream::new(move |serving, _| {
        if q.load(Ordering::Relaxed) {
            10 * MS * serving.max(20) / 20
        } else {
            10 * MS
        }
    });
    let (svc, handle) = limited(LimitLayer::adaptive(), &upstream);
    let tasks = load(&svc, 220, 5 * MS);
    watch(&handle, Duration::from_secs(1), 15).await;
    assert_eq!(handle.limit(), 200, "grows while the latency is flat");

    queueing.store(true, Ordering::Relaxed);
    let seen = watch(&handle, Duration::from_secs(1), 5).await;
    let peak = upstream.serving.load(Ordering::Relaxed);
    stop(tasks);
    assert!(
        handle.limit() < 60,
        "the limit falls toward the capacity: {seen:?}"
    );
    assert!(handle.limit() >= 20, "never below min: {seen:?}");
    assert!(peak <= 60, "the upstream sees the lower limit: {peak}");
}

#[tokio::test(start_paused = true)]
async fn a_single_slow_request_does_not_cut_the_gradient_limit() {
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let upstream = Upstream::new(move |_, _| {
        // The 5000th request takes a thousand times as long as the others.
        if c.fetch_add(1, Ordering::Relaxed) == 5000 {
            Duration::from_secs(10)
        } else {
            10 * MS
        }
    });
    let layer = gradient(|g| g.max = 40);
    let (svc, handle) = limited(layer, &upstream);
    let tasks = load(&svc, 45, 5 * MS);
    let seen = watch(&handle, 100 * MS, 150).await;
    stop(tasks);
    assert!(
        calls.load(Ordering::Relaxed) > 5000,
        "the slow one was sent"
    );
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "never cut: {seen:?}");
    assert_eq!(handle.limit(), 40);
}

/// A log-normal factor (median 1, σ = 0.5) drawn from `id`: the same for the same id.
fn log_normal(id: u64) -> f64 {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let (u1, u2) = (uniform(), uniform());
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (0.5 * z).exp()
}

#[tokio::test(start_paused = true)]
async fn a_slower_upstream_that_is_not_saturated_keeps_its_limit() {
    // Log-normal latencies around 10 ms, then three times slower for good: not queueing we
    // cause (the limit is never half used), so the limit must not fall, and once the load
    // grows it must grow from the new latency rather than be cut against the old one.
    let slower = Arc::new(AtomicBool::new(false));
    let s = slower.clone();
    let calls = Arc::new(AtomicU64::new(0));
    let upstream = Upstream::new(move |_, _| {
        let base = if s.load(Ordering::Relaxed) {
            30.0
        } else {
            10.0
        };
        let id = calls.fetch_add(1, Ordering::Relaxed);
        Duration::from_secs_f64(base * log_normal(id) / 1000.0)
    });
    let (svc, handle) = limited(LimitLayer::adaptive(), &upstream);
    let light = load(&svc, 6, 5 * MS);
    let mut seen = watch(&handle, Duration::from_secs(1), 5).await;
    slower.store(true, Ordering::Relaxed);
    seen.extend(watch(&handle, Duration::from_secs(1), 5).await);
    assert!(
        seen.iter().all(|l| *l == 20),
        "unsaturated: untouched {seen:?}"
    );

    let heavier = load(&svc, 9, 5 * MS);
    seen.extend(watch(&handle, Duration::from_secs(1), 10).await);
    stop(light);
    stop(heavier);
    assert!(seen.iter().all(|l| *l >= 20), "{seen:?}");
    // It grows at once from the new latency (to twice the 15 in flight, where Netflix's
    // app-limited rule stops it) rather than being held down against the old one.
    assert_eq!(seen[11], 30, "grows within 2 s of the load: {seen:?}");
    assert_eq!(handle.limit(), 30, "{seen:?}");
    assert_eq!(handle.rejected(), 0, "{seen:?}");
}

fn aimd(initial: u32, min: u32, max: u32) -> LimitLayer {
    let mut config = AimdConfig::default();
    (config.initial, config.min, config.max) = (initial, min, max);
    LimitLayer::new(Algorithm::Aimd(config))
}

#[tokio::test(start_paused = true)]
async fn aimd_cuts_by_a_tenth_on_a_drop_and_adds_one_on_a_success() {
    let upstream = Upstream::flat(10 * MS);
    let (mut svc, handle) = limited(aimd(20, 1, 200), &upstream);
    let status = |s| Ask {
        status: Some(s),
        ..Ask::default()
    };
    let error = |k| Ask {
        error: Some(k),
        ..Ask::default()
    };
    let mut limits = Vec::new();
    for ask in [
        status(StatusCode::SERVICE_UNAVAILABLE),
        status(StatusCode::TOO_MANY_REQUESTS),
        error(Kind::AttemptTimedOut),
        error(Kind::DeadlineExceeded),
    ] {
        let _ = fetch(&mut svc, ask).await;
        limits.push(handle.limit());
    }
    assert_eq!(limits, vec![18, 16, 14, 12], "× 0.9 per drop");

    // No sample: a failure that is not a drop, a refusal by a layer inside, a cancellation.
    let _ = fetch(&mut svc, status(StatusCode::INTERNAL_SERVER_ERROR)).await;
    let _ = fetch(&mut svc, error(Kind::CircuitOpen)).await;
    let _ = fetch(&mut svc, error(Kind::Throttled)).await;
    let cancelled = svc.ready().await.unwrap().call(request(Ask::default()));
    tokio::time::sleep(5 * MS).await;
    drop(cancelled);
    assert_eq!(handle.limit(), 12);

    // A success with at least half the limit in use: + 1 (once: the others find less in use).
    let batch: Vec<_> = (0..6)
        .map(|_| spawn_fetch(svc.clone(), Ask::default()))
        .collect();
    for task in batch {
        task.await.unwrap().unwrap();
    }
    assert_eq!(handle.limit(), 13);
    // One alone uses less than half: no change (the upstream was not what held it back).
    fetch(&mut svc, Ask::default()).await.unwrap();
    assert_eq!(handle.limit(), 13);
}

#[tokio::test(start_paused = true)]
async fn aimd_stays_within_min_and_max_and_counts_a_slow_success_as_a_drop() {
    let upstream = Upstream::new(|_, id| {
        if id == 9 {
            Duration::from_secs(6)
        } else {
            10 * MS
        }
    });
    let (mut svc, handle) = limited(aimd(2, 2, 3), &upstream);
    let drop503 = Ask {
        status: Some(StatusCode::SERVICE_UNAVAILABLE),
        ..Ask::default()
    };
    fetch(&mut svc, drop503).await.unwrap();
    assert_eq!(handle.limit(), 2, "min");
    fetch(&mut svc, Ask::default()).await.unwrap();
    assert_eq!(handle.limit(), 3);
    let pair = [
        spawn_fetch(svc.clone(), Ask::default()),
        spawn_fetch(svc.clone(), Ask::default()),
    ];
    for task in pair {
        task.await.unwrap().unwrap();
    }
    assert_eq!(handle.limit(), 3, "max");
    fetch(
        &mut svc,
        Ask {
            id: 9,
            ..Ask::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(handle.limit(), 2, "slower than the 5 s timeout: a drop");
}
