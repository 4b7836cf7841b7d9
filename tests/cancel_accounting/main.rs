//! What a caller's giving up leaves behind, over real sockets, HTTP/1.1 and HTTP/2 (each test
//! runs as `<name>_h1` and `<name>_h2`): limits' permits, the budget's tokens, the breaker's
//! probe, hedges, metrics; and a caller's own deadline passing, which no layer charges (also
//! through tonic's own timer), while failures that merely end in `DeadlineExceeded` still
//! count. `server_names`: an https host no certificate can name is the caller's mistake.

mod support;

mod blackhole;
mod breaker;
mod budget;
mod callers_deadline;
mod callers_deadline_errors;
#[cfg(feature = "tonic")]
mod callers_deadline_tonic;
mod connect;
mod limits;
mod metrics;
#[path = "../edges_support/mod.rs"]
mod metrics_support;
mod races;
mod server_names;
mod service_api;
