//! Hot reload: a new configuration swaps in for new requests, whole or not at all, while
//! requests in flight finish under their own and the client's state carries on.
#![cfg(feature = "serde")]

use http::StatusCode;
use meshless::error::Kind;
use meshless::http::Client;
use meshless::policy::ClientConfig;
use meshless::route::Route;
use meshless::testing::{Behavior, Fleet, Latency};
use std::time::Duration;

async fn fleet(behaviors: impl IntoIterator<Item = Behavior>) -> Fleet {
    Fleet::builder()
        .backends(behaviors.into_iter().map(Into::into))
        .start()
        .await
        .expect("the fleet starts")
}

fn config(fleet: &Fleet, extra: &str) -> ClientConfig {
    let addrs: Vec<String> = fleet.addrs().iter().map(|a| format!("'{a}'")).collect();
    let text = format!(
        "endpoints = [{}]\nmetrics = false\n[retry]\nbackoff = {{ base = '1ms', cap = '1ms' }}\n{extra}",
        addrs.join(", ")
    );
    ClientConfig::from_toml_str(&text).expect("a valid config")
}

#[tokio::test(start_paused = true)]
async fn requests_in_flight_keep_their_policy_while_new_ones_take_the_new() {
    let fleet =
        fleet([Behavior::healthy().latency(Latency::fixed(Duration::from_millis(300)))]).await;
    let old = config(&fleet, "[deadline]\ntimeout = '1s'\n");
    let client = Client::builder().build_from(&old);
    let in_flight = tokio::spawn(client.get("/"));
    // Let it be sent under the old deadline.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fleet.backend(0).counters().requests(), 1);

    let mut new = old.clone();
    new.deadline.timeout = Duration::from_millis(100);
    client.reload(&new).expect("a valid reload");
    let after = client.get("/").await.expect_err("under the new deadline");
    assert_eq!(after.kind(), Kind::DeadlineExceeded);
    let res = in_flight
        .await
        .expect("not cancelled")
        .expect("under the old deadline");
    assert_eq!(res.status(), StatusCode::OK);
}

trait BuildFrom {
    fn build_from(self, config: &ClientConfig) -> Client;
}

impl BuildFrom for meshless::http::ClientBuilder {
    fn build_from(self, config: &ClientConfig) -> Client {
        meshless::http::ClientBuilder::from_config(config)
            .and_then(|b| b.build())
            .expect("a client")
    }
}

#[tokio::test]
async fn a_bad_reload_changes_nothing() {
    let fleet = fleet([Behavior::healthy().errors(1.0, StatusCode::SERVICE_UNAVAILABLE)]).await;
    let base = config(
        &fleet,
        "[balance.outlier]\nconsecutive_failures = 'off'\n[[routes]]\nmatch = { path_prefix = '/once' }\nmax_retries = 0\n",
    );
    let client = Client::builder().build_from(&base);
    let attempts = |path: &'static str| {
        let client = client.clone();
        let fleet = &fleet;
        async move {
            let before = fleet.totals().requests;
            client.get(path).await.expect("answered");
            fleet.totals().requests - before
        }
    };
    assert_eq!((attempts("/once").await, attempts("/x").await), (1, 3));

    let mut bad = base.clone();
    bad.retry.max_retries = 0;
    bad.routes.push(Route::path_prefix("oops"));
    let err = client.reload(&bad).expect_err("a bad route");
    assert_eq!(err.path(), "routes[1].match.path_prefix");

    let mut fixed = base.clone();
    fixed.retry.max_retries = 0;
    fixed.endpoints.push("127.0.0.1:9".into());
    let err = client
        .reload(&fixed)
        .expect_err("endpoints are not reloadable");
    assert_eq!(
        (err.setting(), err.path().as_str()),
        ("reload", "endpoints")
    );
    let mut fixed = base.clone();
    fixed.breaker.window = Duration::from_secs(3);
    let err = client
        .reload(&fixed)
        .expect_err("the breaker is not reloadable");
    assert_eq!(err.path(), "breaker.window");
    let mut fixed = base.clone();
    let mut hedge = meshless::hedge::HedgeConfig::default();
    hedge.max_extra_load = 0.5;
    fixed.hedge = Some(hedge);
    let err = client
        .reload(&fixed)
        .expect_err("the extra-load cap is the layer's");
    assert_eq!(err.path(), "hedge.max_extra_load");

    assert_eq!((attempts("/once").await, attempts("/x").await), (1, 3));
    assert_eq!(client.routes(), base.routes);

    // A good one applies whole: the routes and the client's own retries at once.
    let mut good = base.clone();
    good.retry.max_retries = 1;
    good.routes = vec![Route::path_prefix("/x").max_retries(0)];
    client.reload(&good).expect("a valid reload");
    assert_eq!((attempts("/once").await, attempts("/x").await), (2, 1));
}

#[tokio::test]
async fn endpoint_state_survives_a_reload() {
    let fleet = fleet([
        Behavior::healthy(),
        Behavior::healthy().errors(1.0, StatusCode::SERVICE_UNAVAILABLE),
    ])
    .await;
    let base = config(&fleet, "");
    let client = Client::builder().build_from(&base);
    for _ in 0..40 {
        let _ = client.get("/").await;
    }
    let before = client.endpoints();
    let failing = fleet.addrs()[1];
    let penalised = |stats: &[meshless::balance::EndpointStats<std::net::SocketAddr>]| {
        stats
            .iter()
            .find(|e| e.key == failing)
            .map(|e| (e.failures, e.rtt))
    };
    let (failures, rtt) = penalised(&before).expect("the failing endpoint is listed");
    // Its misses raised its cost above the 30 ms default it started from.
    assert!(
        failures >= 1 && rtt >= Duration::from_millis(35),
        "{before:?}"
    );
    let retries_before = client.retry_stats().retries();

    let mut new = base.clone();
    new.retry.max_retries = 0;
    new.deadline.timeout = Duration::from_secs(3);
    client.reload(&new).expect("a valid reload");
    let after = client.endpoints();
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (b.key, b.requests, b.failures, b.ejections, b.status),
            (a.key, a.requests, a.failures, a.ejections, a.status)
        );
    }
    // The peak-EWMA RTT decays with time, so the costs are compared: the failing endpoint's
    // misses still keep it above the healthy one's.
    let (_, rtt) = penalised(&after).expect("the failing endpoint is listed");
    let healthy = after.iter().find(|e| e.key != failing).map(|e| e.rtt);
    assert!(Some(rtt) > healthy, "{after:?}");
    assert_eq!(client.retry_stats().retries(), retries_before);
    // The failing endpoint's misses are still what steer requests away from it.
    let sent_to_failing = fleet.backend(1).counters().requests();
    for _ in 0..10 {
        assert_eq!(
            client.get("/").await.expect("answered").status(),
            StatusCode::OK
        );
    }
    assert_eq!(fleet.backend(1).counters().requests(), sent_to_failing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_while_requests_run_loses_none() {
    let fleet = fleet([
        Behavior::healthy().latency(Latency::fixed(Duration::from_millis(2))),
        Behavior::healthy().latency(Latency::fixed(Duration::from_millis(2))),
    ])
    .await;
    let base = config(&fleet, "");
    let client = Client::builder().build_from(&base);
    let requests: Vec<_> = (0..200)
        .map(|i| tokio::spawn(client.get(format!("/r/{i}"))))
        .collect();
    for i in 0..20u32 {
        let mut next = base.clone();
        next.retry.max_retries = i % 3;
        next.routes = vec![Route::path_prefix("/r").timeout(Duration::from_secs(5 + u64::from(i)))];
        client.reload(&next).expect("a valid reload");
        tokio::task::yield_now().await;
    }
    let mut answered = 0;
    for request in requests {
        let res = request.await.expect("the task ends").expect("answered");
        assert_eq!(res.status(), StatusCode::OK);
        answered += 1;
    }
    assert_eq!(answered, 200);
    assert_eq!(fleet.totals().requests, 200, "each sent once");
    assert_eq!(client.stats().requests, 200);
}

#[tokio::test]
async fn a_client_built_in_code_reloads_its_routes_and_refuses_a_whole_configuration() {
    let fleet = fleet([Behavior::healthy().errors(1.0, StatusCode::SERVICE_UNAVAILABLE)]).await;
    let client = Client::builder()
        .endpoints([fleet.addrs()[0].to_string()])
        .backoff(meshless::backoff::Backoff::none())
        .metrics(false)
        .build()
        .expect("a client");
    client
        .reload_routes([Route::any().max_retries(0)])
        .expect("valid routes");
    client.get("/").await.expect("answered");
    assert_eq!(fleet.totals().requests, 1);

    let path = std::env::temp_dir().join(format!("meshless-reload-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "endpoints: ['{}']\nretry: {{ max_retries: 1 }}\n",
            fleet.addrs()[0]
        ),
    )
    .expect("written");
    // Built in code: a file's defaults (a 10 s deadline, its retries) would replace what the
    // client was built with, unseen. Refused; nothing changes.
    let err = client
        .reload_file(&path)
        .expect_err("no configuration to compare with");
    std::fs::remove_file(&path).expect("removed");
    assert_eq!(err.setting(), "reload");
    assert_eq!(client.routes(), vec![Route::any().max_retries(0)]);
    client.get("/").await.expect("answered");
    assert_eq!(fleet.totals().requests, 2);
}
