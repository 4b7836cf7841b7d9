//! The floor every layer stands on: the pieces the deadline, retry, balance and outlier layers
//! share, one version of each. Nothing here imports a layer; layers import from here (and the
//! floor itself imports only `error`).
//!
//! - [`clock`]: the one clock: instants as signed microseconds (gates, windows) or unsigned
//!   nanoseconds (latency estimates, the ledger) from an origin, read once per event;
//! - [`step`]: one reading of that clock per synchronous pass through the layers;
//! - [`ledger`]: the exact ledger — deposits and withdrawals over a sliding window, each
//!   counted once, never overdrawn under concurrency (the retry budget's);
//! - [`ring`]: the lossy statistics ring — the last minute of outcomes and latencies, a
//!   statistic that may lose a count;
//! - [`window`]: the rate window — calls, failures and slow calls over a sliding window, exact
//!   and clearable (the breaker's rates, the attempt timeout's overruns);
//! - [`histogram`]: the latency histogram (quarter-octave buckets) and its percentiles;
//! - [`ladder`]: the doubling ladder of retry backoff and ejection times;
//! - [`gate`]: a gate's state word and its transitions — active / ejected / probing, a
//!   breaker's closed / open / half-open;
//! - [`route_policy`]: what a request's route says, as the layers read it (the router that
//!   attaches it is `route`, above them);
//! - [`replay`]: the replay body, which buffers a request body so that it can be sent again
//!   (retries; hedging next).
//!
//! Where a new layer goes, and what it may import: see the README's "Architecture" section.

pub(crate) mod clock;
pub(crate) mod gate;
pub(crate) mod histogram;
pub mod ladder;
pub(crate) mod ledger;
pub(crate) mod refusing;
pub(crate) mod replay;
pub(crate) mod ring;
pub(crate) mod route_policy;
pub(crate) mod step;
pub(crate) mod window;
