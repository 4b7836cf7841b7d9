//! The contracts through the reqwest and tonic integrations: black-box tests over real sockets on
//! 127.0.0.1 (raw HTTP/1.1 servers, a raw HTTP/2 server through the `h2` crate).
//!
//! Run with `cargo test --all-features --test integration_contracts -- --test-threads=2`.
#![cfg(all(feature = "reqwest", feature = "tonic"))]

#[path = "../common/mod.rs"]
mod common;

#[path = "../tonic/support.rs"]
mod support;

#[path = "../grpc_raw/mod.rs"]
mod raw;

mod reqwest_side;
mod tonic_side;
