//! What a reload may change on a running client, and what it may not.

use super::ClientConfig;
use crate::hedge::{HedgeConfig, HedgeDelay};
use crate::primitives::route_policy::HedgePlan;
use crate::route::Defaults;
use serde_json::Value;

/// The client's per-request settings in `config`: what a reload swaps.
pub(crate) fn route_defaults(config: &ClientConfig) -> Defaults {
    let hedge = config.hedge.as_ref();
    Defaults {
        deadline: config.deadline.timeout,
        attempt_timeout: config.attempt_timeout.timeout,
        max_retries: config.retry.max_retries,
        hedge: HedgePlan {
            enabled: hedge.is_some_and(|h| h.enabled && h.max_hedges > 0),
            max_hedges: hedge.map_or(1, |h| h.max_hedges),
            delay: hedge.and_then(|h| match h.delay {
                HedgeDelay::Fixed(delay) => Some(delay),
                _ => None,
            }),
        },
    }
}

/// The path of the first setting that differs between `old` and `new` and that a running
/// client cannot apply (its endpoints, its balancer, breaker, limit, budget; the hedge
/// layer's shared delay window and extra-load cap), or `None`.
pub(crate) fn unreloadable(old: &ClientConfig, new: &ClientConfig) -> Option<String> {
    let mut fixed = new.clone();
    fixed.deadline.timeout = old.deadline.timeout;
    fixed.attempt_timeout.timeout = old.attempt_timeout.timeout;
    fixed.retry.max_retries = old.retry.max_retries;
    fixed.routes = old.routes.clone();
    // A client without hedging has the layer all the same, built with the defaults.
    let built = |hedge: &Option<HedgeConfig>| {
        hedge.clone().unwrap_or(HedgeConfig {
            enabled: false,
            ..HedgeConfig::default()
        })
    };
    let was = built(&old.hedge);
    let mut now = built(&new.hedge);
    now.enabled = was.enabled;
    now.max_hedges = was.max_hedges;
    // A fixed delay travels with each request; a percentile's window is the layer's own.
    if matches!(now.delay, HedgeDelay::Fixed(_)) {
        now.delay = was.delay;
    }
    let mut old = old.clone();
    old.hedge = Some(was);
    fixed.hedge = Some(now);
    let (Ok(a), Ok(b)) = (serde_json::to_value(&old), serde_json::to_value(&fixed)) else {
        // Cannot happen for these plain types; should it, refuse the whole section by name.
        return Some("hedge".to_owned());
    };
    let mut path = String::new();
    differs(&a, &b, &mut path).then_some(path)
}

/// Whether `a` and `b` differ, `path` left at the first place they do.
fn differs(a: &Value, b: &Value, path: &mut String) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
            for key in keys {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                let none = Value::Null;
                if differs(
                    a.get(key).unwrap_or(&none),
                    b.get(key).unwrap_or(&none),
                    path,
                ) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (a, b)) in a.iter().zip(b).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                if differs(a, b, path) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        (a, b) => a != b,
    }
}
