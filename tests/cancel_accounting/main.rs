//! What a caller's giving up leaves behind, over real sockets, HTTP/1.1 and HTTP/2 (each test
//! runs as `<name>_h1` and `<name>_h2`): limits' permits, the budget's tokens, the breaker's
//! probe, hedges, metrics; and a caller's own deadline passing, which no layer charges.

mod support;

mod breaker;
mod budget;
mod callers_deadline;
mod connect;
mod limits;
mod metrics;
mod metrics_support;
mod races;
mod service_api;
