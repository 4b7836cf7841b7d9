//! The request loop and runtime shared by the benches that time a service per request.

use http::Request;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tower::{Service, ServiceExt};

/// Runs `iters` requests from `request` through `svc`, each with `ready().await` then
/// `call(req).await`, and returns the time taken.
pub async fn drive<S, B>(mut svc: S, iters: u64, request: impl Fn() -> Request<B>) -> Duration
where
    S: Service<Request<B>>,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..iters {
        let req = request();
        let res = svc
            .ready()
            .await
            .expect("always ready")
            .call(req)
            .await
            .expect("always answers");
        black_box(res);
    }
    start.elapsed()
}

/// A current-thread runtime: one request at a time, no scheduler noise between threads.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
