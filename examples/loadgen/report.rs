//! The one JSON object printed on stdout.

use super::common::EndpointReport;
use super::driver::Tally;
use serde_json::{Value, json};
use std::time::Duration;

/// Builds the report. Every field is always there; `failed` may be `{}`.
pub fn json(
    tally: &Tally,
    attempts: u64,
    duration: Duration,
    endpoints: &[EndpointReport],
) -> Value {
    let ms = |micros: u64| micros as f64 / 1000.0;
    // A bucket's top, never above the slowest request measured exactly.
    let quantile = |q: f64| ms(tally.latency.value_at_quantile(q).min(tally.max_micros));
    let duration_s = duration.as_secs_f64();
    let rps = if duration_s > 0.0 {
        tally.requests as f64 / duration_s
    } else {
        0.0
    };
    json!({
        "requests": tally.requests,
        "ok": tally.ok,
        "failed": tally.failed,
        "attempts": attempts,
        "p50_ms": quantile(0.50),
        "p90_ms": quantile(0.90),
        "p99_ms": quantile(0.99),
        "p999_ms": quantile(0.999),
        "max_ms": ms(tally.max_micros),
        "duration_s": duration_s,
        "rps": rps,
        "endpoints": endpoints
            .iter()
            .map(|e| json!({
                "addr": e.addr.to_string(),
                "requests": e.requests,
                "failures": e.failures,
                "ejections": e.ejections,
            }))
            .collect::<Vec<_>>(),
    })
}
