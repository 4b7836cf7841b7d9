//! The command line: flags, defaults and the usage text. Parsing never touches the network;
//! names in `--endpoints` are resolved later, in `main`.

use http::Method;
use http::uri::PathAndQuery;
use std::net::SocketAddr;
use std::time::Duration;

pub const USAGE: &str = "\
usage: cargo run --release --example loadgen -- --endpoints HOST:PORT[,HOST:PORT...] \\
           --requests N --concurrency C [options]

Sends N requests to the endpoints, C at most in flight, and prints one JSON object on stdout.

required:
  --endpoints HOST:PORT[,...]  the endpoints; HOST is an IP or a name (resolved once at start;
                               every address a name resolves to is an endpoint)
  --requests N                 requests to send in total (N >= 1)
  --concurrency C              requests in flight at most (C >= 1)

options:
  --rate RPS                   open loop: start requests at RPS per second in total, evenly
                               spread; still at most C in flight (when C are in flight the next
                               start waits for one to end, then the schedule catches up).
                               Without it, closed loop: C workers, each sending its next request
                               when the previous one ends.
  --timeout-ms MS              end-to-end deadline per request, retries and reading the body
                               included (default 1000)
  --attempt-timeout-ms MS      per-attempt timeout (meshless and tower; default: the deadline
                               shared by the attempts allowed; plain: ignored)
  --method GET|POST            request method (default GET)
  --body-bytes N               POST body size; sent with header x-body-len: N (default 0)
  --path /p                    request path and query (default /)
  --mode meshless|plain|tower  meshless: meshless::http::Client, default policy (default)
                               plain: hyper-util client, round robin, no retries
                               tower: tower 0.5 p2c + peak-EWMA, retry under a TpsBudget
  --idempotent                 every request is safe to retry (POST too)
  --no-retry                   no retries (meshless and tower)
  --hedge                      hedged requests (meshless only): an idempotent request with no
                               answer after the p95 of recent answers gets a second attempt at
                               another endpoint, within the retry budget and a 5% extra load
  --limit none|adaptive|aimd|N concurrency limit (meshless only; default none, the client's
                               default): the gradient or AIMD adaptive limit, or at most N
                               requests in flight; excess requests fail at once
                               (concurrency-limited), except that an adaptive limit
                               still learning (no queueing or drop seen yet) makes
                               them wait, up to the deadline
  --no-breaker                 turn the circuit breaker off (meshless only; on by default)
  --throttle                   client-side adaptive throttling (meshless only; off by default)
  -h, --help                   this text
";

/// More requests in flight than any one process can have sockets for.
const MAX_CONCURRENCY: u64 = 1_000_000;

/// The slowest `--rate`: one request a day. Slower is no load test, and far slower (below about
/// 1e-19) puts the next start past what a `Duration` or an `Instant` can hold.
const MIN_RATE: f64 = 1.0 / 86_400.0;

/// The largest `--body-bytes`, 1 GiB: the body is built in memory once, before the run, and a
/// bigger one is a typo more often than a test.
const MAX_BODY_BYTES: u64 = 1 << 30;

/// Which client sends the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Meshless,
    Plain,
    Tower,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Meshless => "meshless",
            Mode::Plain => "plain",
            Mode::Tower => "tower",
        }
    }
}

/// A validated command line.
#[derive(Debug, Clone)]
pub struct Args {
    /// `HOST:PORT` as given, in order, not yet resolved.
    pub endpoints: Vec<String>,
    pub requests: u64,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub timeout: Duration,
    pub attempt_timeout: Option<Duration>,
    pub method: Method,
    pub body_bytes: usize,
    pub path: PathAndQuery,
    pub mode: Mode,
    pub idempotent: bool,
    pub no_retry: bool,
    pub hedge: bool,
    pub limit: LimitFlag,
    pub no_breaker: bool,
    pub throttle: bool,
}

/// `--limit`: which concurrency limit the meshless client runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitFlag {
    /// The client's default: no limit.
    None,
    /// The gradient adaptive limit.
    Adaptive,
    /// The AIMD adaptive limit.
    Aimd,
    /// At most this many requests in flight.
    Fixed(u32),
}

/// Why there is nothing to run.
#[derive(Debug, PartialEq)]
pub enum CliError {
    /// `--help`.
    Help,
    /// A bad command line; the message says what is wrong.
    Usage(String),
}

/// Parses the arguments after the program name. Flags take their value as the next argument
/// or after `=` (`--requests 100`, `--requests=100`); each may be given once.
pub fn parse<I>(args: I) -> Result<Args, CliError>
where
    I: IntoIterator<Item = String>,
{
    let mut seen: Vec<String> = Vec::new();
    let mut endpoints = None;
    let mut requests = None;
    let mut concurrency = None;
    let mut rate = None;
    let mut timeout_ms = 1000;
    let mut attempt_timeout_ms = None;
    let mut method = Method::GET;
    let mut body_bytes = 0;
    let mut path = PathAndQuery::from_static("/");
    let mut mode = Mode::Meshless;
    let mut idempotent = false;
    let mut no_retry = false;
    let mut hedge = false;
    let mut limit = LimitFlag::None;
    let mut no_breaker = false;
    let mut throttle = false;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value)),
            _ => (arg.clone(), None),
        };
        if seen.contains(&flag) {
            return Err(usage(format!("{flag} given more than once")));
        }
        seen.push(flag.clone());
        let is_switch = matches!(
            flag.as_str(),
            "--idempotent"
                | "--no-retry"
                | "--hedge"
                | "--no-breaker"
                | "--throttle"
                | "-h"
                | "--help"
        );
        if is_switch {
            if inline.is_some() {
                return Err(usage(format!("{flag} takes no value")));
            }
            match flag.as_str() {
                "--idempotent" => idempotent = true,
                "--no-retry" => no_retry = true,
                "--hedge" => hedge = true,
                "--no-breaker" => no_breaker = true,
                "--throttle" => throttle = true,
                _ => return Err(CliError::Help),
            }
            continue;
        }
        let known = [
            "--endpoints",
            "--requests",
            "--concurrency",
            "--rate",
            "--timeout-ms",
            "--attempt-timeout-ms",
            "--method",
            "--body-bytes",
            "--path",
            "--mode",
            "--limit",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(usage(format!("unknown argument {arg:?}")));
        }
        let value = match inline {
            Some(value) => value.to_string(),
            None => args
                .next()
                .ok_or_else(|| usage(format!("{flag} needs a value")))?,
        };
        match flag.as_str() {
            "--endpoints" => endpoints = Some(parse_endpoints(&value)?),
            "--limit" => {
                limit = match value.as_str() {
                    "none" => LimitFlag::None,
                    "adaptive" => LimitFlag::Adaptive,
                    "aimd" => LimitFlag::Aimd,
                    n => {
                        let max = positive(&flag, n)?;
                        LimitFlag::Fixed(u32::try_from(max).map_err(|_| bad(&flag, n))?)
                    }
                }
            }
            "--requests" => requests = Some(positive(&flag, &value)?),
            "--concurrency" => {
                let c = positive(&flag, &value)?;
                if c > MAX_CONCURRENCY {
                    return Err(usage(format!("--concurrency is at most {MAX_CONCURRENCY}")));
                }
                concurrency = Some(c as usize);
            }
            "--rate" => {
                let r: f64 = value.parse().map_err(|_| bad(&flag, &value))?;
                if !(r.is_finite() && r > 0.0) {
                    return Err(bad(&flag, &value));
                }
                if r < MIN_RATE {
                    return Err(usage(format!(
                        "--rate is at least 1/86400 (one request a day), not {value:?}"
                    )));
                }
                rate = Some(r);
            }
            "--timeout-ms" => timeout_ms = positive(&flag, &value)?,
            "--attempt-timeout-ms" => attempt_timeout_ms = Some(positive(&flag, &value)?),
            "--method" => {
                method = match value.to_ascii_uppercase().as_str() {
                    "GET" => Method::GET,
                    "POST" => Method::POST,
                    _ => return Err(bad(&flag, &value)),
                }
            }
            "--body-bytes" => {
                let n: u64 = value.parse().map_err(|_| bad(&flag, &value))?;
                let too_big = || {
                    usage(format!(
                        "--body-bytes is at most {MAX_BODY_BYTES} (1 GiB), not {value:?}"
                    ))
                };
                if n > MAX_BODY_BYTES {
                    return Err(too_big());
                }
                body_bytes = usize::try_from(n).map_err(|_| too_big())?;
            }
            "--path" => {
                path = match value.parse::<PathAndQuery>() {
                    Ok(p) if value.starts_with('/') => p,
                    _ => return Err(bad(&flag, &value)),
                }
            }
            "--mode" => {
                mode = match value.as_str() {
                    "meshless" => Mode::Meshless,
                    "plain" => Mode::Plain,
                    "tower" => Mode::Tower,
                    _ => return Err(bad(&flag, &value)),
                }
            }
            _ => unreachable!("every known flag is handled"),
        }
    }

    if hedge && mode != Mode::Meshless {
        return Err(usage("--hedge works in meshless mode only".into()));
    }
    let endpoints = endpoints.ok_or_else(|| usage("--endpoints is required".into()))?;
    let requests = requests.ok_or_else(|| usage("--requests is required".into()))?;
    let concurrency = concurrency.ok_or_else(|| usage("--concurrency is required".into()))?;
    if body_bytes > 0 && method != Method::POST {
        return Err(usage("--body-bytes needs --method POST".into()));
    }
    Ok(Args {
        endpoints,
        requests,
        concurrency,
        rate,
        timeout: Duration::from_millis(timeout_ms),
        attempt_timeout: attempt_timeout_ms.map(Duration::from_millis),
        method,
        body_bytes,
        path,
        mode,
        idempotent,
        no_retry,
        hedge,
        limit,
        no_breaker,
        throttle,
    })
}

/// `HOST:PORT[,HOST:PORT...]`: IPs (`[::1]:80` for IPv6) or names, each with a port.
fn parse_endpoints(value: &str) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim) {
        let port = match item.parse::<SocketAddr>() {
            Ok(addr) => Some(addr.port()),
            Err(_) => item
                .rsplit_once(':')
                .filter(|(host, _)| !host.is_empty() && !host.contains(':'))
                .and_then(|(_, port)| port.parse::<u16>().ok()),
        };
        match port {
            None => {
                return Err(usage(format!(
                    "--endpoints: {item:?} is not HOST:PORT (IPv6: [addr]:port)"
                )));
            }
            // Nothing can be connected to on port 0, in any mode.
            Some(0) => {
                return Err(usage(format!(
                    "--endpoints: {item:?} has port 0, which nothing listens on"
                )));
            }
            Some(_) => {}
        }
        out.push(item.to_string());
    }
    Ok(out)
}

fn positive(flag: &str, value: &str) -> Result<u64, CliError> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(usage(format!(
            "{flag} needs a positive whole number, not {value:?}"
        ))),
    }
}

fn bad(flag: &str, value: &str) -> CliError {
    usage(format!("bad value {value:?} for {flag}"))
}

fn usage(message: String) -> CliError {
    CliError::Usage(message)
}
