//! Power of two choices: of two endpoints drawn at random, take the cheaper.

use super::endpoint::Endpoint;
use crate::outlier::Admit;
use rand::RngExt;
use std::sync::Arc;
use tokio::time::Instant;

/// Random pairs tried before falling back to a scan of the available endpoints.
const PAIRS: usize = 4;

/// The chosen endpoint, its service (ready to be called), and whether this request is its
/// probation probe.
pub(crate) struct Choice<K, S, R> {
    pub(crate) endpoint: Arc<Endpoint<K, S>>,
    pub(crate) service: R,
    pub(crate) probe: bool,
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
/// drawn, whatever its cost: otherwise the penalty that got it ejected would keep it from ever
/// being tried again. Candidates are compared with `peek`; only the chosen one is `admit`ted, so
/// no probe is claimed and then left unsent.
///
/// Cost is O(1) in the number of endpoints: a scan happens only when the random draws keep
/// hitting unavailable endpoints, which the maximum ejected share keeps rare.
pub(crate) fn pick<K, S, R>(
    endpoints: &[Arc<Endpoint<K, S>>],
    now: Instant,
    fail_open: bool,
    mut ready: impl FnMut(&Endpoint<K, S>) -> Option<R>,
) -> Option<Choice<K, S, R>> {
    let n = endpoints.len();
    if n == 0 {
        return None;
    }
    let peek = |i: usize| {
        let meter = &endpoints[i].meter;
        if meter.quiet.is_quiet(now) {
            // The server's own word outranks the panic threshold: never fail open into it.
            return None;
        }
        Some(meter.health.peek(now))
    };
    // Claims the endpoint; `None` when it is not available after all (not ready, or another
    // request took the probe in between), unless failing open.
    let mut take = |i: usize| -> Option<Choice<K, S, R>> {
        let endpoint = &endpoints[i];
        let service = ready(endpoint)?;
        let probe = match endpoint.meter.health.admit(now) {
            Admit::Yes => false,
            Admit::Probe => true,
            Admit::No if fail_open => false,
            Admit::No => return None,
        };
        Some(Choice {
            endpoint: endpoint.clone(),
            service,
            probe,
        })
    };
    let usable = |a: Option<Admit>| match a {
        None => false,
        Some(a) => fail_open || a != Admit::No,
    };
    if n == 1 {
        return if usable(peek(0)) { take(0) } else { None };
    }
    let mut rng = rand::rng();
    for _ in 0..PAIRS {
        let a = rng.random_range(0..n);
        let mut b = rng.random_range(0..n - 1);
        if b >= a {
            b += 1;
        }
        let (pa, pb) = (peek(a), peek(b));
        let chosen = if pa == Some(Admit::Probe) {
            a
        } else if pb == Some(Admit::Probe) {
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
                let a = rng.random_range(0..len);
                let mut b = rng.random_range(0..len - 1);
                if b >= a {
                    b += 1;
                }
                if cheaper(endpoints, available[a], available[b], now) == available[a] {
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
/// free again; `None` when no endpoint is in that state.
pub(crate) fn quiet_end<K, S>(
    endpoints: &[Arc<Endpoint<K, S>>],
    now: Instant,
    fail_open: bool,
) -> Option<Instant> {
    endpoints
        .iter()
        .filter(|e| fail_open || e.meter.health.peek(now) != Admit::No)
        .filter_map(|e| e.meter.quiet.until(now))
        .min()
}

fn cheaper<K, S>(endpoints: &[Arc<Endpoint<K, S>>], a: usize, b: usize, now: Instant) -> usize {
    if endpoints[b].meter.cost(now) < endpoints[a].meter.cost(now) {
        b
    } else {
        a
    }
}
