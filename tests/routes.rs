//! Per-route policies through a real fleet: each route's deadline, retries, idempotency and
//! hedging apply to the requests it fits and to no other, the first route that fits winning.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use meshless::backoff::Backoff;
use meshless::error::Kind;
use meshless::http::{Client, ClientBuilder};
use meshless::outlier::OutlierConfig;
use meshless::route::{Route, RouteHedge};
use meshless::testing::{Behavior, Fleet, Latency};
use std::time::Duration;
use tokio::time::Instant;

async fn fleet(behavior: Behavior, size: usize) -> Fleet {
    Fleet::builder()
        .backends((0..size).map(|_| behavior.clone().into()))
        .start()
        .await
        .expect("the fleet starts")
}

/// A client of `fleet` that keeps a failing endpoint in (no ejection) and waits nothing
/// between attempts, so that counts of attempts are exact.
fn builder(fleet: &Fleet) -> ClientBuilder {
    Client::builder()
        .endpoints(fleet.addrs().iter().map(|a| a.to_string()))
        .outlier(
            OutlierConfig::builder()
                .consecutive_failures(None)
                .build()
                .expect("valid outlier settings"),
        )
        .backoff(Backoff::none())
        .metrics(false)
}

fn failing() -> Behavior {
    Behavior::healthy().errors(1.0, StatusCode::SERVICE_UNAVAILABLE)
}

/// Attempts `fleet` received for one request.
async fn attempts(fleet: &Fleet, client: &Client, method: Method, path: &str) -> u64 {
    let before = fleet.totals().requests;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("a request");
    let res = client.request(req).await.expect("answered");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    fleet.totals().requests - before
}

#[tokio::test(start_paused = true)]
async fn a_routes_deadline_applies_to_its_path_only() {
    let fleet = fleet(
        Behavior::healthy().latency(Latency::fixed(Duration::from_millis(400))),
        1,
    )
    .await;
    let client = builder(&fleet)
        .deadline(Duration::from_secs(2))
        .route(Route::path_prefix("/slow").timeout(Duration::from_millis(50)))
        .build()
        .expect("a client");

    let started = Instant::now();
    let err = client
        .get("/slow/report")
        .await
        .expect_err("past the route's deadline");
    assert_eq!(err.kind(), Kind::DeadlineExceeded);
    assert_eq!(started.elapsed(), Duration::from_millis(50));

    let started = Instant::now();
    let res = client
        .get("/slower")
        .await
        .expect("under the client's deadline");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn a_routes_retries_apply_to_its_path_only() {
    let fleet = fleet(failing(), 1).await;
    let client = builder(&fleet)
        .max_retries(2)
        .route(Route::path_prefix("/once").max_retries(0))
        .build()
        .expect("a client");
    assert_eq!(attempts(&fleet, &client, Method::GET, "/once/a").await, 1);
    assert_eq!(attempts(&fleet, &client, Method::GET, "/twice").await, 3);
    let retried = builder(&fleet)
        .max_retries(0)
        .route(Route::path_prefix("/more").max_retries(3))
        .build()
        .expect("a client");
    assert_eq!(attempts(&fleet, &retried, Method::GET, "/more").await, 4);
    assert_eq!(attempts(&fleet, &retried, Method::GET, "/").await, 1);
}

#[tokio::test]
async fn a_post_route_marked_idempotent_is_retried_and_an_unmarked_post_is_not() {
    let fleet = fleet(failing(), 1).await;
    let client = builder(&fleet)
        .max_retries(2)
        .route(
            Route::path_prefix("/v1/orders")
                .method(Method::POST)
                .idempotent(true),
        )
        .route(Route::path_prefix("/v1/items").idempotent(false))
        .build()
        .expect("a client");
    assert_eq!(
        attempts(&fleet, &client, Method::POST, "/v1/orders").await,
        3
    );
    assert_eq!(
        attempts(&fleet, &client, Method::POST, "/v1/payments").await,
        1
    );
    // The route's methods: a PUT to the orders path is not the POST route's.
    assert_eq!(
        attempts(&fleet, &client, Method::PUT, "/v1/orders").await,
        3
    );
    // Marked not idempotent: even a GET is sent once.
    assert_eq!(attempts(&fleet, &client, Method::GET, "/v1/items").await, 1);
}

#[tokio::test]
async fn a_caller_s_own_mark_wins_over_its_route_s() {
    let fleet = fleet(failing(), 1).await;
    let client = builder(&fleet)
        .route(Route::any().idempotent(true))
        .build()
        .expect("a client");
    let mut req = Request::post("/v1/orders")
        .body(Full::new(Bytes::new()))
        .expect("a request");
    req.extensions_mut()
        .insert(meshless::retry::Idempotent(false));
    let before = fleet.totals().requests;
    client.request(req).await.expect("answered");
    assert_eq!(fleet.totals().requests - before, 1);
}

#[tokio::test]
async fn a_grpc_method_route_applies_to_that_method_only() {
    let fleet = fleet(failing(), 1).await;
    let client = builder(&fleet)
        .max_retries(2)
        .route(Route::grpc_method("shop.Catalog", "Search").idempotent(true))
        .route(Route::grpc_service("shop.Orders").max_retries(0))
        .build()
        .expect("a client");
    let post = Method::POST;
    assert_eq!(
        attempts(&fleet, &client, post.clone(), "/shop.Catalog/Search").await,
        3
    );
    assert_eq!(
        attempts(&fleet, &client, post.clone(), "/shop.Catalog/Add").await,
        1
    );
    assert_eq!(
        attempts(&fleet, &client, Method::GET, "/shop.Catalog/Other").await,
        3
    );
    assert_eq!(
        attempts(&fleet, &client, Method::GET, "/shop.Orders/List").await,
        1
    );
}

#[tokio::test]
async fn the_first_route_that_fits_wins() {
    let fleet = fleet(failing(), 1).await;
    let broad_first = builder(&fleet)
        .route(Route::path_prefix("/a").max_retries(0))
        .route(Route::path_prefix("/a/b").max_retries(1))
        .build()
        .expect("a client");
    assert_eq!(attempts(&fleet, &broad_first, Method::GET, "/a/b").await, 1);
    let narrow_first = builder(&fleet)
        .route(Route::path_prefix("/a/b").max_retries(1))
        .route(Route::path_prefix("/a").max_retries(0))
        .build()
        .expect("a client");
    assert_eq!(
        attempts(&fleet, &narrow_first, Method::GET, "/a/b").await,
        2
    );
    assert_eq!(
        attempts(&fleet, &narrow_first, Method::GET, "/a/c").await,
        1
    );
    // Prefixes fit whole segments: `/ab` is not under `/a`.
    assert_eq!(attempts(&fleet, &narrow_first, Method::GET, "/ab").await, 3);
}

#[tokio::test(start_paused = true)]
async fn a_route_turns_hedging_on_or_off_for_its_path() {
    let fleet = fleet(
        Behavior::healthy().latency(Latency::fixed(Duration::from_millis(100))),
        2,
    )
    .await;
    let client = builder(&fleet)
        .route(
            Route::path_prefix("/hedged").hedge(RouteHedge::on().delay(Duration::from_millis(20))),
        )
        .build()
        .expect("a client that does not hedge");
    client.get("/plain").await.expect("answered");
    assert_eq!(client.hedge_stats().hedges(), 0);
    client.get("/hedged").await.expect("answered");
    assert_eq!(client.hedge_stats().hedges(), 1);
    assert_eq!(fleet.totals().requests, 3);

    let mut hedging = meshless::hedge::HedgeConfig::default();
    hedging.delay = meshless::hedge::HedgeDelay::Fixed(Duration::from_millis(20));
    let client = builder(&fleet)
        .hedge(hedging)
        .route(Route::path_prefix("/single").hedge(RouteHedge::off()))
        .build()
        .expect("a hedging client");
    client.get("/single").await.expect("answered");
    assert_eq!(client.hedge_stats().hedges(), 0);
    client.get("/other").await.expect("answered");
    assert_eq!(client.hedge_stats().hedges(), 1);
}

#[test]
fn bad_routes_are_refused_naming_the_field() {
    let cases = [
        (Route::path_prefix("orders"), "routes[1].match.path_prefix"),
        (Route::grpc_method("a/b", "M"), "routes[1].match.service"),
        (Route::any().timeout(Duration::ZERO), "routes[1].timeout"),
        (
            Route::any().hedge(RouteHedge::on().max_hedges(9)),
            "routes[1].hedge.max_hedges",
        ),
    ];
    for (bad, path) in cases {
        let err = Client::builder()
            .endpoints(["127.0.0.1:1"])
            .routes([Route::path_prefix("/ok"), bad])
            .build()
            .expect_err("a bad route");
        assert_eq!(err.path(), path);
        assert_eq!(err.setting(), "routes");
    }
}

#[tokio::test(start_paused = true)]
async fn a_routes_attempt_timeout_applies_to_every_retry() {
    let fleet = fleet(
        Behavior::healthy().latency(Latency::fixed(Duration::from_millis(400))),
        1,
    )
    .await;
    let client = builder(&fleet)
        .deadline(Duration::from_secs(10))
        .attempt_timeout(Duration::from_secs(5))
        .route(
            Route::path_prefix("/quick")
                .attempt_timeout(Duration::from_millis(100))
                .max_retries(2),
        )
        .build()
        .expect("a client");
    let started = Instant::now();
    let err = client.get("/quick").await.expect_err("every attempt cut");
    assert_eq!(err.kind(), Kind::RetriesExhausted);
    assert_eq!(err.attempts(), 3);
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(fleet.totals().requests, 3);
    // Elsewhere the client's 5 s attempt lets the first answer in.
    assert_eq!(
        client.get("/").await.expect("answered").status(),
        StatusCode::OK
    );
}

/// A route's policies reach the requests under it as a server resolves their paths: a
/// `POST /v1/orders/../../admin/delete` is a POST to `/admin/delete`, and takes no idempotent
/// mark from a `/v1/orders` route (it would be sent three times); an escaped unreserved
/// character (`%6F` is `o`) still fits its route.
#[tokio::test]
async fn a_route_fits_the_path_a_server_resolves() {
    let fleet = fleet(failing(), 1).await;
    let client = builder(&fleet)
        .max_retries(2)
        .route(
            Route::path_prefix("/v1/orders")
                .idempotent(true)
                .max_retries(2),
        )
        .route(Route::path_prefix("/v1/items").max_retries(0))
        .build()
        .expect("a client");
    let dotted = "/v1/orders/../../admin/delete";
    assert_eq!(attempts(&fleet, &client, Method::POST, dotted).await, 1);
    assert_eq!(
        attempts(&fleet, &client, Method::POST, "/v1/orders/1").await,
        3
    );
    assert_eq!(
        attempts(&fleet, &client, Method::GET, "/v1/%69tems/1").await,
        1
    );
    // An escaped '/' fits no route: the client's own settings (a GET: retried).
    assert_eq!(
        attempts(&fleet, &client, Method::GET, "/v1/items%2F1").await,
        3
    );
}

/// Methods are case-sensitive: `post` would be a method no request uses, and the route would
/// silently never fit. Refused, naming the field.
#[test]
fn a_lower_case_standard_method_is_refused() {
    let route = Route::with_match(meshless::route::RouteMatch::default().methods(["post"]));
    let err = route.validate().expect_err("refused");
    assert_eq!(err.path(), "match.methods[0]");
    let odd = Route::with_match(meshless::route::RouteMatch::default().methods(["PURGE"]));
    assert!(odd.validate().is_ok(), "an extension method of its own");
}
