//! Live reconfiguration of `http::Client` while requests are in flight.
#![cfg(feature = "serde")]

use meshless::http::Client;
use meshless::policy::ClientConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::{Respond, serve_statuses as server};

fn config(addr: SocketAddr, extra: &str) -> ClientConfig {
    let text = format!(
        "endpoints = ['{addr}']\nmetrics = false\n[retry]\nmax_retries = 2\nbackoff = {{ base = '1ms', cap = '1ms' }}\n[budget]\nmin_per_second = 100000.0\n[balance.outlier]\nconsecutive_failures = 'off'\n{extra}"
    );
    ClientConfig::from_toml_str(&text).expect("a valid config")
}

fn client(config: &ClientConfig) -> Client {
    meshless::http::ClientBuilder::from_config(config)
        .and_then(|b| b.build())
        .expect("a client")
}

/// A request already retrying when a reload cuts `max_retries` to 0 finishes with the
/// retries it started with; the next request takes the new setting.
#[tokio::test]
async fn a_request_in_flight_keeps_its_retries_across_a_reload() {
    let arrived = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (a, r) = (arrived.clone(), release.clone());
    let respond: Respond = Arc::new(move |n, _| {
        let (a, r) = (a.clone(), r.clone());
        Box::pin(async move {
            if n == 0 {
                a.notify_one();
                r.notified().await;
            }
            503
        })
    });
    let (addr, hits) = server(respond).await;
    let old = config(addr, "");
    let client = client(&old);
    let in_flight = tokio::spawn(client.get("/x"));
    arrived.notified().await;
    let mut new = old.clone();
    new.retry.max_retries = 0;
    client.reload(&new).expect("a valid reload");
    release.notify_one();
    let res = in_flight.await.unwrap();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "in flight: 1 + 2 retries, {res:?}"
    );
    let _ = client.get("/x").await;
    assert_eq!(hits.load(Ordering::SeqCst), 4, "new: no retry");
    let s = client.stats();
    assert_eq!(s.requests, 2);
    assert_eq!(s.requests, s.successes + s.failures + s.cancelled);
}

/// Settings a running client cannot change are refused by name, and the old ones stay.
#[tokio::test]
async fn unreloadable_protection_settings_are_refused_by_name_and_change_nothing() {
    let respond: Respond = Arc::new(|_, _| Box::pin(async { 503 }));
    let (addr, hits) = server(respond).await;
    let old = config(addr, "");
    let client = client(&old);
    type Edit = Box<dyn Fn(&mut ClientConfig)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "limit",
            Box::new(|c| c.limit.algorithm = meshless::limit::Algorithm::Fixed { max: 1 }),
        ),
        (
            "limit",
            Box::new(|c| c.limit.max_wait = Duration::from_secs(1)),
        ),
        ("breaker", Box::new(|c| c.breaker.enabled = false)),
        ("breaker", Box::new(|c| c.breaker.half_open_probes = 7)),
        ("throttle", Box::new(|c| c.throttle.enabled = true)),
        ("budget", Box::new(|c| c.budget.ratio = 0.5)),
        (
            "endpoints",
            Box::new(|c| c.endpoints.push("127.0.0.1:1".into())),
        ),
        // With the change beside a reloadable one: still refused as a whole.
        (
            "throttle",
            Box::new(|c| {
                c.retry.max_retries = 0;
                c.throttle.k = 3.0;
            }),
        ),
    ];
    for (prefix, edit) in &cases {
        let mut new = old.clone();
        edit(&mut new);
        let err = client.reload(&new).expect_err("refused");
        assert_eq!(err.setting(), "reload", "{err}");
        assert!(err.path().starts_with(prefix), "{prefix}: {}", err.path());
    }
    // max_retries still 2: three attempts.
    let _ = client.get("/").await;
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

/// An invalid reloadable value is refused by its path, and the old value stays in force.
#[tokio::test]
async fn an_invalid_deadline_or_attempt_timeout_is_refused_and_the_old_one_stays() {
    let respond: Respond = Arc::new(|_, _| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            200
        })
    });
    let (addr, _) = server(respond).await;
    let old = config(addr, "[deadline]\ntimeout = '5s'\n");
    let client = client(&old);
    let mut bad = old.clone();
    bad.deadline.timeout = Duration::ZERO;
    let err = client.reload(&bad).expect_err("0 deadline");
    assert_eq!(err.path(), "deadline.timeout", "{err}");
    let mut bad = old.clone();
    bad.attempt_timeout.timeout = Some(Duration::ZERO);
    let err = client.reload(&bad).expect_err("0 attempt timeout");
    assert_eq!(err.path(), "attempt_timeout.timeout", "{err}");
    let res = client.get("/").await.expect("old deadline still 5 s");
    assert_eq!(res.status(), 200);
}

/// Reloads racing with requests: every request runs under one policy, 0 or 2 retries, never
/// a mix (1 retry would mean the max changed mid-request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_reloads_give_each_request_one_consistent_retry_policy() {
    let per_id: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let seen = per_id.clone();
    let respond: Respond = Arc::new(move |_, head| {
        let id = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("x-id: ")
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        *seen.lock().unwrap().entry(id).or_default() += 1;
        Box::pin(async { 503 })
    });
    let (addr, _) = server(respond).await;
    let old = config(addr, "[breaker]\nenabled = false\n");
    let client = client(&old);
    let reloader = {
        let client = client.clone();
        let old = old.clone();
        tokio::spawn(async move {
            for i in 0..400u32 {
                let mut c = old.clone();
                c.retry.max_retries = if i % 2 == 0 { 0 } else { 2 };
                client.reload(&c).expect("valid");
                tokio::task::yield_now().await;
            }
        })
    };
    let mut tasks = Vec::new();
    for id in 0..200 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let req = http::Request::get("/")
                .header("x-id", id.to_string())
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let _ = client.request(req).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    reloader.await.unwrap();
    let per_id = per_id.lock().unwrap();
    assert_eq!(per_id.len(), 200);
    let mixed: Vec<_> = per_id
        .iter()
        .filter(|(_, n)| **n != 1 && **n != 3)
        .collect();
    assert!(mixed.is_empty(), "{mixed:?}");
    let s = client.stats();
    assert_eq!(s.requests, 200);
    assert_eq!(s.requests, s.successes + s.failures + s.cancelled);
}

/// The attempt timeout derived from the deadline (deadline ÷ attempts) follows a reloaded
/// deadline: a 3 s deadline with 2 retries cuts a hanging first attempt at 1 s; reloaded to
/// 300 ms, at 100 ms, so that the retry still fits.
#[tokio::test]
async fn a_reloaded_deadline_moves_the_derived_attempt_timeout() {
    let respond: Respond = Arc::new(|n, _| {
        Box::pin(async move {
            if n % 2 == 0 {
                std::future::pending::<()>().await;
            }
            200
        })
    });
    let (addr, hits) = server(respond).await;
    let old = config(addr, "[deadline]\ntimeout = '30s'\n");
    let client = client(&old);
    let mut new = old.clone();
    new.deadline.timeout = Duration::from_millis(600);
    client.reload(&new).expect("valid");
    let started = std::time::Instant::now();
    let res = client.get("/").await.expect("the retry answers");
    assert_eq!(res.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
}
