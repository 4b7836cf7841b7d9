//! Observability contracts: metric names, labels and counts for scripted runs (recorded with
//! `metrics_util`'s `DebuggingRecorder`), `traceparent` pass-through, and `stats()`.
//!
//! Each test installs its own recorder on its own thread (`metrics::with_local_recorder`) and
//! runs a current-thread tokio runtime on paused time inside it, so that tests neither see each
//! other's metrics nor wait for real.
//!
//! The recorder and the scripted endpoints are in `support`; one module per kind of signal.

mod support;

mod forget;
mod metrics;
mod stats;
mod trace;
