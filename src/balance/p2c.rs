//! Power of two choices with memory: of two endpoints drawn at random and the last one this
//! thread chose, take the cheapest.

use super::endpoint::{Endpoint, Meter};
use super::ewma::CostModel;
use super::{Candidate, Endpoints};
use crate::outlier::Admit;
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Random pairs tried before falling back to a scan of the available endpoints.
const PAIRS: usize = 4;

/// How much dearer than the endpoint chosen last a pair's winner must be to lose the request
/// to it: a quarter, far below what a bad pair costs (the demo's 150 ms backend against a
/// healthy one at 10 requests in flight is 1.7 times), above the spread of endpoints that are
/// about equal.
const MEMORY_MARGIN: f64 = 1.25;

/// The chosen endpoint, its service (ready to be called), and whether this request is its
/// probation probe.
pub(crate) struct Choice<'a, K, S, R> {
    /// Borrowed from the snapshot the pick read: no reference count to pay unless the caller
    /// keeps it.
    pub(crate) endpoint: &'a Endpoint<K, S>,
    /// The endpoint's meter, as the pick read it: starting the request there does not read
    /// the endpoint again.
    pub(crate) meter: &'a Arc<Meter>,
    pub(crate) service: R,
    pub(crate) probe: bool,
    /// The pick's `now`, in nanoseconds since the meters' origin: when the request starts.
    pub(crate) at: u64,
}

/// Picks an endpoint, or `None` when none is available.
///
/// An endpoint is available when its server is not pushing back (see `quiet`), its outlier
/// gate admits it (ejected endpoints are skipped unless `fail_open`: too few are left, the
/// panic threshold) and `ready` hands back its service ready to be called. `ready` is asked
/// only of the endpoint about to be chosen, so a service that is not ready (its connection
/// pool full, say) costs this pick one more draw instead of holding the request while its
/// peers are idle.
///
/// An endpoint whose ejection has just ended is picked for its one probe request whenever it is
/// drawn, whatever its cost: otherwise the misses that got it ejected would keep it from ever
/// being tried again. Candidates are compared with `peek`; only the chosen one is `admit`ted, so
/// no probe is claimed and then left unsent.
///
/// The pair's winner is also compared with the endpoint this thread chose last (after
/// Mitzenmacher, Prabhakar and Shah, "Load balancing with memory", 2002: one remembered choice
/// balances better than a third random one). Plain P2C hands one of the two bad endpoints
/// every draw that pairs them: with two bad of six (the demo's slow and hanging backends) that
/// is one request in fifteen, whatever their cost. The remembered endpoint won its last
/// comparison, so it is rarely bad, and when it is, the next pick replaces it. It takes the
/// request only from a winner that costs more than `MEMORY_MARGIN` times as much: endpoints of
/// about the same cost still share the traffic as P2C shares it, rather than all of it going
/// to the cheapest by a hair.
///
/// Cost is O(1) in the number of endpoints: a scan happens only when the random draws keep
/// hitting unavailable endpoints, which the maximum ejected share keeps rare.
///
/// The candidates are compared through `endpoints.candidates`, one pointer away from each
/// meter's first line, which holds all that a comparison reads (its gate word included); the
/// endpoint (key and service) is touched only for the one taken, and only for its service.
/// `now` is converted to the meters' clock once, for every endpoint looked at.
pub(crate) fn pick<'a, K, S, R>(
    endpoints: &'a Endpoints<K, S>,
    now: Instant,
    fail_open: bool,
    mut ready: impl FnMut(&Endpoint<K, S>) -> Option<R>,
) -> Option<Choice<'a, K, S, R>> {
    let candidates = &*endpoints.candidates;
    let n = candidates.len();
    if n == 0 {
        return None;
    }
    // Every meter of a balancer counts from the balancer's origin.
    let now_nanos = endpoints.clock.nanos(now);
    let model = endpoints.model;
    let peek = |i: usize| {
        let meter = &candidates[i].meter;
        if meter.quiet.is_quiet(now_nanos) && !meter.quiet_probes.due(now_nanos) {
            // The server's own word outranks the panic threshold: never fail open into it.
            return None;
        }
        Some(meter.health.peek(now))
    };
    // Claims the endpoint; `None` when it is not available after all (not ready, or another
    // request took the probe in between), unless failing open.
    let mut take = |i: usize| -> Option<Choice<'a, K, S, R>> {
        let candidate = &candidates[i];
        let endpoint = &*candidate.endpoint;
        let meter = &candidate.meter;
        // A quiet endpoint takes its probe, one request a second.
        if meter.quiet.is_quiet(now_nanos) && !meter.quiet_probes.claim(now_nanos) {
            return None;
        }
        let service = ready(endpoint)?;
        let probe = match candidate.meter.health.admit(now) {
            Admit::Yes => false,
            Admit::Probe => true,
            Admit::No if fail_open => false,
            Admit::No => return None,
        };
        Some(Choice {
            endpoint,
            meter: &candidate.meter,
            service,
            probe,
            at: now_nanos,
        })
    };
    let usable = |a: Option<Admit>| match a {
        None => false,
        Some(a) => fail_open || a != Admit::No,
    };
    if n == 1 {
        return if usable(peek(0)) { take(0) } else { None };
    }
    for _ in 0..PAIRS {
        let (a, b) = pair(n);
        let (pa, pb) = (peek(a), peek(b));
        let chosen = if pa == Some(Admit::Probe) {
            a
        } else if pb == Some(Admit::Probe) {
            b
        } else {
            match (usable(pa), usable(pb)) {
                (true, true) => {
                    let cost = |i: usize| {
                        let c = &candidates[i];
                        c.meter.cost(c.weight, model, now, now_nanos)
                    };
                    let (ca, cb) = (cost(a), cost(b));
                    let (winner, winner_cost) = if cb < ca { (b, cb) } else { (a, ca) };
                    let last = LAST.get();
                    // An index from another balancer, or from an older set of endpoints, is
                    // only a third random candidate: any index in range will do.
                    if last < n
                        && last != a
                        && last != b
                        && winner_cost > MEMORY_MARGIN * cost(last)
                        && peek(last) == Some(Admit::Yes)
                    {
                        // Not ready, or avoided (a hedge steering away from its first
                        // attempt's endpoint, often this thread's last choice): the pair's
                        // winner, rather than a new draw.
                        if let Some(choice) = take(last) {
                            LAST.set(last);
                            return Some(choice);
                        }
                    }
                    winner
                }
                // Taking the one usable endpoint of a pair would hand a slow endpoint every
                // draw that pairs it with an ejected one: draw again, so that each choice
                // is a real comparison.
                _ => continue,
            }
        };
        if let Some(choice) = take(chosen) {
            LAST.set(chosen);
            return Some(choice);
        }
    }
    // Most draws hit unavailable endpoints: look at all of them once.
    let mut available = Vec::new();
    for i in 0..n {
        match peek(i) {
            Some(Admit::Probe) => {
                if let Some(choice) = take(i) {
                    return Some(choice);
                }
            }
            a if usable(a) => available.push(i),
            _ => {}
        }
    }
    // Compare pairs of the rest; one that turns out not to be ready leaves the list.
    while !available.is_empty() {
        let slot = match available.len() {
            1 => 0,
            len => {
                let (a, b) = pair(len);
                let (x, y) = (available[a], available[b]);
                if cheaper(candidates, x, y, model, now, now_nanos) == x {
                    a
                } else {
                    b
                }
            }
        };
        if let Some(choice) = take(available[slot]) {
            return Some(choice);
        }
        available.swap_remove(slot);
    }
    None
}

/// When the first endpoint that is unavailable only because its server is pushing back will be
/// free again (its quiet's end, or its next probe if sooner), with the time that endpoint takes
/// to answer: its peak-EWMA latency estimate, which any slow answer raises (a slow refusal
/// too, as P2C sees it), without the share of its misses that its cost adds. A request that
/// would have less than that left once it is free is better refused now. `None` when no
/// endpoint is in that state.
pub(crate) fn quiet_end<K, S>(
    endpoints: &Endpoints<K, S>,
    now: Instant,
    fail_open: bool,
) -> Option<(Instant, Duration)> {
    let now_nanos = endpoints.clock.nanos(now);
    let origin = endpoints.clock.origin();
    endpoints
        .candidates
        .iter()
        .filter(|c| fail_open || c.meter.health.peek(now) != Admit::No)
        .filter_map(|c| {
            let end = c.meter.quiet.until(origin, now_nanos)?;
            // Its next probe, if sooner.
            let free_at = match c.meter.quiet_probes.next_after(origin, now_nanos) {
                Some(probe) => probe.min(end),
                None => end,
            };
            Some((free_at, c))
        })
        .min_by_key(|(free_at, _)| *free_at)
        .map(|(free_at, c)| {
            let answers_in = c.meter.rtt.latency_at(endpoints.model, now_nanos);
            (free_at, Duration::from_nanos(answers_in as u64))
        })
}

#[inline]
fn cheaper<K, S>(
    candidates: &[Candidate<K, S>],
    a: usize,
    b: usize,
    model: CostModel,
    now: Instant,
    now_nanos: u64,
) -> usize {
    let cost = |c: &Candidate<K, S>| c.meter.cost(c.weight, model, now, now_nanos);
    if cost(&candidates[b]) < cost(&candidates[a]) {
        b
    } else {
        a
    }
}

/// Two distinct indices in `0..n` (`n >= 2`), uniformly.
#[inline]
fn pair(n: usize) -> (usize, usize) {
    let (x, y) = two_draws();
    let a = scale(x, n);
    let b = scale(y, n.saturating_sub(1));
    (a, if b >= a { b + 1 } else { b })
}

thread_local! {
    /// This thread's generator state; 0 until first used.
    static STATE: Cell<u64> = const { Cell::new(0) };
    /// The index this thread's last pick chose (of whichever balancer), `usize::MAX` before
    /// the first.
    static LAST: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Two random words. The draws only spread load, so a fast non-cryptographic generator
/// (wyrand: an add and a multiply per word) per thread does: `rand`'s ChaCha costs more than
/// the comparison it serves. Seeded from `rand` on a thread's first draw, so that threads and
/// processes do not draw in step.
#[inline]
fn two_draws() -> (u64, u64) {
    STATE.with(|state| {
        let mut s = state.get();
        if s == 0 {
            s = rand::random::<u64>() | 1;
        }
        let x = wyrand(&mut s);
        let y = wyrand(&mut s);
        state.set(s);
        (x, y)
    })
}

#[inline]
fn wyrand(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0xa076_1d64_78bd_642f);
    let t = u128::from(*s) * u128::from(*s ^ 0xe703_7ed1_a0b4_28db);
    (t >> 64) as u64 ^ t as u64
}

/// `x` scaled to `0..n` (0 for `n == 0`): multiply and keep the high half, uniform enough for
/// any `n` far below 2^64, with no division.
#[inline]
fn scale(x: u64, n: usize) -> usize {
    ((u128::from(x) * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_distinct_in_range_and_spread_evenly() {
        for n in [2usize, 3, 10, 100] {
            let mut hits = vec![0u32; n];
            let draws = 20_000 * n;
            for _ in 0..draws / 2 {
                let (a, b) = pair(n);
                assert!(a < n && b < n && a != b, "{n}: {a}, {b}");
                hits[a] += 1;
                hits[b] += 1;
            }
            // Each index expects 20,000 hits; a biased or stuck generator misses by far more.
            for (i, h) in hits.iter().enumerate() {
                assert!(
                    (18_500..=21_500).contains(h),
                    "{n}: index {i} hit {h} times"
                );
            }
        }
        assert_eq!(scale(u64::MAX, 1), 0);
        assert_eq!(scale(u64::MAX, 0), 0);
        assert_eq!(scale(u64::MAX, 10), 9);
    }
}
