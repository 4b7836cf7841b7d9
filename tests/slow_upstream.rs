//! An upstream slow as a whole, through `meshless::http::Client` with its defaults, over real
//! sockets: the attempt timeout the client derives from the deadline (the deadline shared by
//! the attempts allowed) must not turn every slow answer into a failure, and the breaker must
//! not open on a partial failure.
//!
//! Real time: each backend answers after a fixed delay, far from the limits it is compared
//! with (400 ms answers against a 333 ms derived attempt timeout and a 1 s deadline).

#![cfg(feature = "testing")]

use http::StatusCode;
use http_body_util::BodyExt;
use meshless::http::Client;
use meshless::testing::{Behavior, Fleet, Latency};
use std::time::Duration;
use tokio::task::JoinSet;

/// `n` requests at once (POSTs when `post`), each read to its end: how many came back 200.
async fn served(client: &Client, n: usize, post: bool) -> (usize, Vec<String>) {
    let mut requests = JoinSet::new();
    for _ in 0..n {
        let client = client.clone();
        requests.spawn(async move {
            let res = if post {
                client.post("/", "order").await
            } else {
                client.get("/").await
            };
            match res {
                Ok(res) if res.status() == StatusCode::OK => res
                    .into_body()
                    .collect()
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("body: {e}")),
                Ok(res) => Err(res.status().to_string()),
                Err(e) => Err(format!("{:?}: {e}", e.kind())),
            }
        });
    }
    let mut ok = 0;
    let mut failures = Vec::new();
    while let Some(done) = requests.join_next().await {
        match done.expect("no request panics") {
            Ok(()) => ok += 1,
            Err(why) => failures.push(why),
        }
    }
    (ok, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_slower_than_the_derived_attempt_timeout_is_still_served() {
    let slow = || Behavior::healthy().latency(Latency::fixed(Duration::from_millis(400)));
    let fleet = Fleet::builder()
        .backend(slow())
        .backend(slow())
        .backend(slow())
        .start()
        .await
        .expect("the fleet starts");
    let client = Client::builder()
        .endpoints(fleet.addrs().iter().map(ToString::to_string))
        .deadline(Duration::from_secs(1))
        .build()
        .expect("a valid configuration");

    // The first GETs' first attempts are cut at 333 ms, and say the fleet is slow as a whole:
    // their retries, and every request after them, run to the answer.
    let (ok, failures) = served(&client, 30, false).await;
    assert_eq!(ok, 30, "GETs: {failures:?}");
    // A POST cannot be retried once sent: cut at 333 ms it could only fail.
    let (ok, failures) = served(&client, 30, true).await;
    assert_eq!(ok, 30, "POSTs: {failures:?}");
    let (ok, failures) = served(&client, 30, false).await;
    assert_eq!(ok, 30, "GETs again: {failures:?}");
}

/// A gray failure: on every endpoint one request in five hangs, the rest answer at once. A
/// fifth of the attempts running past the derived attempt timeout is no brownout: the hung
/// first attempts are cut at 333 ms and retried, and a request fails only when its retry
/// hangs too (one in 25). Standing aside, as at a tenth, a fifth of the requests hung to the
/// deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_where_a_fifth_of_the_requests_hang_is_served_by_cutting_them() {
    let gray = || Behavior::healthy().hangs(0.2);
    let fleet = Fleet::builder()
        .backend(gray())
        .backend(gray())
        .backend(gray())
        .start()
        .await
        .expect("the fleet starts");
    let client = Client::builder()
        .endpoints(fleet.addrs().iter().map(ToString::to_string))
        .deadline(Duration::from_secs(1))
        .build()
        .expect("a valid configuration");
    // A closed loop, as a service under load: 32 callers, each sending its next request when
    // the last ended, so that most start with the last two seconds' attempts counted.
    let mut callers = JoinSet::new();
    for _ in 0..32 {
        let client = client.clone();
        callers.spawn(async move {
            let (mut ok, mut failures) = (0, Vec::new());
            for _ in 0..8 {
                let (one, why) = served(&client, 1, false).await;
                ok += one;
                failures.extend(why);
            }
            (ok, failures)
        });
    }
    let (mut ok, mut failures) = (0, Vec::new());
    while let Some(served) = callers.join_next().await {
        let (one, why) = served.expect("no caller panics");
        ok += one;
        failures.extend(why);
    }
    // Expected about 245 of 256; standing aside, about 210.
    assert!(ok >= 230, "{ok} of 256 served: {failures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_failing_half_its_requests_keeps_the_breaker_closed() {
    // 500 is never retried: the breaker above the retries sees half the requests fail.
    let flaky = || Behavior::healthy().errors(0.5, StatusCode::INTERNAL_SERVER_ERROR);
    let fleet = Fleet::builder()
        .backend(flaky())
        .backend(flaky())
        .start()
        .await
        .expect("the fleet starts");
    let client = Client::builder()
        .endpoints(fleet.addrs().iter().map(ToString::to_string))
        .build()
        .expect("a valid configuration");
    let mut answered = 0;
    for _ in 0..10 {
        let mut requests = JoinSet::new();
        for _ in 0..40 {
            let client = client.clone();
            requests.spawn(async move { client.get("/").await.map(|res| res.status()) });
        }
        while let Some(done) = requests.join_next().await {
            match done.expect("no request panics") {
                Ok(_) => answered += 1,
                Err(e) => panic!("refused or failed instead of answered: {e:?}"),
            }
        }
    }
    assert_eq!(answered, 400);
    assert_eq!(client.breaker().state().as_str(), "closed");
}
