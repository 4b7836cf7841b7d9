//! Over real sockets: a `Balance` of hyper-util clients in front of the embedded fleet, one
//! backend that never answers and one healthy. Each request's first attempt goes to the hanging
//! backend (the healthy one's tiny weight makes it look dear), its hedge to the healthy one,
//! which answers; the hanging attempt is cancelled, and its endpoint is not charged a failure.
//!
//! Real time: the only timing assumption is that a 1 ms backend answers within 10 s.

#![cfg(feature = "testing")]

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use meshless::balance::Balance;
use meshless::budget::Budget;
use meshless::retry::ReplayBody;
use meshless::testing::{Behavior, Fleet, Latency};
use std::time::Duration;
use tower::{Layer, ServiceExt, service_fn};

use super::support::{fixed, ms};

#[tokio::test]
async fn a_hedge_reaches_the_healthy_backend_and_the_hanging_one_is_not_charged() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().hangs(1.0))
        .backend(Behavior::healthy().latency(Latency::fixed(ms(1))))
        .start()
        .await
        .expect("the fleet starts");
    let hyper = HyperClient::builder(TokioExecutor::new()).build_http::<ReplayBody<Empty<Bytes>>>();
    let balance = Balance::builder().metrics(false).build();
    for (addr, weight) in fleet.addrs().into_iter().zip([1.0, 1e-6]) {
        let hyper = hyper.clone();
        let endpoint = service_fn(move |mut req: Request<ReplayBody<Empty<Bytes>>>| {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            *req.uri_mut() = Uri::try_from(format!("http://{addr}{path}")).expect("a valid URI");
            hyper.request(req)
        });
        balance.insert_weighted(addr, endpoint, weight);
    }
    let layer = fixed(Budget::default(), ms(20), 1, 1.0);
    let stats = layer.stats();
    let svc = layer.layer(balance.clone());
    for _ in 0..5 {
        let req = Request::get("/")
            .body(ReplayBody::new(Empty::<Bytes>::new(), 1024))
            .unwrap();
        let res = tokio::time::timeout(Duration::from_secs(10), svc.clone().oneshot(req))
            .await
            .expect("the hedge answers")
            .expect("a response");
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.expect("the whole body");
    }
    assert_eq!((stats.hedges(), stats.won()), (5, 5));
    let hanging = fleet.backend(0).addr();
    let healthy = fleet.backend(1).addr();
    assert_eq!(fleet.backend(1).counters().responses_2xx(), 5);
    let endpoints = balance.endpoints();
    let of = |key| endpoints.iter().find(|e| e.key == key).unwrap().clone();
    let (hanging, healthy) = (of(hanging), of(healthy));
    assert_eq!(
        (hanging.failures, hanging.cancelled, hanging.in_flight),
        (0, 5, 0)
    );
    assert_eq!((healthy.failures, healthy.requests), (0, 5));
    fleet.shutdown().await;
}
