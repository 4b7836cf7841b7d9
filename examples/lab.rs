//! lab: runs the scenarios — a slow endpoint, a flaky one, one dying and returning, one
//! hanging, a full outage, tail latency, throttling with Retry-After, endpoint churn, an
//! outage and recovery, an overload, a rare slow mode with hedging — against a local fleet of misbehaving backends, with
//! several clients (plain, tower, meshless and its variants, `lab/modes.rs`), and writes
//! `target/lab/report.md` with SVG charts next to it.
//!
//! ```text
//! cargo run --release --example lab [-- [--only NAME[,NAME...]] [--requests N] [--rate RPS]
//!                                       [--max-in-flight C] [--publish]]
//! ```
//!
//! - `--only`: run these scenarios only (slow, flaky, dying, hanging, outage, tail,
//!   throttling, churn, recovery, overload, hedging).
//! - `--requests` (default 4000) and `--rate` (default 1000 req/s): the open-loop load of each
//!   scenario and client; the run lasts `requests / rate` seconds, and the dying and churn
//!   scenarios place their phases within it. The recovery scenario runs 14 s and the hedging
//!   scenario 20 s at `--rate`; the overload scenario sets its own load from the fleet's
//!   capacity.
//! - `--max-in-flight` (default 256): requests in flight at most (the overload scenario sets
//!   its own, higher, so that its load stays open).
//! - `--publish`: also write the report to `docs/lab-report.md` and its charts to `docs/lab/`.
//!
//! Progress goes to stderr. The plain and tower clients are loadgen's (`loadgen/plain.rs`,
//! `loadgen/tower_mode.rs`, included read-only), the latter also inside tower's `hedge`
//! middleware (`lab/tower_hedge.rs`); meshless' `http::Client` is built as loadgen builds it,
//! with its default policy or a variant's changes (see `lab/target.rs`).

#[allow(dead_code)]
#[path = "loadgen/cli.rs"]
mod cli;
#[allow(dead_code)]
#[path = "loadgen/common.rs"]
mod common;
#[path = "loadgen/plain.rs"]
mod plain;
#[path = "loadgen/tower_mode.rs"]
mod tower_mode;

#[path = "lab/charts.rs"]
mod charts;
#[path = "lab/hedge_verdict.rs"]
mod hedge_verdict;
#[path = "lab/hedging.rs"]
mod hedging;
#[path = "lab/modes.rs"]
mod modes;
#[path = "lab/overload.rs"]
mod overload;
#[path = "lab/protect_report.rs"]
mod protect_report;
#[path = "lab/report.rs"]
mod report;
#[path = "lab/run.rs"]
mod run;
#[path = "lab/scenario.rs"]
mod scenario;
#[path = "lab/stats.rs"]
mod stats;
#[path = "lab/target.rs"]
mod target;
#[path = "lab/timeline.rs"]
mod timeline;
#[path = "lab/tower_hedge.rs"]
mod tower_hedge;

use modes::VARIANTS;
use stats::Run;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use target::Load;

/// The same deadline for every mode: loadgen's `--timeout-ms` default.
const TIMEOUT: Duration = Duration::from_millis(1000);

const USAGE: &str = "\
usage: cargo run --release --example lab [-- [--only NAME[,NAME...]] [--requests N] [--rate RPS]
                                             [--max-in-flight C] [--publish]]
";

struct Options {
    only: Option<Vec<String>>,
    requests: u64,
    rate: f64,
    max_in_flight: usize,
    publish: bool,
    /// The arguments as given, for the report's command line.
    given: Vec<String>,
}

fn parse(args: Vec<String>) -> Result<Options, String> {
    let mut options = Options {
        only: None,
        requests: 4000,
        rate: 1000.0,
        max_in_flight: 256,
        publish: false,
        given: args.clone(),
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--only" => {
                options.only = Some(
                    value("--only")?
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .collect(),
                );
            }
            "--requests" => {
                options.requests = value("--requests")?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--requests needs a positive whole number")?;
            }
            "--rate" => {
                options.rate = value("--rate")?
                    .parse()
                    .ok()
                    .filter(|r: &f64| r.is_finite() && *r > 0.0)
                    .ok_or("--rate needs a positive number")?;
            }
            "--max-in-flight" => {
                options.max_in_flight = value("--max-in-flight")?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--max-in-flight needs a positive whole number")?;
            }
            "--publish" => options.publish = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1).collect()) {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("lab: {message}\n");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lab: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(lab(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn lab(options: Options) -> Result<(), Box<dyn Error>> {
    let wall = std::time::Instant::now();
    let load_avg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string));
    let run_length = Duration::from_secs_f64(options.requests as f64 / options.rate);
    let mut scenarios = scenario::all(run_length);
    if let Some(only) = &options.only {
        for name in only {
            if !scenarios.iter().any(|s| s.name == name) {
                return Err(format!("--only: no scenario named {name:?}").into());
            }
        }
        scenarios.retain(|s| only.iter().any(|n| n == s.name));
    }
    let out_dir = target_dir().join("lab");
    std::fs::create_dir_all(&out_dir)?;
    let load = Load::steady(options.requests, options.rate, options.max_in_flight);
    let total: usize = scenarios
        .iter()
        .map(|s| VARIANTS.iter().filter(|v| s.runs(v)).count())
        .sum();
    eprintln!(
        "lab: {} scenarios, {total} runs, {} requests each at {} req/s ({:.1} s) unless the \
         scenario says otherwise, at most {} in flight, deadline {} ms; writing to {}",
        scenarios.len(),
        options.requests,
        options.rate,
        run_length.as_secs_f64(),
        load.max_in_flight,
        TIMEOUT.as_millis(),
        out_dir.display()
    );

    let mut runs: Vec<Run> = Vec::new();
    let mut n = 0;
    for scenario in &scenarios {
        let scenario_load = scenario.load(&load);
        for variant in VARIANTS.iter().filter(|v| scenario.runs(v)) {
            n += 1;
            let run = run::run_one(scenario, variant, &scenario_load, TIMEOUT).await?;
            eprintln!(
                "lab: [{n:>2}/{total}] {:<10} {:<8} {:>5} requests, {:>7.2}% ok, {:.3} \
                 attempts/req, p99 {}, p99.9 {}, {:.2} s{}",
                scenario.name,
                variant.label,
                run.requests,
                run.success_pct(),
                run.attempts_per_request(),
                charts::ms_text(run.quantile_ms(0.99)),
                charts::ms_text(run.quantile_ms(0.999)),
                run.duration.as_secs_f64(),
                if run.failed.is_empty() {
                    String::new()
                } else {
                    format!("; failures: {}", run.failures_text())
                }
            );
            if let Some(line) = protect_report::progress(&run).or_else(|| hedging::progress(&run)) {
                eprintln!("lab:         {line}");
            }
            runs.push(run);
        }
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|r| r.scenario == scenario.name)
            .collect();
        charts::cdf(
            &out_dir.join(format!("{}-cdf.svg", scenario.name)),
            &format!("{}: latency CDF", scenario.title),
            &mine,
        )?;
        charts::success(
            &out_dir.join(format!("{}-success.svg", scenario.name)),
            &format!("{}: success over time", scenario.title),
            &mine,
        )?;
        protect_report::charts(&out_dir, scenario, &mine)?;
        hedging::charts(&out_dir, scenario, &mine)?;
    }

    let wall_s = wall.elapsed().as_secs_f64();
    let mut command = "cargo run --release --example lab".to_string();
    if !options.given.is_empty() {
        command.push_str(" -- ");
        command.push_str(&options.given.join(" "));
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let setup = report::Setup {
        command,
        date: utc_now(),
        commit: commit(),
        machine: format!(
            "{cores} cores ({}), shared with other jobs (builds and tests of other engineers \
             may run at the same time; load average {} when the lab started); the fleet and \
             the client share one tokio runtime and these cores",
            cpu_model().unwrap_or_else(|| "CPU model unknown".into()),
            load_avg.unwrap_or_else(|| "unknown".into())
        ),
        requests: options.requests,
        rate: options.rate,
        max_in_flight: load.max_in_flight,
        timeout_ms: TIMEOUT.as_millis(),
        wall_s,
    };
    let report_path = out_dir.join("report.md");
    std::fs::write(
        &report_path,
        report::markdown(&setup, &scenarios, &runs, ""),
    )?;
    eprintln!("lab: wrote {}", report_path.display());
    if options.publish {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(docs.join("lab"))?;
        for scenario in &scenarios {
            for file in report::chart_files(scenario) {
                std::fs::copy(out_dir.join(&file), docs.join("lab").join(&file))?;
            }
        }
        let docs_report = docs.join("lab-report.md");
        std::fs::write(
            &docs_report,
            report::markdown(&setup, &scenarios, &runs, "lab/"),
        )?;
        eprintln!("lab: published {}", docs_report.display());
    }
    for verdict in report::verdicts(&runs)
        .into_iter()
        .chain(protect_report::verdicts(&runs))
        .chain(hedging::verdicts(&runs))
    {
        eprintln!("lab: {}", verdict.line());
    }
    eprintln!("lab: done in {wall_s:.1} s");
    Ok(())
}

/// The cargo target directory this example runs from (`<target>/release/examples/lab`), or
/// `target/` in the package.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let examples = exe.parent()?;
            (examples.file_name()? == "examples").then_some(())?;
            Some(examples.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// `2025-01-31 14:05 UTC`, from the system clock.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let (hh, mm) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02} UTC")
}

/// The commit the lab was built from, and whether the work tree had changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        None => "unknown".to_string(),
        Some(hash) => match git(&["status", "--porcelain"]) {
            Some(changes) if !changes.is_empty() => {
                format!("`{hash}` with uncommitted changes in the work tree")
            }
            _ => format!("`{hash}`"),
        },
    }
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}
