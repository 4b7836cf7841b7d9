//! Contract tests for the retry layer, alone and stacked as
//! `DeadlineLayer` → `RetryLayer` → `AttemptTimeoutLayer` → service.
//!
//! Every test runs on tokio's paused clock: time only moves when every task waits on a timer, so
//! the virtual times asserted here are exact, and no test sleeps for real.
//!
//! The mock service follows a script (one step per attempt, the last step repeating) and logs,
//! for each attempt, its number, method, path, headers, the virtual time it arrived, the request
//! body it read (chunk by chunk, with trailers), and the virtual time its future finished or was
//! dropped.
//!
//! One module per contract; the mock service and helpers are in `support`.

mod support;

mod attempts;
mod backoff;
mod budget;
mod deadlines;
mod hops;
mod idempotency;
mod pushback;
mod replay;
