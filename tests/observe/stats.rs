//! `stats()`: the always-on request statistics.

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn recent_stats_give_the_success_rate_and_percentiles() {
    let slow = tower::service_fn(|req: Request<ReplayBody<Empty<Bytes>>>| async move {
        // The path says how long to take and what to answer.
        let path = req.uri().path().trim_start_matches('/').to_string();
        let (delay, status) = path.split_once('/').unwrap();
        tokio::time::sleep(ms(delay.parse().unwrap())).await;
        let mut res = Response::new(Empty::<Bytes>::new());
        *res.status_mut() = StatusCode::from_u16(status.parse().unwrap()).unwrap();
        Ok::<_, Infallible>(res)
    });
    let retry = RetryLayer::new(Budget::default()).max_retries(0);
    let stats = retry.stats();
    let svc = ServiceBuilder::new().layer(retry).service(slow);
    // 90 fast successes, 9 slower ones, one slow failure.
    for (n, path) in [(90, "/10/200"), (9, "/100/200"), (1, "/1000/500")] {
        for _ in 0..n {
            let req = Request::get(path).body(Empty::<Bytes>::new()).unwrap();
            let _ = svc.clone().oneshot(req).await.unwrap();
        }
    }
    let recent = stats.recent();
    assert_eq!((recent.successes, recent.failures), (99, 1));
    assert_eq!(recent.success_rate(), Some(0.99));
    let near = |got: Option<Duration>, want: Duration| {
        let got = got.unwrap().as_secs_f64();
        let want = want.as_secs_f64();
        assert!((got - want).abs() <= want / 8.0, "{got} vs {want}");
    };
    near(recent.p50, ms(10));
    near(recent.p90, ms(10));
    near(recent.p99, ms(100));
    assert!(recent.window >= ms(1000) && recent.window <= Duration::from_secs(60));

    // A minute later the window has moved past all of it.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(stats.recent().requests(), 0);
    assert_eq!(stats.requests(), 100, "lifetime counts stay");
}

#[tokio::test]
async fn client_stats_over_a_fleet() {
    let fleet = Fleet::builder()
        .backend(Backend::new(Behavior::healthy()))
        .backend(Backend::new(Behavior::healthy()))
        .backend(Backend::new(
            Behavior::healthy().errors(1.0, StatusCode::SERVICE_UNAVAILABLE),
        ))
        .start()
        .await
        .unwrap();
    let addrs: Vec<String> = fleet.addrs().iter().map(|a| a.to_string()).collect();
    let client = meshless::http::Client::builder()
        .endpoints(addrs.clone())
        .service_name("inventory")
        .build()
        .unwrap();
    for _ in 0..100 {
        let _ = client.get("/items").await;
    }
    let stats = client.stats();
    assert_eq!(stats.service, "inventory");
    assert_eq!(stats.requests, 100);
    assert_eq!(stats.successes + stats.failures + stats.cancelled, 100);
    assert_eq!(stats.recent.requests(), 100);
    let rate = stats.success_rate().unwrap();
    assert!(rate > 0.9, "retries hide the bad endpoint: {rate}");
    assert!(stats.recent.p50.is_some() && stats.recent.p99 >= stats.recent.p50);
    assert_eq!(stats.endpoints.len(), 3);
    let bad: std::net::SocketAddr = addrs[2].parse().unwrap();
    let bad = stats.endpoints.iter().find(|e| e.key == bad).unwrap();
    // Its 503s are misses, which raise its cost above the 30 ms default it started from (by
    // half at one miss: 44 ms), and keep traffic away from it.
    assert!(bad.failures > 0 && bad.rtt > ms(35), "{bad:?}");
    assert!(stats.endpoints.iter().all(|e| e.rtt > Duration::ZERO));
    fleet.shutdown().await;
}
