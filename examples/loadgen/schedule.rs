//! When each request of the open loop is due, computed without a panic for any rate and index.
//! Its own file so that `tests/loadgen.rs` can check it directly: no command line reaches the
//! far end of the schedule, which `cli.rs` keeps within a day per request.

use std::time::Duration;
use tokio::time::Instant;

/// The instant request `i` is due at `rate` requests per second, counted from `start`; `None`
/// when that is past what a `Duration` or an `Instant` can hold (or `rate` is no rate at all),
/// that is, never.
pub fn due(start: Instant, i: u64, rate: f64) -> Option<Instant> {
    // `try_from_secs_f64` refuses what `from_secs_f64` would panic on: too big, NaN, negative.
    let offset = Duration::try_from_secs_f64(i as f64 / rate).ok()?;
    start.checked_add(offset)
}
