//! Contract tests for the circuit breaker, stacked over a scripted `service_fn` upstream (and,
//! in `outage`, over a hyper-util client and the embedded fleet on real sockets).
//!
//! Every test but `outage` runs on tokio's paused clock: the breaker's breaks, ramps and
//! windows are read against virtual time, so the instants asserted are exact.

#[path = "breaker/routes.rs"]
mod routes;
#[path = "breaker/support.rs"]
mod support;

#[path = "breaker/hot_path.rs"]
mod hot_path;
#[path = "breaker/modes.rs"]
mod modes;
#[path = "breaker/outage.rs"]
mod outage;
#[path = "breaker/probes.rs"]
mod probes;
#[path = "breaker/trace.rs"]
mod trace;
#[path = "breaker/trips.rs"]
mod trips;
