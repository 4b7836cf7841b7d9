//! loadgen: measures meshless (or a plain hyper-util client, or tower's best stack) against any
//! HTTP/1.1 endpoints, and prints what it saw as one JSON object.
//!
//! ```text
//! cargo run --release --example loadgen -- --endpoints HOST:PORT[,HOST:PORT...] --requests N \
//!     --concurrency C [--rate RPS] [--timeout-ms MS] [--attempt-timeout-ms MS] [--method GET|POST]
//!     [--body-bytes N] [--path /p] [--mode meshless|plain|tower] [--idempotent] [--no-retry]
//!     [--hedge] [--limit none|adaptive|aimd|N] [--no-breaker] [--throttle]
//! ```
//!
//! The command line and the JSON are a contract for the harnesses that run this tool: stdout
//! holds exactly one JSON object and nothing else; logs go to stderr. A bad command line (an
//! unknown flag, a missing required one, a bad value, a name that does not resolve) prints the
//! usage on stderr and exits with status 2 (so does `--hedge` outside meshless mode).
//!
//! ```json
//! {"requests": 1000, "ok": 998, "failed": {"status_503": 2}, "attempts": 1130,
//!  "p50_ms": 0.4, "p90_ms": 0.9, "p99_ms": 31.2, "p999_ms": 60.1, "max_ms": 61.0,
//!  "duration_s": 0.52, "rps": 1923.1,
//!  "endpoints": [{"addr": "127.0.0.1:4000", "requests": 290, "failures": 1, "ejections": 0}]}
//! ```
//!
//! - `requests`, `ok`: requests sent, and those answered 2xx (body read in full).
//! - `failed`: the rest by reason: `status_<code>` for any other answer; otherwise, in meshless
//!   mode the error kind (`Kind::as_str`, e.g. `deadline-exceeded`), in plain and tower modes
//!   `timeout`, `connect`, `reset` or `other`. A meshless response body that fails after its
//!   head came is named like a plain one; one cut off by the deadline is `deadline-exceeded`.
//! - `attempts`: attempts made by the client — meshless: the requests that reached its retry
//!   layer + retries + resends after a stale keep-alive connection (`retry_stats()`) + hedges (`hedge_stats()`) (a request the client shed — open circuit, full
//!   limit, throttling — sent nothing, so `attempts` may be below `requests`); tower: counted between the retry and the per-attempt timeout; plain: one
//!   per request.
//! - `p50_ms` … `max_ms`: end-to-end latency of every request, success or failure, from the
//!   call to the end of the response body, in an HDR histogram of microseconds.
//! - `duration_s`, `rps`: from the first start to the last end; requests per second.
//! - `endpoints`: per endpoint, attempts it finished, failures among them (errors, timeouts,
//!   5xx, 429), and ejections — from `Client::endpoints()` in meshless mode, counted by a layer
//!   around each endpoint in plain and tower modes (which never eject: always 0).
//!
//! Endpoints: names are resolved once, at start, with `tokio::net::lookup_host`, and every
//! address a name resolves to is an endpoint (so `localhost` may give `::1` as well as
//! `127.0.0.1`); `addr` in the report is the address. All three modes see the same list
//! (duplicates dropped). Re-resolving during a run is what `ClientBuilder::dns` does for one
//! name; a load run wants a fixed set of endpoints, the same for every mode.
//!
//! Load: closed loop by default, C workers each sending its next request as soon as the
//! previous one ends, until N have been started. With `--rate RPS`, open loop: request i is
//! due at `i / RPS` seconds after the start; it starts when due if fewer than C are in flight,
//! otherwise as soon as one ends (requests delayed so go out back to back, catching up with
//! the schedule). Latency counts from the actual start.
//!
//! The modes are in `loadgen/`: `meshless_mode.rs`, `plain.rs` and `tower_mode.rs` (each says
//! what it builds), with what they share in `common.rs`.

#[path = "loadgen/cli.rs"]
mod cli;
#[path = "loadgen/common.rs"]
mod common;
#[path = "loadgen/driver.rs"]
mod driver;
#[path = "loadgen/meshless_mode.rs"]
mod meshless_mode;
#[path = "loadgen/plain.rs"]
mod plain;
#[path = "loadgen/report.rs"]
mod report;
#[path = "loadgen/schedule.rs"]
mod schedule;
#[path = "loadgen/tower_mode.rs"]
mod tower_mode;

use bytes::Bytes;
use cli::{Args, CliError, Mode, USAGE};
use common::{EndpointReport, Outcome, Spec};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// The client under test.
pub enum Target {
    Meshless(Box<meshless_mode::Meshless>),
    Plain(plain::Plain),
    Tower(tower_mode::Tower),
}

impl Target {
    fn new(addrs: &[SocketAddr], args: &Args) -> Result<Target, String> {
        Ok(match args.mode {
            Mode::Meshless => Target::Meshless(Box::new(
                meshless_mode::Meshless::new(addrs, args).map_err(|e| e.to_string())?,
            )),
            Mode::Plain => Target::Plain(plain::Plain::new(addrs)),
            Mode::Tower => Target::Tower(tower_mode::Tower::new(addrs, args)),
        })
    }

    pub async fn send(&self, spec: &Spec) -> Outcome {
        match self {
            Target::Meshless(m) => m.send(spec).await,
            Target::Plain(p) => p.send(spec).await,
            Target::Tower(t) => t.send(spec).await,
        }
    }

    fn attempts(&self, requests: u64) -> u64 {
        match self {
            Target::Meshless(m) => m.attempts(),
            Target::Plain(_) => requests,
            Target::Tower(t) => t.attempts(),
        }
    }

    fn endpoints(&self) -> Vec<EndpointReport> {
        match self {
            Target::Meshless(m) => m.endpoints(),
            Target::Plain(p) => p.endpoints(),
            Target::Tower(t) => t.endpoints(),
        }
    }
}

fn main() -> ExitCode {
    // `args_os`: an argument that is not UTF-8 is a usage error, where `std::env::args` panics.
    let args = std::env::args_os()
        .skip(1)
        .map(|arg| {
            arg.into_string()
                .map_err(|bad| CliError::Usage(format!("{bad:?} is not valid UTF-8")))
        })
        .collect::<Result<Vec<String>, CliError>>()
        .and_then(cli::parse);
    let args = match args {
        Ok(args) => args,
        Err(CliError::Help) => {
            eprint!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(CliError::Usage(message)) => {
            eprintln!("loadgen: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadgen: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let addrs = match resolve(&args.endpoints).await {
        Ok(addrs) => addrs,
        Err(message) => {
            eprintln!("loadgen: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(body) = filled(args.body_bytes) else {
        eprintln!(
            "loadgen: cannot allocate a request body of {} bytes",
            args.body_bytes
        );
        return ExitCode::FAILURE;
    };
    let target = match Target::new(&addrs, &args) {
        Ok(target) => Arc::new(target),
        Err(message) => {
            eprintln!(
                "loadgen: cannot build the {} client: {message}",
                args.mode.name()
            );
            return ExitCode::from(2);
        }
    };
    let spec = Arc::new(Spec {
        method: args.method.clone(),
        path: args.path.clone(),
        body,
        timeout: args.timeout,
    });
    let endpoints: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let load = match args.rate {
        Some(rate) => format!(
            "open loop at {rate} req/s, at most {} in flight",
            args.concurrency
        ),
        None => format!("closed loop, {} workers", args.concurrency),
    };
    eprintln!(
        "loadgen: mode {}, {} {} {} to {}, {load}, timeout {} ms",
        args.mode.name(),
        args.requests,
        args.method,
        args.path,
        endpoints.join(","),
        args.timeout.as_millis(),
    );

    let (tally, duration) = driver::run(
        target.clone(),
        spec,
        args.requests,
        args.concurrency,
        args.rate,
    )
    .await;

    let report = report::json(
        &tally,
        target.attempts(tally.requests),
        duration,
        &target.endpoints(),
    );
    eprintln!(
        "loadgen: {} ok of {} in {:.3} s",
        tally.ok,
        tally.requests,
        duration.as_secs_f64()
    );
    println!("{report}");
    ExitCode::SUCCESS
}

/// `len` bytes of `x`, or `None` when memory for them cannot be had: a failed allocation would
/// abort the process without a word, and `cli.rs` allows up to 1 GiB.
fn filled(len: usize) -> Option<Bytes> {
    let mut body = Vec::new();
    body.try_reserve_exact(len).ok()?;
    body.resize(len, b'x');
    Some(Bytes::from(body))
}

/// IPs as they are; names through the system resolver, once. Order kept, duplicates dropped.
async fn resolve(endpoints: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for endpoint in endpoints {
        let found: Vec<SocketAddr> = match endpoint.parse::<SocketAddr>() {
            Ok(addr) => vec![addr],
            Err(_) => tokio::net::lookup_host(endpoint.as_str())
                .await
                .map_err(|e| format!("--endpoints: cannot resolve {endpoint:?}: {e}"))?
                .collect(),
        };
        if found.is_empty() {
            return Err(format!("--endpoints: {endpoint:?} resolves to no address"));
        }
        for addr in found {
            if addrs.contains(&addr) {
                eprintln!("loadgen: {addr} listed more than once; using it once");
            } else {
                addrs.push(addr);
            }
        }
    }
    Ok(addrs)
}
