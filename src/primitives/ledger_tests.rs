//! The ledger's contract, tested on the ledger alone (the budget's tests check it through
//! `Budget`, against a model of the sliding window).

use super::*;
use std::sync::Arc;
use std::time::Duration;

const MS: u64 = 1_000_000;

/// A window of 10 buckets of 100 ms; a deposit credits 1, a withdrawal costs 2.
fn ledger(reserve: i64) -> Ledger {
    let units = Units {
        deposit: 1,
        withdrawal: 2,
        reserve,
    };
    Ledger::new(Clock::new(Instant::now()), 100 * MS, 10, units)
}

fn at(ledger: &Ledger, ms: u64) -> Instant {
    ledger.clock().origin() + Duration::from_millis(ms)
}

#[test]
fn packing_round_trips() {
    for balance in [0, 1, -1, BALANCE_MAX, -BALANCE_MAX, 12_345_678_901] {
        let word = pack_past(0xABCD, balance);
        assert_eq!(past_balance(word), balance);
        assert_eq!(past_tag(word), 0xCD);
    }
    assert_eq!(past_balance(pack_past(0, i64::MAX)), BALANCE_MAX);
    let word = pack_current(0x1_2345, 7, COUNT_MAX);
    assert_eq!(
        (tag(word), deposits(word), withdrawals(word)),
        (0x45, 7, COUNT_MAX)
    );
}

#[test]
fn every_deposit_and_withdrawal_counts_once_for_exactly_the_window() {
    let l = ledger(0);
    for _ in 0..5 {
        l.deposit();
    }
    assert_eq!(l.balance_at(at(&l, 0)), 5);
    // 5 credits pay for two withdrawals of 2, not three.
    assert!(l.withdraw_at(at(&l, 250)).is_some());
    assert!(l.withdraw_at(at(&l, 250)).is_some());
    assert_eq!(l.withdraw_at(at(&l, 250)), None);
    assert_eq!(l.balance_at(at(&l, 999)), 1);
    // Bucket 0 (the deposits) leaves at 1 s, bucket 2 (the withdrawals) at 1.2 s.
    assert_eq!(l.balance_at(at(&l, 1_000)), -4);
    assert_eq!(l.balance_at(at(&l, 1_199)), -4);
    assert_eq!(l.balance_at(at(&l, 1_200)), 0);
}

#[test]
fn a_refund_is_as_if_the_withdrawal_never_happened() {
    let l = ledger(4);
    let first = l.withdraw_at(at(&l, 0)).unwrap();
    let second = l.withdraw_at(at(&l, 0)).unwrap();
    assert_eq!(l.balance_at(at(&l, 0)), 0);
    l.refund(second); // same bucket: lock-free
    assert_eq!(l.balance_at(at(&l, 0)), 2);
    assert_eq!(l.balance_at(at(&l, 500)), 2);
    l.refund(first); // from the history
    assert_eq!(l.balance_at(at(&l, 500)), 4);
    // One already expired gives nothing back.
    let late = l.withdraw_at(at(&l, 500)).unwrap();
    assert_eq!(l.balance_at(at(&l, 1_600)), 4);
    l.refund(late);
    assert_eq!(l.balance_at(at(&l, 1_600)), 4);
}

#[test]
fn racing_withdrawals_never_overdraw() {
    // 1,000 withdrawals' worth of reserve, 4 threads taking until refused: exactly 1,000 are
    // granted, whatever the interleaving.
    let l = Arc::new(ledger(2_000));
    let now = at(&l, 0);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let l = Arc::clone(&l);
            std::thread::spawn(move || {
                let mut granted = 0u32;
                while l.withdraw_at(now).is_some() {
                    granted += 1;
                }
                granted
            })
        })
        .collect();
    let granted: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(granted, 1_000);
    assert_eq!(l.balance_at(now), 0);
}

#[test]
fn a_full_bucket_stops_counting_instead_of_wrapping() {
    let l = ledger(0);
    l.current
        .store(pack_current(0, COUNT_MAX, 0), Ordering::Release);
    l.deposit();
    assert_eq!(deposits(l.current.load(Ordering::Acquire)), COUNT_MAX);
    assert_eq!(withdrawals(l.current.load(Ordering::Acquire)), 0);
}
