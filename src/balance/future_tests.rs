//! The response future's picks after a wait, in a step whose clock reading is stale.

use super::Balance;
use crate::primitives::step::{self, Step};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use std::convert::Infallible;
use std::time::Duration;
use tower::ServiceExt;

/// An endpoint that asks for a second of quiet with every answer.
async fn pushing_back(_: Request<Empty<Bytes>>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let mut res = Response::new(Empty::new());
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    res.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    Ok(res)
}

/// The balancer waits out an endpoint's quiet, then picks again. If that pick took the step's
/// reading (older than the runtime's clock), the endpoint would still look quiet, the wait would
/// be over at once, and the loop would spin, poll after poll: the watchdog catches that. (It
/// does with both guards against it removed: the fresh read here, and the step's limit of
/// [`MAX_USES`](crate::primitives::step) askers per reading.)
#[test]
fn a_pick_after_a_wait_reads_the_clock_afresh() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        let status = runtime.block_on(async {
            let balance = Balance::builder().build();
            balance.insert("a", tower::service_fn(pushing_back));
            let first = balance.clone().oneshot(Request::new(Empty::new())).await;
            assert!(first.is_ok(), "the first answer names the quiet");
            // A step read before the quiet ended, still open when the next request is made.
            let stale = Step::enter();
            let _ = step::now();
            tokio::time::advance(Duration::from_secs(2)).await;
            let res = balance.oneshot(Request::new(Empty::new())).await;
            drop(stale);
            res.map(|res| res.status()).map_err(|e| e.kind())
        });
        let _ = tx.send(status);
    });
    let status = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the request ends; the pick did not spin");
    assert_eq!(status, Ok(StatusCode::TOO_MANY_REQUESTS));
}
