//! Contract tests for the hedge layer, over scripted `service_fn` upstreams on tokio's paused
//! clock (the instants asserted are exact), and in `fleet` over a `Balance` of hyper-util
//! clients and the embedded fleet on real sockets.

#[path = "hedge/support.rs"]
mod support;

#[path = "hedge/caps.rs"]
mod caps;
#[path = "hedge/fleet.rs"]
mod fleet;
#[path = "hedge/outrun.rs"]
mod outrun;
#[path = "hedge/race.rs"]
mod race;
#[path = "hedge/timing.rs"]
mod timing;
