//! The budget's tests: exact ratios, the reserve, expiry, refunds, and a model of the window.

use super::*;
use proptest::prelude::*;

fn budget(ttl_ms: u64, min: f64, ratio: f64) -> Budget {
    Budget::builder()
        .ttl(Duration::from_millis(ttl_ms))
        .min_per_second(min)
        .ratio(ratio)
        .build()
        .unwrap()
}

fn grants(b: &Budget, at: Instant) -> u32 {
    let mut n = 0;
    while b.try_withdraw_at(at) {
        n += 1;
    }
    n
}

#[test]
fn fractional_ratios_are_exact() {
    for (ratio, deposits, expect) in [
        (0.3, 10, 3),
        (0.3, 100, 30),
        (0.2, 10, 2),
        (0.25, 7, 1),
        (1.5, 4, 6),
        (0.0, 50, 0),
    ] {
        let b = budget(10_000, 0.0, ratio);
        let now = b.inner.ledger.clock().origin();
        for _ in 0..deposits {
            b.deposit_at(now);
        }
        assert_eq!(
            grants(&b, now),
            expect,
            "ratio {ratio} over {deposits} deposits"
        );
    }
}

#[test]
fn reserve_is_min_per_second_times_ttl() {
    let b = budget(10_000, 10.0, 0.2);
    assert_eq!(grants(&b, b.inner.ledger.clock().origin()), 100);
    let b = budget(1_000, 2.5, 0.2);
    assert_eq!(grants(&b, b.inner.ledger.clock().origin()), 2);
}

#[test]
fn deposits_expire_after_ttl_and_withdrawals_are_refunded() {
    let b = budget(1_000, 0.0, 1.0);
    let t0 = b.inner.ledger.clock().origin();
    for _ in 0..5 {
        b.deposit_at(t0);
    }
    assert_eq!(grants(&b, t0 + Duration::from_millis(500)), 5);
    // At 0.95 s the deposits (bucket 0) still count, and so do the withdrawals (bucket 5).
    assert_eq!(grants(&b, t0 + Duration::from_millis(950)), 0);
    // At 1.0 s bucket 0 left the window: deposits gone, withdrawals still count.
    assert_eq!(b.balance_at(t0 + Duration::from_millis(1_000)), -5.0);
    // At 1.5 s the withdrawals left too.
    assert_eq!(b.balance_at(t0 + Duration::from_millis(1_500)), 0.0);
}

#[test]
fn invalid_settings_are_rejected() {
    let bad = [
        Budget::builder().ttl(Duration::from_millis(10)).build(),
        Budget::builder().ratio(f64::NAN).build(),
        Budget::builder().ratio(-0.1).build(),
        Budget::builder().ratio(101.0).build(),
        Budget::builder().min_per_second(-1.0).build(),
        Budget::builder().min_per_second(f64::INFINITY).build(),
        Budget::builder().min_per_second(1e12).build(),
    ];
    for result in bad {
        assert!(result.is_err());
    }
}

#[test]
fn a_ttl_past_an_hour_counts_as_an_hour() {
    for ttl in [Duration::from_secs(7200), Duration::MAX] {
        let b = Budget::builder()
            .ttl(ttl)
            .min_per_second(0.0)
            .ratio(1.0)
            .build()
            .unwrap();
        assert_eq!(b.ttl(), MAX_TTL);
        let t0 = b.inner.ledger.clock().origin();
        b.deposit_at(t0);
        assert_eq!(b.balance_at(t0 + MAX_TTL - Duration::from_secs(1)), 1.0);
        assert_eq!(b.balance_at(t0 + MAX_TTL), 0.0);
    }
}

impl Budget {
    fn balance_at(&self, now: Instant) -> f64 {
        let ledger = &self.inner.ledger;
        ledger.balance_at(now) as f64 / ledger.withdraw_units() as f64
    }
}

#[derive(Debug, Clone)]
enum Op {
    Deposit,
    Withdraw,
    Refund(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Deposit),
        3 => Just(Op::Withdraw),
        1 => any::<usize>().prop_map(Op::Refund),
        1 => (0u64..400).prop_map(Op::Advance),
    ]
}

#[test]
fn refunds_give_back_exactly_in_the_same_bucket_or_later() {
    let b = budget(1_000, 0.0, 1.0);
    let t0 = b.inner.ledger.clock().origin();
    for _ in 0..2 {
        b.deposit_at(t0);
    }
    let at = |ms| t0 + Duration::from_millis(ms);
    let first = b.inner.ledger.withdraw_at(at(0)).unwrap();
    let second = b.inner.ledger.withdraw_at(at(50)).unwrap();
    assert_eq!(b.inner.ledger.withdraw_at(at(50)), None);
    // Same bucket: the lock-free path.
    b.inner.ledger.refund(second);
    assert_eq!(b.balance_at(at(50)), 1.0);
    // A later bucket: the withdrawal is in the history.
    assert_eq!(b.balance_at(at(450)), 1.0);
    b.inner.ledger.refund(first);
    assert_eq!(b.balance_at(at(450)), 2.0);
    // The deposits still expire on time, and the refunds with them.
    assert_eq!(b.balance_at(at(1_000)), 0.0);
    // Refunding a withdrawal that already left the window changes nothing.
    let c = budget(1_000, 1.0, 1.0);
    let t = c.inner.ledger.clock().origin();
    let token = c.inner.ledger.withdraw_at(t).unwrap();
    assert_eq!(c.balance_at(t + Duration::from_millis(1_500)), 1.0);
    c.inner.ledger.refund(token);
    assert_eq!(c.balance_at(t + Duration::from_millis(1_500)), 1.0);
}

#[test]
fn concurrent_withdrawals_and_refunds_never_lose_a_token() {
    let b = budget(10_000, 1.0, 0.0);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || {
                for _ in 0..2_000 {
                    if let Some(token) = b.withdraw() {
                        token.refund();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(b.balance(), 10.0);
}

#[test]
fn public_withdrawal_round_trips() {
    let b = budget(10_000, 1.0, 0.0);
    assert_eq!(b.balance(), 10.0);
    let tokens: Vec<_> = (0..10).map(|_| b.withdraw().unwrap()).collect();
    assert!(b.withdraw().is_none());
    for t in tokens {
        t.refund();
    }
    assert_eq!(b.balance(), 10.0);
}

proptest! {
    /// The budget grants exactly what the sliding-window definition allows.
    #[test]
    fn matches_the_sliding_window_model(
        ratio_pct in 0u32..=150,
        min in 0u32..5,
        ops in proptest::collection::vec(op(), 1..400),
    ) {
        let ratio = f64::from(ratio_pct) / 100.0;
        let b = budget(1_000, f64::from(min), ratio);
        let t0 = b.inner.ledger.clock().origin();
        // (epoch, is a deposit, still counts)
        let (mut now_ms, mut events) = (0u64, Vec::<(u64, bool, bool)>::new());
        // Withdrawals not refunded yet: their token and their index in `events`.
        let mut taken = Vec::<(u64, usize)>::new();
        let epoch = |ms: u64| ms / 100;
        for op in ops {
            match op {
                Op::Advance(ms) => now_ms += ms,
                Op::Deposit => {
                    b.deposit_at(t0 + Duration::from_millis(now_ms));
                    events.push((epoch(now_ms), true, true));
                }
                Op::Withdraw => {
                    let e = epoch(now_ms);
                    let live = |d: bool| events.iter().filter(|(ev, dd, on)| *on && *dd == d && *ev + BUCKETS > e).count() as f64;
                    let model = f64::from(min) + ratio * live(true) - live(false) >= 1.0 - 1e-9;
                    let granted = b.inner.ledger.withdraw_at(t0 + Duration::from_millis(now_ms));
                    prop_assert_eq!(granted.is_some(), model);
                    if let Some(token) = granted {
                        taken.push((token, events.len()));
                        events.push((e, false, true));
                    }
                }
                Op::Refund(pick) => {
                    if !taken.is_empty() {
                        let (token, index) = taken.swap_remove(pick % taken.len());
                        b.inner.ledger.refund(token);
                        // As if it never happened: the event leaves the model.
                        events[index].2 = false;
                    }
                }
            }
        }
    }
}
