//! Retry budget operations: meshless [`Budget`] against tower's `TpsBudget`, side by side.
//!
//! Measures, per operation:
//!
//! - `deposit` and `withdraw` uncontended, on one thread; withdraw both when it is *granted*
//!   (a budget with a huge reserve) and when it is *refused* (ratio 0, no reserve);
//! - `deposit` + `withdraw` contended: two threads hammering one shared budget (measured with
//!   `iter_custom`, the time per iteration being the wall time of both threads divided by the
//!   iterations each made).
//!
//! Both budgets use the same settings: ttl 10 s, 10 retries/s, 20% (a huge per-second reserve
//! where a withdrawal must be granted). meshless counts at most 2^24 - 1 deposits and as many
//! withdrawals per bucket (a tenth of the ttl); at benchmark rates one budget would reach that
//! within a second and then measure only its "full bucket" early return, so every measurement
//! moves to a fresh budget each [`CHUNK`] operations, outside the timed region. tower's budget
//! is measured the same way.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use meshless::budget::Budget;
use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};
use tower::retry::budget::{Budget as _, TpsBudget};

/// Operations on one budget before the next measurement moves to a fresh one: well under
/// meshless's 2^24 - 1 per bucket, and under the granted reserve below.
const CHUNK: u64 = 1_000_000;

const TTL: Duration = Duration::from_secs(10);
const MIN_PER_SECOND: u32 = 10;
const RATIO: f32 = 0.2;
/// A reserve of 10 × 1e6 retries: every withdrawal of a chunk is granted.
const HUGE_MIN_PER_SECOND: u32 = 1_000_000;

fn meshless_budget(min_per_second: u32, ratio: f32) -> Budget {
    Budget::builder()
        .ttl(TTL)
        .min_per_second(f64::from(min_per_second))
        .ratio(f64::from(ratio))
        .build()
        .expect("valid budget settings")
}

fn tower_budget(min_per_second: u32, ratio: f32) -> TpsBudget {
    TpsBudget::new(TTL, min_per_second, ratio)
}

/// Times `iters` calls of `op`, on a fresh budget from `make` every [`CHUNK`] calls.
fn time_chunked<T>(iters: u64, make: impl Fn() -> T, op: impl Fn(&T)) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let budget = make();
        let start = Instant::now();
        for _ in 0..n {
            op(black_box(&budget));
        }
        total += start.elapsed();
        drop(budget);
        left -= n;
    }
    total
}

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("budget");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50);

    group.bench_function(BenchmarkId::new("deposit", "meshless"), |b| {
        b.iter_custom(|iters| {
            time_chunked(
                iters,
                || meshless_budget(MIN_PER_SECOND, RATIO),
                Budget::deposit,
            )
        })
    });
    group.bench_function(BenchmarkId::new("deposit", "tower"), |b| {
        b.iter_custom(|iters| {
            time_chunked(
                iters,
                || tower_budget(MIN_PER_SECOND, RATIO),
                TpsBudget::deposit,
            )
        })
    });

    group.bench_function(BenchmarkId::new("withdraw_granted", "meshless"), |b| {
        b.iter_custom(|iters| {
            time_chunked(
                iters,
                || meshless_budget(HUGE_MIN_PER_SECOND, RATIO),
                |budget| assert!(black_box(budget.try_withdraw())),
            )
        })
    });
    group.bench_function(BenchmarkId::new("withdraw_granted", "tower"), |b| {
        b.iter_custom(|iters| {
            time_chunked(
                iters,
                || tower_budget(HUGE_MIN_PER_SECOND, RATIO),
                |budget| assert!(black_box(budget.withdraw())),
            )
        })
    });

    group.bench_function(BenchmarkId::new("withdraw_refused", "meshless"), |b| {
        b.iter_custom(|iters| {
            time_chunked(
                iters,
                || meshless_budget(0, 0.0),
                |budget| assert!(!black_box(budget.try_withdraw())),
            )
        })
    });
    group.bench_function(BenchmarkId::new("withdraw_refused", "tower"), |b| {
        b.iter_custom(|iters| {
            time_chunked(
                iters,
                || tower_budget(0, 0.0),
                |budget| assert!(!black_box(budget.withdraw())),
            )
        })
    });

    group.finish();
}

/// Two threads each make `iters` deposit + withdraw pairs on one shared budget (a fresh one
/// every [`CHUNK`] pairs); returns the wall time, from the release of both threads to the end
/// of the slower one.
fn time_contended<T: Sync>(
    iters: u64,
    make: impl Fn() -> T,
    deposit: impl Fn(&T) + Sync,
    withdraw: impl Fn(&T) -> bool + Sync,
) -> Duration {
    const THREADS: usize = 2;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let budget = make();
        let barrier = Barrier::new(THREADS);
        let wall = thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        let start = Instant::now();
                        for _ in 0..n {
                            deposit(black_box(&budget));
                            assert!(black_box(withdraw(black_box(&budget))));
                        }
                        (start, Instant::now())
                    })
                })
                .collect();
            let spans: Vec<(Instant, Instant)> = workers
                .into_iter()
                .map(|w| w.join().expect("worker thread"))
                .collect();
            let first = spans.iter().map(|s| s.0).min().expect("two workers");
            let last = spans.iter().map(|s| s.1).max().expect("two workers");
            last - first
        });
        total += wall;
        left -= n;
    }
    total
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("budget_contended_2_threads");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50);

    group.bench_function(BenchmarkId::new("deposit+withdraw", "meshless"), |b| {
        b.iter_custom(|iters| {
            time_contended(
                iters,
                || meshless_budget(HUGE_MIN_PER_SECOND, RATIO),
                Budget::deposit,
                Budget::try_withdraw,
            )
        })
    });
    group.bench_function(BenchmarkId::new("deposit+withdraw", "tower"), |b| {
        b.iter_custom(|iters| {
            time_contended(
                iters,
                || tower_budget(HUGE_MIN_PER_SECOND, RATIO),
                TpsBudget::deposit,
                TpsBudget::withdraw,
            )
        })
    });

    group.finish();
}

criterion_group!(benches, uncontended, contended);
criterion_main!(benches);
