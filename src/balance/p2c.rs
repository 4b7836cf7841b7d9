//! Power of two choices: of two endpoints drawn at random, take the cheaper.

use super::endpoint::Endpoint;
use crate::outlier::Admit;
use rand::RngExt;
use std::sync::Arc;
use tokio::time::Instant;

/// Random pairs tried before falling back to a scan of the available endpoints.
const PAIRS: usize = 4;

/// The chosen endpoint, and whether this request is its probation probe.
pub(crate) struct Choice<K, S> {
    pub(crate) endpoint: Arc<Endpoint<K, S>>,
    pub(crate) probe: bool,
}

/// Picks an endpoint, or `None` when none is available.
///
/// Ejected endpoints are skipped unless `fail_open` (too few are left: the panic threshold).
/// An endpoint whose ejection has just ended is picked for its one probe request whenever it is
/// drawn, whatever its cost: otherwise the penalty that got it ejected would keep it from ever
/// being tried again. Candidates are compared with `peek`; only the chosen one is `admit`ted, so
/// no probe is claimed and then left unsent.
///
/// Cost is O(1) in the number of endpoints: a scan happens only when the random draws keep
/// hitting unavailable endpoints, which the maximum ejected share keeps rare.
pub(crate) fn pick<K, S>(
    endpoints: &[Arc<Endpoint<K, S>>],
    now: Instant,
    fail_open: bool,
) -> Option<Choice<K, S>> {
    let n = endpoints.len();
    if n == 0 {
        return None;
    }
    let peek = |i: usize| endpoints[i].meter.health.peek(now);
    // Claims the endpoint; `None` when it is not available after all (another request took
    // the probe in between), unless failing open.
    let take = |i: usize| -> Option<Choice<K, S>> {
        let probe = match endpoints[i].meter.health.admit(now) {
            Admit::Yes => false,
            Admit::Probe => true,
            Admit::No if fail_open => false,
            Admit::No => return None,
        };
        Some(Choice {
            endpoint: endpoints[i].clone(),
            probe,
        })
    };
    let usable = |a: Admit| fail_open || a != Admit::No;
    if n == 1 {
        return take(0);
    }
    let mut rng = rand::rng();
    for _ in 0..PAIRS {
        let a = rng.random_range(0..n);
        let mut b = rng.random_range(0..n - 1);
        if b >= a {
            b += 1;
        }
        let (pa, pb) = (peek(a), peek(b));
        let chosen = if pa == Admit::Probe {
            a
        } else if pb == Admit::Probe {
            b
        } else {
            match (usable(pa), usable(pb)) {
                (true, true) => cheaper(endpoints, a, b, now),
                // Taking the one usable endpoint of a pair would hand a slow endpoint every
                // draw that pairs it with an ejected one: draw again, so that each choice
                // is a real comparison.
                _ => continue,
            }
        };
        if let Some(choice) = take(chosen) {
            return Some(choice);
        }
    }
    // Most draws hit unavailable endpoints: look at all of them once.
    let mut available = Vec::new();
    for i in 0..n {
        match peek(i) {
            Admit::Probe => {
                if let Some(choice) = take(i) {
                    return Some(choice);
                }
            }
            a if usable(a) => available.push(i),
            _ => {}
        }
    }
    let chosen = match available.len() {
        0 => return None,
        1 => available[0],
        len => {
            let a = rng.random_range(0..len);
            let mut b = rng.random_range(0..len - 1);
            if b >= a {
                b += 1;
            }
            cheaper(endpoints, available[a], available[b], now)
        }
    };
    take(chosen)
}

fn cheaper<K, S>(endpoints: &[Arc<Endpoint<K, S>>], a: usize, b: usize, now: Instant) -> usize {
    if endpoints[b].meter.cost(now) < endpoints[a].meter.cost(now) {
        b
    } else {
        a
    }
}
