//! Routes and hot reload through `http::Client` over real sockets.

mod common;
mod edges_support;

use edges_support::*;
use meshless::route::Route;
use std::sync::Mutex;

/// Never answers; records each connection's life after its head.
async fn hanging(lives: Arc<Mutex<Vec<Duration>>>) -> SocketAddr {
    common::serve_sockets(move |socket, _| {
        let lives = lives.clone();
        async move {
            let t = std::time::Instant::now();
            hold(socket).await;
            lives.lock().unwrap().push(t.elapsed());
        }
    })
    .await
}

/// Answers each request after `delay` (one request per connection).
async fn slow(delay: Duration) -> SocketAddr {
    common::serve_sockets(move |socket, _| answer_after(socket, delay, "ok")).await
}

/// (retries, attempt_timeouts, connection lives) of one GET `path` against a hanging endpoint.
async fn one_hang(
    client: &Client,
    lives: &Arc<Mutex<Vec<Duration>>>,
    path: &str,
) -> (u64, u64, Vec<Duration>) {
    let before = client.stats();
    let n = lives.lock().unwrap().len();
    let _ = client.get(path).await.unwrap_err();
    let s = client.stats();
    let attempts = (s.retries - before.retries + 1) as usize;
    wait_until(Duration::from_secs(2), || {
        lives.lock().unwrap().len() >= n + attempts
    })
    .await;
    let mut l: Vec<Duration> = lives.lock().unwrap()[n..].to_vec();
    l.sort();
    (
        s.retries - before.retries,
        s.attempt_timeouts - before.attempt_timeouts,
        l,
    )
}

/// README: "The first route that fits a request wins; the others run with the client's
/// settings." A request no route fits runs as in a client without routes: its first attempt
/// cut at deadline ÷ 3, its retry run to the deadline.
#[test]
fn a_request_no_route_fits_runs_with_the_clients_attempt_timeout() {
    run(|_snap| async move {
        let lives = Arc::new(Mutex::new(Vec::new()));
        let addr = hanging(lives.clone()).await;
        let plain = client_for(&[addr], "r_plain")
            .deadline(ms(1500))
            .build()
            .unwrap();
        let routed = client_for(&[addr], "r_routed")
            .deadline(ms(1500))
            .route(Route::path_prefix("/elsewhere").max_retries(0))
            .build()
            .unwrap();
        let a = one_hang(&plain, &lives, "/").await;
        let b = one_hang(&routed, &lives, "/").await;
        eprintln!("without routes: {a:?}\nwith an unrelated route: {b:?}");
        assert_eq!(
            (a.0, a.1),
            (b.0, b.1),
            "(retries, attempt timeouts) differ: without routes {a:?}, with an unrelated route {b:?}"
        );
    });
}

/// Reloading an empty list of routes on a client built without any changes nothing.
#[test]
fn reloading_no_routes_changes_nothing() {
    run(|_snap| async move {
        let lives = Arc::new(Mutex::new(Vec::new()));
        let addr = hanging(lives.clone()).await;
        let client = client_for(&[addr], "r_empty")
            .deadline(ms(1500))
            .build()
            .unwrap();
        let a = one_hang(&client, &lives, "/").await;
        client.reload_routes(Vec::new()).unwrap();
        let b = one_hang(&client, &lives, "/").await;
        eprintln!("before reload: {a:?}\nafter reloading no routes: {b:?}");
        assert_eq!((a.0, a.1), (b.0, b.1), "before {a:?}, after {b:?}");
    });
}

/// A bad route: an error naming it, and nothing changed.
#[test]
fn a_bad_reload_changes_nothing() {
    run(|_snap| async move {
        let addr = slow(ms(200)).await;
        let client = client_for(&[addr], "r_bad")
            .route(Route::path_prefix("/a").timeout(ms(50)))
            .build()
            .unwrap();
        let before = format!("{:?}", client.routes());
        let err = client
            .reload_routes([
                Route::path_prefix("/b").timeout(Duration::from_secs(1)),
                Route::path_prefix("/c").timeout(Duration::ZERO),
            ])
            .unwrap_err();
        assert_eq!(err.path(), "routes[1].timeout", "{err}");
        assert_eq!(format!("{:?}", client.routes()), before);
        // "/a" still times out at 50 ms.
        let err = client.get("/a").await.unwrap_err();
        assert_eq!(err.kind(), Kind::DeadlineExceeded);
    });
}

/// A request in flight keeps the deadline it started with when a reload shortens it.
#[test]
fn a_reload_leaves_requests_in_flight_alone() {
    run(|snap| async move {
        let addr = slow(ms(400)).await;
        let client = client_for(&[addr], "r_flight")
            .deadline(Duration::from_secs(5))
            .build()
            .unwrap();
        let c = client.clone();
        let inflight = tokio::spawn(async move {
            let r = c.get("/x").await?;
            r.into_body()
                .collect()
                .await
                .map_err(meshless::Error::from_service)?;
            Ok::<_, meshless::Error>(())
        });
        let c = client.clone();
        assert!(
            wait_until(Duration::from_secs(2), move || c.stats().endpoints[0]
                .in_flight
                == 1)
            .await
        );
        client
            .reload_routes([Route::path_prefix("/x").timeout(ms(100)).max_retries(0)])
            .unwrap();
        let out = inflight.await.unwrap();
        assert!(out.is_ok(), "the request in flight: {out:?}");
        let err = client.get("/x").await.unwrap_err();
        // The same policy set on a client rather than a route.
        let plain = client_for(&[addr], "r_flight_plain")
            .deadline(ms(100))
            .max_retries(0)
            .build()
            .unwrap();
        let err_plain = plain.get("/x").await.unwrap_err();
        eprintln!(
            "route timeout 100ms, max_retries 0: {err:?}; client deadline 100ms, max_retries 0: {err_plain:?}"
        );
        assert!(
            matches!(
                err.kind(),
                Kind::DeadlineExceeded | Kind::RetriesExhausted | Kind::AttemptTimedOut
            ),
            "{err:?}"
        );
        let v = settle_and_check(&client, &snap, "r_flight").await;
        report(&v, &client, &snap);
    });
}
