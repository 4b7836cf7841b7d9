//! The request accounting and metrics of `meshless::http::Client`: black-box tests
//! over real sockets on 127.0.0.1, each checking one documented promise.

#[path = "../common/mod.rs"]
mod common;
#[path = "../edges_support/mod.rs"]
mod edges_support;

mod balance;
mod body;
mod hedge;
mod labels;
mod late;
mod mixed;
mod off;
mod prom;
mod recent;
mod retries;
mod shed;
mod support;
