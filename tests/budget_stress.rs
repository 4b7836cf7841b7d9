//! Concurrent stress tests of the retry budget.
//!
//! Many OS threads share one `Budget`. The budget promises that, within one `ttl`, the retries it
//! grants never exceed `ratio × deposits + min_per_second × ttl`. In integer units that bound is
//! exact, which these tests use both ways:
//!
//! - never more: each cycle ends with every thread withdrawing at once until the budget says no,
//!   with no deposit left to repay an overdraft, so a grant the budget could not afford (two
//!   threads spending the same last token) shows as a total over the bound;
//! - never less: after that drain the total granted must *equal* `floor(ratio × deposits +
//!   reserve)`, so a deposit lost under contention, or a token refused that was there, fails too.
//!
//! These run without a tokio runtime: `tokio::time::Instant` then reads the real clock. Each test
//! runs for about 1.5 s, so the window (buckets of `ttl / 10` = 1 s) rotates under contention at
//! least once; the exact bound assumes no deposit has left the 10 s window yet (after 9 s), which
//! is checked.

use meshless::budget::Budget;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

/// How long each test keeps cycling: long enough to cross a 1 s bucket boundary.
const RUN_FOR: Duration = Duration::from_millis(1_500);

/// The most cycles: at most 8 threads × 40 × (15 000 + 1 000) = 5.1M deposits in all, far below
/// the 2^24 deposits a bucket can count (it stops counting there), even on a fast machine.
const MAX_CYCLES: u32 = 40;

/// Rounds of the mixed phase, per thread and cycle.
const ROUNDS: u64 = 15_000;

/// Deposits each thread makes after the mixed phase, so that every drain races for a few
/// thousand tokens rather than the crumbs the mixed phase leaves.
const REFILL: u64 = 1_000;

/// What one thread does per round of the mixed phase.
#[derive(Clone, Copy)]
enum Role {
    /// One deposit, then one withdrawal attempt: withdrawals far outrun `ratio × deposits`.
    Mixed,
    /// One deposit, then `n` withdrawal attempts.
    Greedy(u32),
    /// Deposits only.
    Depositor,
    /// Withdrawal attempts only.
    Withdrawer,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    deposits: u64,
    /// Granted during the mixed phase.
    granted_mixed: u64,
    /// Granted during the drain that ends each cycle.
    granted_drain: u64,
    attempts: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.deposits += other.deposits;
        self.granted_mixed += other.granted_mixed;
        self.granted_drain += other.granted_drain;
        self.attempts += other.attempts;
    }
    fn granted(&self) -> u64 {
        self.granted_mixed + self.granted_drain
    }
}

/// One cycle: one thread per role runs `rounds` rounds of its role, all released together; behind
/// a barrier, each deposits `refill` times; behind another, every thread withdraws until the
/// budget refuses.
fn cycle(budget: &Budget, roles: &[Role], rounds: u64, refill: u64) -> Counts {
    let start = Barrier::new(roles.len());
    let refill_start = Barrier::new(roles.len());
    let drain = Barrier::new(roles.len());
    thread::scope(|s| {
        let handles: Vec<_> = roles
            .iter()
            .map(|&role| {
                let (start, refill_start, drain) = (&start, &refill_start, &drain);
                s.spawn(move || {
                    let mut c = Counts::default();
                    let withdraw = |c: &mut Counts, n: u32| {
                        for _ in 0..n {
                            c.attempts += 1;
                            if budget.try_withdraw() {
                                c.granted_mixed += 1;
                            }
                        }
                    };
                    start.wait();
                    for _ in 0..rounds {
                        match role {
                            Role::Mixed => {
                                budget.deposit();
                                c.deposits += 1;
                                withdraw(&mut c, 1);
                            }
                            Role::Greedy(n) => {
                                budget.deposit();
                                c.deposits += 1;
                                withdraw(&mut c, n);
                            }
                            Role::Depositor => {
                                budget.deposit();
                                c.deposits += 1;
                            }
                            Role::Withdrawer => withdraw(&mut c, 1),
                        }
                    }
                    refill_start.wait();
                    for _ in 0..refill {
                        budget.deposit();
                        c.deposits += 1;
                    }
                    drain.wait();
                    while budget.try_withdraw() {
                        c.granted_drain += 1;
                    }
                    c
                })
            })
            .collect();
        let mut total = Counts::default();
        for h in handles {
            total.add(h.join().unwrap());
        }
        total
    })
}

/// Cycles for about [`RUN_FOR`], checking after each cycle that the grants so far are exactly
/// `floor(ratio × deposits + reserve)`, with the ratio as `num / den` and the reserve in retries.
fn stress(budget: &Budget, roles: &[Role], (num, den): (u64, u64), reserve: u64) -> Counts {
    let began = Instant::now();
    let mut total = Counts::default();
    let mut cycles = 0;
    while cycles < MAX_CYCLES && (cycles < 2 || began.elapsed() < RUN_FOR) {
        total.add(cycle(budget, roles, ROUNDS, REFILL));
        cycles += 1;
        let elapsed = began.elapsed();
        assert!(
            elapsed < Duration::from_secs(9),
            "the run took {elapsed:?}: deposits may have left the 10 s window, so the exact \
             bound no longer applies (is the machine overloaded?)"
        );
        let bound_units = total.deposits * num + reserve * den;
        let bound = bound_units / den;
        let granted = total.granted();
        assert!(
            granted * den <= bound_units,
            "cycle {cycles}: overdrawn, {granted} granted > {bound} = floor({num}/{den} × {} + {reserve})",
            total.deposits
        );
        assert_eq!(
            granted, bound,
            "cycle {cycles}: {granted} granted of the {bound} the budget held (tokens lost)"
        );
        assert!(
            !budget.try_withdraw(),
            "cycle {cycles}: a token left after the drain"
        );
    }
    eprintln!(
        "{cycles} cycles in {:?}: {} deposits, {} withdrawal attempts, {} granted while mixed, {} in drains",
        began.elapsed(),
        total.deposits,
        total.attempts,
        total.granted_mixed,
        total.granted_drain
    );
    // The drains raced for their tokens: an overdraft there would have shown above.
    assert!(total.granted_drain >= u64::from(cycles) * roles.len() as u64 * REFILL * num / den / 2);
    total
}

#[test]
fn concurrent_budget_is_exact_ratio_0_3_min_1() {
    let budget = Budget::builder()
        .ttl(Duration::from_secs(10))
        .ratio(0.3)
        .min_per_second(1.0)
        .build()
        .unwrap();
    // 8 threads × 15k rounds × (deposit + withdrawal attempt): 240k operations per cycle.
    // granted × 10 ≤ deposits × 3 + 1.0/s × 10 s × 10.
    let total = stress(&budget, &[Role::Mixed; 8], (3, 10), 10);
    assert!(total.deposits >= 2 * 8 * (ROUNDS + REFILL));
    // The threads asking after every deposit got nearly all that the mixed phases earned while
    // racing, not only in the drains.
    let mixed_deposits = total.deposits - total.deposits / (ROUNDS + REFILL) * REFILL;
    let bound = (mixed_deposits * 3 + 100) / 10;
    assert!(
        total.granted_mixed * 100 >= bound * 95,
        "too strict while contended: {} of {bound}",
        total.granted_mixed
    );
}

#[test]
fn concurrent_budget_is_exact_ratio_0_2_min_10() {
    let budget = Budget::builder()
        .ttl(Duration::from_secs(10))
        .ratio(0.2)
        .min_per_second(10.0)
        .build()
        .unwrap();
    // Mixed, greedy and pure depositor/withdrawer threads.
    let roles = [
        Role::Mixed,
        Role::Mixed,
        Role::Greedy(3),
        Role::Greedy(3),
        Role::Depositor,
        Role::Depositor,
        Role::Withdrawer,
        Role::Withdrawer,
    ];
    // granted × 5 ≤ deposits + 10/s × 10 s × 5.
    let total = stress(&budget, &roles, (1, 5), 100);
    assert!(total.deposits >= 2 * 6 * ROUNDS);
}

#[test]
fn concurrent_budget_grants_only_the_reserve_without_deposits() {
    let budget = Budget::builder()
        .ttl(Duration::from_secs(10))
        .ratio(0.3)
        .min_per_second(1.0)
        .build()
        .unwrap();
    let total = cycle(&budget, &[Role::Withdrawer; 8], 20_000, 0);
    assert_eq!(total.deposits, 0);
    assert_eq!(total.granted(), 10, "exactly the reserve of 1/s × 10 s");
    assert!(!budget.try_withdraw());
}
