//! A scripted upstream: each call takes the next scripted answer (latency and status), records
//! when it arrived and the body it read.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use meshless::budget::Budget;
use meshless::hedge::{Hedge, HedgeConfig, HedgeDelay, HedgeLayer};
use meshless::retry::ReplayBody;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, service_fn};

pub const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One call as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub body: Bytes,
}

/// What the upstream answers: a status after a latency. Calls beyond the script get the
/// default.
#[derive(Clone)]
pub struct Upstream {
    script: Arc<Mutex<VecDeque<(Duration, u16)>>>,
    default: (Duration, u16),
    pub calls: Arc<Mutex<Vec<Call>>>,
}

impl Upstream {
    pub fn new(default_latency: Duration, default_status: u16) -> Self {
        Upstream {
            script: Arc::default(),
            default: (default_latency, default_status),
            calls: Arc::default(),
        }
    }

    /// The next calls answer these, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = (Duration, u16)>) {
        self.script.lock().unwrap().extend(answers);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Reads the whole body first (as a server does), then waits and answers; the response
    /// body names the call's number.
    pub async fn call<B>(self, req: Request<ReplayBody<B>>) -> Result<Response<String>, BoxError>
    where
        B: http_body::Body + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let at = Instant::now();
        let (latency, status) = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(self.default);
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(Call {
                at,
                body: Bytes::new(),
            });
            calls.len() - 1
        };
        let body = req.into_body().collect().await?.to_bytes();
        self.calls.lock().unwrap()[n].body = body;
        tokio::time::sleep_until(at + latency).await;
        let mut res = Response::new(format!("call {n}"));
        *res.status_mut() = StatusCode::from_u16(status)?;
        Ok(res)
    }
}

/// `upstream` behind `layer`.
pub fn behind<B>(
    layer: &HedgeLayer,
    upstream: &Upstream,
) -> Hedge<
    impl Service<Request<ReplayBody<B>>, Response = Response<String>, Error = BoxError, Future: Send>
    + Clone
    + Send
    + use<B>,
>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let up = upstream.clone();
    layer.layer(service_fn(move |req| up.clone().call(req)))
}

/// Sends [`get`] to `upstream` behind `layer`, on paused time: the answer and how long it
/// took, from the first attempt's send.
pub async fn answer(layer: &HedgeLayer, upstream: &Upstream) -> (Response<String>, Duration) {
    use tower::ServiceExt;
    let t0 = Instant::now();
    let res = behind(layer, upstream)
        .oneshot(get())
        .await
        .expect("an answer");
    (res, Instant::now() - t0)
}

/// A hedge layer with a fixed delay, under `budget`; its extra-load cap is exactly `extra` ×
/// requests (no reserve).
pub fn fixed(budget: Budget, delay: Duration, max_hedges: u32, extra: f64) -> HedgeLayer {
    let mut config = HedgeConfig::default();
    config.delay = HedgeDelay::Fixed(delay);
    config.max_hedges = max_hedges;
    config.max_extra_load = extra;
    config.min_per_second = 0.0;
    HedgeLayer::from_config(budget, &config)
        .expect("a valid config")
        .metrics(false)
}

/// A budget with no reserve: exactly `ratio` × requests, over an hour.
pub fn ratio_budget(ratio: f64) -> Budget {
    Budget::builder()
        .ttl(Duration::from_secs(3600))
        .min_per_second(0.0)
        .ratio(ratio)
        .build()
        .expect("a valid budget")
}

/// A request with an empty body, wrapped for replay.
pub fn get() -> Request<ReplayBody<String>> {
    Request::get("http://svc/")
        .body(ReplayBody::new(String::new(), 1024))
        .unwrap()
}
