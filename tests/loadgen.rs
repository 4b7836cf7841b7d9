//! The loadgen example's contract: its command line, its exit statuses and its one JSON object.
//!
//! Each test starts a fleet on 127.0.0.1 and runs the example through cargo, as a harness would
//! (`cargo run --quiet --example loadgen -- ...`), with few requests so that it stays fast.

use meshless::testing::{Behavior, Fleet, Latency};
use serde_json::Value;
use std::process::{Command, Output};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// The open loop's schedule, checked directly: no command line reaches its far end.
#[path = "../examples/loadgen/schedule.rs"]
mod schedule;

/// Runs the example with `args`, in the same profile as this test.
async fn loadgen<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "run",
        "--quiet",
        "--example",
        "loadgen",
    ]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    command.arg("--").args(args);
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the blocking task ran")
        .expect("cargo runs")
}

/// A fleet of `behaviors` and its addresses as `--endpoints` takes them.
async fn fleet(behaviors: &[Behavior]) -> (Fleet, String) {
    let mut builder = Fleet::builder();
    for behavior in behaviors {
        builder = builder.backend(behavior.clone());
    }
    let fleet = builder.start().await.expect("the fleet starts");
    let endpoints = fleet
        .addrs()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    (fleet, endpoints)
}

fn healthy(n: usize) -> Vec<Behavior> {
    vec![Behavior::healthy(); n]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Checks that the run succeeded and that stdout is exactly one JSON object with every field of
/// the contract, of the right type, and no other; returns it.
fn parse_report(output: &Output) -> Value {
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "loadgen failed ({}): {stderr}",
        output.status
    );
    let values: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout:?}"));
    assert_eq!(values.len(), 1, "one JSON value on stdout: {stdout:?}");
    let report = values.into_iter().next().unwrap();
    let object = report.as_object().expect("the report is an object");

    let integers = ["requests", "ok", "attempts"];
    let floats = [
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "duration_s",
        "rps",
    ];
    let mut expected: Vec<&str> = [&integers[..], &floats[..], &["failed", "endpoints"]].concat();
    expected.sort_unstable();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, expected, "the report's fields");

    for key in integers {
        assert!(report[key].is_u64(), "{key} is a whole number: {report}");
    }
    for key in floats {
        assert!(report[key].is_f64(), "{key} is a float: {report}");
    }
    let failed = report["failed"].as_object().expect("failed is an object");
    assert!(
        failed.values().all(Value::is_u64),
        "failed counts: {report}"
    );
    let endpoints = report["endpoints"]
        .as_array()
        .expect("endpoints is an array");
    for endpoint in endpoints {
        let mut keys: Vec<&str> = endpoint
            .as_object()
            .expect("an endpoint is an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["addr", "ejections", "failures", "requests"]);
        assert!(endpoint["addr"].is_string());
        for key in ["requests", "failures", "ejections"] {
            assert!(endpoint[key].is_u64(), "endpoint {key}: {report}");
        }
    }

    // What the numbers must agree on, whatever the mode.
    let requests = report["requests"].as_u64().unwrap();
    let ok = report["ok"].as_u64().unwrap();
    let failures: u64 = failed.values().filter_map(Value::as_u64).sum();
    assert_eq!(ok + failures, requests, "every request is ok or failed");
    // A request meshless shed (open circuit, full limit) sent nothing: no attempt.
    let shed: u64 = ["circuit-open", "concurrency-limited", "throttled"]
        .iter()
        .filter_map(|kind| failed.get(*kind).and_then(Value::as_u64))
        .sum();
    assert!(report["attempts"].as_u64().unwrap() + shed >= requests);
    let p = |key: &str| report[key].as_f64().unwrap();
    assert!(p("p50_ms") <= p("p90_ms") && p("p90_ms") <= p("p99_ms"));
    assert!(p("p99_ms") <= p("p999_ms") && p("p999_ms") <= p("max_ms"));
    // The slowest request lasted no longer than the run (the histogram's bucket tops may).
    assert!(p("max_ms") <= p("duration_s") * 1000.0, "{report}");
    report
}

fn u(report: &Value, key: &str) -> u64 {
    report[key].as_u64().unwrap()
}

/// The endpoints' attempts, added up.
fn endpoint_requests(report: &Value) -> u64 {
    report["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["requests"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_serves_a_healthy_fleet() {
    let (fleet, endpoints) = fleet(&healthy(3)).await;
    for mode in ["meshless", "plain", "tower"] {
        let output = loadgen(&[
            "--endpoints",
            &endpoints,
            "--requests",
            "60",
            "--concurrency",
            "4",
            "--mode",
            mode,
        ])
        .await;
        let report = parse_report(&output);
        assert_eq!(u(&report, "requests"), 60, "{mode}: {report}");
        assert_eq!(u(&report, "ok"), 60, "{mode}: {report}");
        assert_eq!(report["failed"], serde_json::json!({}), "{mode}: {report}");
        assert_eq!(u(&report, "attempts"), 60, "{mode}: no retries: {report}");
        let addrs: Vec<&str> = report["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["addr"].as_str().unwrap())
            .collect();
        assert_eq!(addrs.join(","), endpoints, "{mode}: {report}");
        assert_eq!(endpoint_requests(&report), 60, "{mode}: {report}");
    }
    assert_eq!(fleet.totals().requests, 180);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_bodies_arrive_intact_in_every_mode() {
    // The fleet answers 400 when a body's length is not its `x-body-len`.
    let (fleet, endpoints) = fleet(&healthy(2)).await;
    for mode in ["meshless", "plain", "tower"] {
        let output = loadgen(&[
            "--endpoints",
            &endpoints,
            "--requests",
            "20",
            "--concurrency",
            "3",
            "--method",
            "POST",
            "--body-bytes",
            "20000",
            "--path",
            "/orders?x=1",
            "--idempotent",
            "--mode",
            mode,
        ])
        .await;
        let report = parse_report(&output);
        assert_eq!(u(&report, "ok"), 20, "{mode}: {report}");
    }
    assert_eq!(fleet.totals().body_bytes, 3 * 20 * 20000);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_keeps_to_the_rate() {
    let (fleet, endpoints) = fleet(&healthy(2)).await;
    let output = loadgen(&[
        "--endpoints",
        &endpoints,
        "--requests",
        "30",
        "--concurrency",
        "2",
        "--rate",
        "100",
    ])
    .await;
    let report = parse_report(&output);
    assert_eq!(u(&report, "ok"), 30, "{report}");
    // The last request is due 290 ms after the first.
    let duration = report["duration_s"].as_f64().unwrap();
    assert!((0.28..2.0).contains(&duration), "{report}");
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_by_reason() {
    let (fleet, endpoints) = fleet(&[
        Behavior::healthy().errors(1.0, http::StatusCode::SERVICE_UNAVAILABLE),
        Behavior::down(),
        Behavior::healthy().hangs(1.0),
    ])
    .await;
    let output = loadgen(&[
        "--endpoints",
        &endpoints,
        "--requests",
        "9",
        "--concurrency",
        "3",
        "--timeout-ms",
        "200",
        "--mode",
        "plain",
    ])
    .await;
    let report = parse_report(&output);
    // Round robin: three requests to each endpoint.
    assert_eq!(
        report["failed"],
        serde_json::json!({"status_503": 3, "connect": 3, "timeout": 3}),
        "{report}"
    );
    for endpoint in report["endpoints"].as_array().unwrap() {
        assert_eq!(endpoint["requests"], 3, "{report}");
        assert_eq!(endpoint["failures"], 3, "{report}");
        assert_eq!(endpoint["ejections"], 0, "{report}");
    }

    // meshless names its own reasons; the deadline bounds every request.
    let output = loadgen(&[
        "--endpoints",
        &endpoints,
        "--requests",
        "6",
        "--concurrency",
        "3",
        "--timeout-ms",
        "200",
    ])
    .await;
    let report = parse_report(&output);
    assert_eq!(u(&report, "ok"), 0, "{report}");
    assert!(report["max_ms"].as_f64().unwrap() < 1000.0, "{report}");
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedge_turns_hedging_on_in_meshless_mode_only() {
    // One backend of two hangs: hedges (after 100 answers teach the delay) rescue the GETs
    // that land on it, and every request ends well within its deadline.
    let (hanging, endpoints) = fleet(&[Behavior::healthy(), Behavior::healthy().hangs(0.2)]).await;
    let report = parse_report(
        &loadgen(&[
            "--endpoints",
            &endpoints,
            "--requests",
            "400",
            "--concurrency",
            "4",
            "--timeout-ms",
            "2000",
            "--hedge",
        ])
        .await,
    );
    assert_eq!(u(&report, "ok"), 400, "{report}");
    assert!(
        u(&report, "attempts") > 400,
        "hedges are attempts: {report}"
    );
    hanging.shutdown().await;

    let (fleet, endpoints) = fleet(&healthy(1)).await;
    let output = loadgen(&[
        "--endpoints",
        &endpoints,
        "--requests",
        "5",
        "--concurrency",
        "1",
        "--mode",
        "tower",
        "--hedge",
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    assert!(text(&output.stderr).contains("--hedge works in meshless mode only"));
    assert_eq!(fleet.totals().requests, 0);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_command_lines_exit_2_with_the_usage() {
    let bad: [&[&str]; 7] = [
        &[
            "--endpoints",
            "127.0.0.1:9",
            "--requests",
            "5",
            "--concurrency",
            "1",
            "--bogus",
        ],
        // Port 0: nothing listens there, in any mode.
        &[
            "--endpoints",
            "127.0.0.1:0",
            "--requests",
            "5",
            "--concurrency",
            "1",
        ],
        &["--requests", "5", "--concurrency", "1"],
        &["--endpoints", "127.0.0.1:9", "--concurrency", "1"],
        &[
            "--endpoints",
            "127.0.0.1:9",
            "--requests",
            "five",
            "--concurrency",
            "1",
        ],
        &[
            "--endpoints",
            "127.0.0.1",
            "--requests",
            "5",
            "--concurrency",
            "1",
        ],
        &[
            "--endpoints",
            "127.0.0.1:9",
            "--requests",
            "5",
            "--concurrency",
            "1",
            "--mode",
            "envoy",
        ],
    ];
    for args in bad {
        let output = loadgen(args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            output.stdout.is_empty(),
            "{args:?}: {}",
            text(&output.stdout)
        );
        assert!(
            text(&output.stderr).contains("usage:"),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protection_flags_shape_the_meshless_client() {
    // An upstream in outage: the default breaker opens and sheds the rest at once.
    let (down, endpoints) =
        fleet(&[Behavior::healthy().errors(1.0, http::StatusCode::SERVICE_UNAVAILABLE)]).await;
    let outage = |extra: &'static [&'static str]| {
        let endpoints = endpoints.clone();
        async move {
            let mut args = vec![
                "--endpoints",
                endpoints.as_str(),
                "--requests",
                "60",
                "--concurrency",
                "1",
                "--no-retry",
            ];
            args.extend_from_slice(extra);
            parse_report(&loadgen(&args).await)
        }
    };
    let report = outage(&[]).await;
    let shed = report["failed"]["circuit-open"].as_u64().unwrap_or(0);
    assert!(shed >= 30, "the breaker opens after 20 failures: {report}");
    assert!(
        u(&report, "attempts") < 60,
        "shed requests send nothing: {report}"
    );
    let report = outage(&["--no-breaker"]).await;
    assert!(report["failed"].get("circuit-open").is_none(), "{report}");
    assert_eq!(u(&report, "attempts"), 60, "{report}");
    down.shutdown().await;

    // A fixed limit of one refuses what overlaps the request in flight.
    let slow = Behavior::healthy().latency(Latency::fixed(Duration::from_millis(50)));
    let (fleet, endpoints) = fleet(&[slow]).await;
    let report = parse_report(
        &loadgen(&[
            "--endpoints",
            &endpoints,
            "--requests",
            "8",
            "--concurrency",
            "4",
            "--limit",
            "1",
        ])
        .await,
    );
    assert!(u(&report, "ok") >= 1, "{report}");
    let limited = report["failed"]["concurrency-limited"]
        .as_u64()
        .unwrap_or(0);
    assert!(limited >= 1, "{report}");
    assert_eq!(u(&report, "ok") + limited, 8, "{report}");
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_values_exit_2_with_a_message_and_no_panic() {
    let base = [
        "--endpoints",
        "127.0.0.1:9",
        "--requests",
        "2",
        "--concurrency",
        "1",
    ];
    let rate = "--rate is at least 1/86400 (one request a day)";
    let body = "--body-bytes is at most 1073741824 (1 GiB)";
    let cases: [(&[&str], &str); 9] = [
        // The next start past what a `Duration` holds, then past what an `Instant` holds.
        (&["--rate", "1e-20"], rate),
        (&["--rate", "1e-19"], rate),
        (&["--rate", "5e-324"], rate),
        (&["--rate", "0.0000115"], rate),
        (&["--rate", "NaN"], "bad value \"NaN\" for --rate"),
        (&["--rate", "-1"], "bad value \"-1\" for --rate"),
        (
            &["--method", "POST", "--body-bytes", "18446744073709551615"],
            body,
        ),
        (&["--method", "POST", "--body-bytes", "1073741825"], body),
        (
            &["--method", "POST", "--body-bytes", "18446744073709551616"],
            "bad value \"18446744073709551616\" for --body-bytes",
        ),
    ];
    for (extra, message) in cases {
        let args = [&base[..], extra].concat();
        let output = loadgen(&args).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(stderr.contains("usage:"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// An argument that is not UTF-8 (a flag, or a flag's value) is a usage error: exit 2 with the
/// usage, no panic (`std::env::args` panics on one).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_that_are_not_utf8_exit_2_with_the_usage() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let bad = |bytes: &[u8]| OsString::from_vec(bytes.to_vec());
    for args in [
        vec![bad(b"--pa\xffth")],
        vec![
            OsString::from("--endpoints"),
            OsString::from("127.0.0.1:9"),
            OsString::from("--path"),
            bad(b"/caf\xe9"),
        ],
    ] {
        let output = loadgen(&args).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("not valid UTF-8"), "{args:?}: {stderr}");
        assert!(stderr.contains("usage:"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slowest_rate_and_the_longest_timeouts_still_run() {
    // A day's rate starts the first request at once; timeouts of u64::MAX ms mean "never".
    let (fleet, endpoints) = fleet(&healthy(1)).await;
    for mode in ["meshless", "plain", "tower"] {
        let report = parse_report(
            &loadgen(&[
                "--endpoints",
                &endpoints,
                "--requests",
                "1",
                "--concurrency",
                "1000000",
                "--rate",
                "0.0000116",
                "--timeout-ms",
                "18446744073709551615",
                "--attempt-timeout-ms",
                "18446744073709551615",
                "--mode",
                mode,
            ])
            .await,
        );
        assert_eq!(u(&report, "ok"), 1, "{mode}: {report}");
    }
    fleet.shutdown().await;
}

#[test]
fn the_open_loop_schedule_never_panics() {
    let start = tokio::time::Instant::now();
    assert_eq!(schedule::due(start, 0, 1e-20), Some(start));
    assert_eq!(
        schedule::due(start, 3, 2.0),
        Some(start + Duration::from_millis(1500))
    );
    // Past a `Duration`; past an `Instant` (about 2^63 s); not a number; the far end at the
    // slowest rate the command line allows.
    assert_eq!(schedule::due(start, 1, 1e-20), None);
    assert_eq!(schedule::due(start, 1, 1e-19), None);
    assert_eq!(schedule::due(start, 1, f64::NAN), None);
    assert_eq!(schedule::due(start, u64::MAX, 1.0 / 86_400.0), None);
}

/// A server that answers every request with a head promising 1000 body bytes, sends 3, and
/// then sends nothing more while the connection lasts.
async fn stalled_body_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address").to_string();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nabc";
                if socket.write_all(answer).await.is_err() {
                    return;
                }
                // Hold the connection open, body unfinished, until the client gives up.
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    (addr, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_off_by_the_deadline_is_named_per_mode() {
    let (endpoint, server) = stalled_body_server().await;
    // meshless: the client's own deadline fails the body with a `meshless::Error` in the same
    // timer tick as loadgen's wait for the body ends, and that error comes first; it is named
    // `deadline-exceeded` as the docs promise (it used to be `other`). Plain and tower keep
    // their `timeout`.
    for (mode, reason) in [
        ("meshless", "deadline-exceeded"),
        ("plain", "timeout"),
        ("tower", "timeout"),
    ] {
        let report = parse_report(
            &loadgen(&[
                "--endpoints",
                &endpoint,
                "--requests",
                "6",
                "--concurrency",
                "3",
                "--timeout-ms",
                "150",
                "--mode",
                mode,
            ])
            .await,
        );
        assert_eq!(
            report["failed"],
            serde_json::json!({ reason: 6 }),
            "{mode}: {report}"
        );
    }
    server.abort();
}
