//! Routes on the other clients of the shared stack: `meshless::reqwest::Client` over the
//! fleet, and `meshless::tonic::Channel` under tonic's own client against a real tonic server.
#![cfg(all(feature = "reqwest", feature = "tonic"))]

mod common;
#[path = "tonic/support.rs"]
mod support;

use meshless::backoff::Backoff;
use meshless::route::Route;
use meshless::testing::{Behavior, Fleet};
use support::{Behaviour, CREATE, GET, Store, endpoint, ping, serve, unary};

#[tokio::test]
async fn a_reqwest_client_runs_its_routes_and_reloads_them() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().errors(1.0, http::StatusCode::SERVICE_UNAVAILABLE))
        .start()
        .await
        .expect("the fleet starts");
    let http = reqwest::Client::builder()
        .retry(reqwest::retry::never())
        .build()
        .expect("a reqwest client");
    let client = meshless::reqwest::Client::builder(http.clone())
        .endpoints([format!("http://{}", fleet.addrs()[0])])
        .backoff(Backoff::none())
        .metrics(false)
        .route(Route::path_prefix("/once").max_retries(0))
        .build()
        .expect("a client");
    let base = format!("http://{}", fleet.addrs()[0]);
    let sent = |path: &'static str| {
        let (client, http, base, fleet) = (&client, &http, &base, &fleet);
        async move {
            let before = fleet.totals().requests;
            let res = client
                .send(http.get(format!("{base}{path}")))
                .await
                .expect("answered");
            assert_eq!(res.status(), 503);
            fleet.totals().requests - before
        }
    };
    assert_eq!((sent("/once").await, sent("/twice").await), (1, 3));
    client
        .reload_routes([Route::path_prefix("/twice").max_retries(0)])
        .expect("valid routes");
    assert_eq!((sent("/once").await, sent("/twice").await), (3, 1));
    let err = client
        .reload_routes([Route::path_prefix("twice")])
        .expect_err("a bad route");
    assert_eq!(err.path(), "routes[0].match.path_prefix");
    assert_eq!(sent("/twice").await, 1, "a bad reload changed nothing");
}

#[tokio::test]
async fn a_tonic_channel_runs_a_grpc_method_route() {
    let bad = Store::new("bad", Behaviour::Unavailable);
    let addr = serve(bad.clone());
    let channel = meshless::tonic::Channel::builder()
        .endpoints([endpoint(addr)])
        .backoff(Backoff::none())
        .metrics(false)
        .route(Route::grpc_method("test.Store", "Create").idempotent(true))
        .route(Route::grpc_service("test.Store").max_retries(0))
        .build()
        .expect("a channel");
    // Create is marked safe to repeat by its route: 1 + 2 retries on UNAVAILABLE.
    unary(channel.clone(), CREATE, tonic::Request::new(ping("a")))
        .await
        .expect_err("unavailable");
    assert_eq!(bad.calls(), 3);
    // Get falls to the service's route, which allows no retry.
    unary(channel.clone(), GET, tonic::Request::new(ping("b")))
        .await
        .expect_err("unavailable");
    assert_eq!(bad.calls(), 4);

    channel.reload_routes([]).expect("no routes is valid");
    unary(channel.clone(), CREATE, tonic::Request::new(ping("c")))
        .await
        .expect_err("unavailable");
    assert_eq!(
        bad.calls(),
        5,
        "without its route, Create is not idempotent"
    );
}
