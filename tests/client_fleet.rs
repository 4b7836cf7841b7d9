//! `meshless::http::Client` and `meshless::balance::Balance` over real sockets, against a
//! `meshless::testing::Fleet` of misbehaving backends on 127.0.0.1 (ports picked by the OS).
//!
//! Real time drives the load here; no assertion waits for a timer or depends on the scheduler's
//! timing. The traffic shares asserted are statistical, so each threshold is far from the values
//! observed (all but the 99.9% success rate, which is the requirement itself), and each comment
//! says what was observed and why the margin holds.

#![cfg(feature = "testing")]

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use meshless::balance::Balance;
use meshless::http::Client;
use meshless::testing::{Behavior, Fleet, Latency};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::task::JoinSet;
use tower::{ServiceExt, service_fn};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a batch of requests came to.
#[derive(Debug, Default)]
struct Outcome {
    ok: u64,
    non_2xx: u64,
    errors: u64,
    /// What the failures were (status or error), for the test's output.
    failures: Vec<String>,
}

/// `total` GETs through `client`, `concurrency` at a time, each read to the end of its body.
async fn drive(client: &Client, total: usize, concurrency: usize) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (client, next) = (client.clone(), next.clone());
        workers.spawn(async move {
            let mut outcome = Outcome::default();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                match client.get("/").await {
                    Ok(res) if res.status().is_success() => match res.into_body().collect().await {
                        Ok(_) => outcome.ok += 1,
                        Err(e) => {
                            outcome.errors += 1;
                            outcome.failures.push(format!("body: {e}"));
                        }
                    },
                    Ok(res) => {
                        outcome.non_2xx += 1;
                        outcome.failures.push(res.status().to_string());
                    }
                    Err(e) => {
                        outcome.errors += 1;
                        outcome.failures.push(format!("{:?}: {e}", e.kind()));
                    }
                }
            }
            outcome
        });
    }
    let mut total = Outcome::default();
    while let Some(done) = workers.join_next().await {
        let outcome = done.expect("a worker panicked");
        total.ok += outcome.ok;
        total.non_2xx += outcome.non_2xx;
        total.errors += outcome.errors;
        total.failures.extend(outcome.failures);
    }
    total
}

/// Requests each backend has received so far.
fn received(fleet: &Fleet) -> Vec<u64> {
    fleet
        .backends()
        .iter()
        .map(|b| b.counters().requests())
        .collect()
}

const SLOW: usize = 2;
const FLAKY: usize = 3;
const DOWN: usize = 4;
const HANGING: usize = 5;

/// What the measured phase of [`misbehaving_fleet`] came to.
struct Measured {
    outcome: Outcome,
    /// Requests each backend received (attempts, retries included).
    received: Vec<u64>,
    /// Attempts the balancer finished on each endpoint (refused connections included).
    attempts: Vec<u64>,
}

impl Measured {
    fn share(&self, backend: usize) -> f64 {
        self.received[backend] as f64 / self.received.iter().sum::<u64>() as f64
    }
}

/// The slow backend's latency: 200 ms rather than 80 ms, see
/// `the_client_routes_around_a_misbehaving_fleet`.
const SLOW_LATENCY: Duration = ms(200);

/// Two healthy backends (1 ms), one slow ([`SLOW_LATENCY`]), one failing half its requests
/// with `503`, one refusing connections, one never answering; a client over all six, with a
/// 2 s deadline, a 300 ms attempt timeout and otherwise its defaults. A warm-up of 300
/// requests at concurrency 16; then 2,000 requests at concurrency 16, measured.
async fn misbehaving_fleet() -> Measured {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().latency(Latency::fixed(ms(1))))
        .backend(Behavior::healthy().latency(Latency::fixed(ms(1))))
        .backend(Behavior::healthy().latency(Latency::fixed(SLOW_LATENCY)))
        .backend(Behavior::healthy().errors(0.5, StatusCode::SERVICE_UNAVAILABLE))
        .backend(Behavior::down())
        .backend(Behavior::healthy().hangs(1.0))
        .start()
        .await
        .expect("the fleet starts");
    let client = Client::builder()
        .endpoints(fleet.addrs().iter().map(ToString::to_string))
        .deadline(Duration::from_secs(2))
        .attempt_timeout(ms(300))
        .build()
        .expect("a valid configuration");

    let started = std::time::Instant::now();
    let warm = drive(&client, 300, 16).await;
    println!("warm-up: {warm:?} in {:?}", started.elapsed());

    let before = received(&fleet);
    let stats_before = client.endpoints();
    let retries_before = client.retry_stats().retries();
    let started = std::time::Instant::now();
    let outcome = drive(&client, 2_000, 16).await;
    let elapsed = started.elapsed();
    let measured = Measured {
        outcome,
        received: received(&fleet)
            .iter()
            .zip(&before)
            .map(|(a, b)| a - b)
            .collect(),
        attempts: client
            .endpoints()
            .iter()
            .zip(&stats_before)
            .map(|(a, b)| a.requests - b.requests)
            .collect(),
    };
    println!(
        "measured: {:?} in {elapsed:?}; received by backend {:?}; attempts by endpoint {:?}; \
         retries {}; slow share {:.1}%",
        measured.outcome,
        measured.received,
        measured.attempts,
        client.retry_stats().retries() - retries_before,
        100.0 * measured.share(SLOW)
    );
    for stats in client.endpoints() {
        println!("  {stats:?}");
    }
    fleet.shutdown().await;
    measured
}

/// The client over the misbehaving fleet.
///
/// - Success: a request fails only if three attempts in a row fail (two retries, each to a
///   freshly chosen endpoint) or the retry budget runs dry. The refusing and hanging backends
///   are ejected during warm-up, and the flaky one is dear (each failure counts as 1 s of
///   latency) or ejected. Observed over 1,000 requests: 1,000 in 138 runs of 145, 999 in
///   six, 998 once (a CI run). A failed request is rare (about 1 in 20,000) but the bound sat
///   one failure from a sample of 1,000; over 2,000 requests the same 99.9% allows two, which
///   such a rate exceeds about once in several thousand runs. (In warm-up, with nothing ejected yet, about one run in
///   four has one failure: three attempts that all met a broken backend.)
/// - The slow backend: observed 0.2% to 2.7% of the requests the backends received (54
///   runs); the bound is 5%. With an 80 ms slow backend the share was not reliably under 5%
///   on this machine (0.2% to 17%): an endpoint's cost is its RTT × (requests in flight +
///   1), and at concurrency 16 each healthy endpoint carries about 8, so an idle 80 ms
///   endpoint looks cheaper than a healthy one as soon as that one's peak RTT estimate passes
///   10 ms, which one CPU stall on a shared 2-core machine causes (and the estimate forgets it
///   over seconds). At 200 ms the healthy estimate must pass 25 ms. Before da4b99d (P2C took the
///   usable endpoint of a pair with an ejected one, uncompared) it got 19% to 27%.
/// - The hanging and the refusing backends: ejected after 5 failures in a row, then probed
///   once per ejection (1 to 1.5 s, doubling). Observed: 0 or 1 request each; the bound is 2%
///   (20). The refusing one never receives a request (its connections are refused), so it is
///   counted by the balancer's attempts.
/// - The flaky backend: observed 0% to 13%; the bound is 25%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_routes_around_a_misbehaving_fleet() {
    let m = misbehaving_fleet().await;
    let o = &m.outcome;
    assert_eq!(o.ok + o.non_2xx + o.errors, 2_000);
    assert!(o.ok >= 1_998, "success rate below 99.9%: {o:?}");
    assert!(
        m.share(SLOW) < 0.05,
        "the slow backend got {:.1}% of the requests: {:?}",
        100.0 * m.share(SLOW),
        m.received
    );
    assert!(m.received[HANGING] <= 20, "hanging: {:?}", m.received);
    assert!(m.attempts[DOWN] <= 20, "refusing: {:?}", m.attempts);
    assert!(m.share(FLAKY) < 0.25, "flaky: {:?}", m.received);
}

/// A `Balance` of hyper-util clients, one per backend: three healthy backends (1 ms), 2,000
/// requests at concurrency 32, and one endpoint removed after the 500th completion. Every
/// request gets its `200`, and the removed backend receives nothing after its removal.
///
/// The runtime is current-thread on purpose: a request picks its endpoint and calls it in one
/// poll, so when the removal runs (in a task that then holds the thread), every request has
/// either already called the removed endpoint or will pick from the new set. The count of calls
/// at removal is therefore exact, and "nothing after removal" can be asserted exactly, with no
/// window for a race.
#[tokio::test(flavor = "current_thread")]
async fn removing_an_endpoint_under_load_loses_no_request() {
    let fleet = Fleet::builder()
        .backends(vec![
            Behavior::healthy()
                .latency(Latency::fixed(ms(1)))
                .into();
            3
        ])
        .start()
        .await
        .expect("the fleet starts");
    let hyper = HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let calls: Arc<Vec<AtomicU64>> = Arc::new((0..3).map(|_| AtomicU64::new(0)).collect());
    let balance = Balance::builder().build();
    for (i, addr) in fleet.addrs().into_iter().enumerate() {
        let (hyper, calls) = (hyper.clone(), calls.clone());
        // Aims each request at this backend: the URI's authority becomes its address.
        let endpoint = service_fn(move |mut req: Request<Empty<Bytes>>| {
            calls[i].fetch_add(1, Ordering::SeqCst);
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            *req.uri_mut() = Uri::try_from(format!("http://{addr}{path}")).expect("a valid URI");
            hyper.request(req)
        });
        balance.insert(addr, endpoint);
    }
    let removed: SocketAddr = fleet.backend(1).addr();
    const TOTAL: usize = 2_000;
    const REMOVE_AFTER: usize = 500;

    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let calls_at_removal = Arc::new(AtomicU64::new(u64::MAX));
    let mut workers = JoinSet::new();
    for _ in 0..32 {
        let (balance, next, done) = (balance.clone(), next.clone(), done.clone());
        let (calls, calls_at_removal) = (calls.clone(), calls_at_removal.clone());
        workers.spawn(async move {
            let mut statuses = Vec::new();
            while next.fetch_add(1, Ordering::SeqCst) < TOTAL {
                let req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
                let res = balance.clone().oneshot(req).await.expect("a response");
                let status = res.status();
                res.into_body().collect().await.expect("the whole body");
                statuses.push(status);
                if done.fetch_add(1, Ordering::SeqCst) + 1 == REMOVE_AFTER {
                    balance.remove(&removed);
                    calls_at_removal.store(calls[1].load(Ordering::SeqCst), Ordering::SeqCst);
                }
            }
            statuses
        });
    }
    let mut statuses = Vec::with_capacity(TOTAL);
    while let Some(worker) = workers.join_next().await {
        statuses.extend(worker.expect("a worker panicked"));
    }

    assert_eq!(statuses.len(), TOTAL);
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    let at_removal = calls_at_removal.load(Ordering::SeqCst);
    let calls: Vec<u64> = calls.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    let received = received(&fleet);
    println!("calls {calls:?}, removed endpoint's at removal {at_removal}, received {received:?}");
    assert!(
        at_removal > 0,
        "the removed endpoint had taken traffic before"
    );
    assert_eq!(calls[1], at_removal, "no call after the removal");
    assert_eq!(
        received[1], at_removal,
        "the removed backend received exactly the requests sent before the removal"
    );
    assert_eq!(
        calls.iter().sum::<u64>(),
        TOTAL as u64,
        "one call per request"
    );
    assert_eq!(received.iter().sum::<u64>(), TOTAL as u64);
    assert_eq!(balance.len(), 2);
    fleet.shutdown().await;
}
