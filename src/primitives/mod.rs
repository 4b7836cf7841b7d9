//! The floor every layer stands on: the pieces the deadline, retry, balance and outlier layers
//! share, one version of each. Nothing here imports a layer; layers import from here.
//!
//! - [`clock`]: instants as signed microseconds from an origin, read once per event;
//! - [`ledger`]: the exact ledger (deposits and withdrawals over a sliding window, never
//!   overdrawn: the retry budget's);
//! - [`ring`]: the lossy statistics ring (the last minute of outcomes and latencies: a
//!   statistic, which may lose a count);
//! - [`histogram`]: the latency histogram (quarter-octave buckets) and its percentiles;
//! - [`ladder`]: the doubling ladder of retry backoff and ejection times;
//! - [`gate`]: the state word of a gate — active / ejected / probing, a breaker's closed /
//!   open / half-open.
//!
//! Where a new layer goes, and what it may import: see the README's "Architecture" section.

pub(crate) mod clock;
pub(crate) mod gate;
pub(crate) mod histogram;
pub mod ladder;
pub(crate) mod ledger;
pub(crate) mod replay;
pub(crate) mod ring;
