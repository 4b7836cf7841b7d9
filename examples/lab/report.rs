//! The Markdown report: setup, acceptance verdicts, the summary table, and a section per
//! scenario with its charts, per-mode numbers, and where the traffic went.

use super::charts::ms_text;
use super::hedging;
use super::protect_report;
use super::scenario::Scenario;
use super::stats::Run;
use std::fmt::Write as _;

/// The acceptance criteria of the issue, checked against meshless' numbers.
pub const RESILIENT: [&str; 4] = ["slow", "flaky", "dying", "hanging"];
pub const MIN_SUCCESS_PCT: f64 = 99.9;
pub const MAX_ATTEMPTS_PER_REQUEST: f64 = 1.2;
/// The library's default budget: ratio, reserve (retries per second), window.
pub const BUDGET_RATIO: f64 = 0.2;
pub const BUDGET_MIN_PER_S: f64 = 10.0;
pub const BUDGET_TTL_S: f64 = 10.0;

/// How the lab was run, for the report's head.
pub struct Setup {
    pub command: String,
    pub date: String,
    pub commit: String,
    pub machine: String,
    pub requests: u64,
    pub rate: f64,
    pub max_in_flight: usize,
    pub timeout_ms: u128,
    pub wall_s: f64,
}

/// One verdict line.
pub struct Verdict {
    pub pass: bool,
    pub text: String,
}

impl Verdict {
    pub fn line(&self) -> String {
        format!("{} {}", if self.pass { "PASS" } else { "FAIL" }, self.text)
    }
}

/// The acceptance verdicts, from meshless' runs.
pub fn verdicts(runs: &[Run]) -> Vec<Verdict> {
    let meshless = |scenario: &str| {
        runs.iter()
            .find(|r| r.scenario == scenario && r.mode == "meshless")
    };
    let mut out = Vec::new();
    for scenario in RESILIENT {
        let Some(run) = meshless(scenario) else {
            continue;
        };
        let pct = run.success_pct();
        out.push(Verdict {
            pass: pct >= MIN_SUCCESS_PCT,
            text: format!(
                "{scenario}: meshless success {pct:.2}% ({} of {}) ≥ {MIN_SUCCESS_PCT}%",
                run.ok, run.requests
            ),
        });
        let apr = run.attempts_per_request();
        out.push(Verdict {
            pass: apr <= MAX_ATTEMPTS_PER_REQUEST,
            text: format!(
                "{scenario}: meshless attempts per request {apr:.3} ({} attempts) ≤ \
                 {MAX_ATTEMPTS_PER_REQUEST}",
                run.attempts
            ),
        });
    }
    if let Some(run) = meshless("outage") {
        let bound = (1.0 + BUDGET_RATIO) * run.requests as f64 + BUDGET_MIN_PER_S * BUDGET_TTL_S;
        out.push(Verdict {
            pass: run.attempts as f64 <= bound,
            text: format!(
                "outage: meshless total attempts {} ≤ {:.1} × {} requests + {} retries/s × {} s \
                 = {bound:.0} ({:.3} attempts per request)",
                run.attempts,
                1.0 + BUDGET_RATIO,
                run.requests,
                BUDGET_MIN_PER_S,
                BUDGET_TTL_S,
                run.attempts_per_request()
            ),
        });
    }
    out
}

/// Every chart file of `scenario`.
pub fn chart_files(scenario: &Scenario) -> Vec<String> {
    let mut files = vec![
        format!("{}-cdf.svg", scenario.name),
        format!("{}-success.svg", scenario.name),
    ];
    files.extend(protect_report::chart_files(scenario));
    files.extend(hedging::chart_files(scenario));
    files
}

/// The whole report. `image_dir` prefixes chart file names (`""` next to the report).
pub fn markdown(setup: &Setup, scenarios: &[Scenario], runs: &[Run], image_dir: &str) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# meshless lab report\n");
    let _ = writeln!(
        w,
        "Scenario runs of HTTP clients against a local fleet of misbehaving backends \
         (`meshless::testing`). Regenerate with:\n\n```text\n{}\n```\n",
        setup.command
    );
    let _ = writeln!(w, "- Date: {}", setup.date);
    let _ = writeln!(w, "- Commit: {}", setup.commit);
    let _ = writeln!(w, "- Machine: {}", setup.machine);
    let _ = writeln!(
        w,
        "- Wall time of the whole lab: {:.1} s (the compile not included)\n",
        setup.wall_s
    );

    let _ = writeln!(w, "## Setup\n");
    let _ = writeln!(
        w,
        "- Fleet: 5 HTTP/1.1 backends on 127.0.0.1 in the lab's own process, started afresh \
         for every scenario and mode, so that no mode inherits another's connections, \
         ejections or budget; phases run on the fleet's clock, which starts just before the \
         load."
    );
    let _ = writeln!(
        w,
        "- Load: open loop, {} requests per scenario and mode, `GET /`, request *i* due at \
         *i* / {} s after the start, at most {} in flight (a request due while {} are in flight \
         waits for one to end). The schedule is the same for every mode, so the time axes \
         compare. The cap is well above what the healthy backends need (about 3 in flight \
         at this rate) so that the plain mode's hung requests, which hold a slot for the \
         whole deadline, do not hold back the schedule of the others.",
        setup.requests, setup.rate, setup.max_in_flight, setup.max_in_flight
    );
    let _ = writeln!(
        w,
        "- Backend delays are tokio timers, with a resolution of 1 ms: hence the steps at \
         about 1.2, 2.4, 3.6 ms… in the latency CDFs."
    );
    let _ = writeln!(
        w,
        "- Every mode has the same end-to-end deadline, {} ms per request, body included \
         (loadgen's `--timeout-ms` default).",
        setup.timeout_ms
    );
    let _ = writeln!(
        w,
        "- **plain**: a hyper-util client, round robin over the endpoints, one attempt per \
         request (loadgen `--mode plain`)."
    );
    let _ = writeln!(
        w,
        "- **tower**: tower 0.5 p2c over `PeakEwma`, `Retry` with a `TpsBudget` (10 s, 10/s, \
         20%), up to 2 retries of errors and 5xx with exponential backoff, a per-attempt \
         timeout of deadline ÷ 3 (loadgen `--mode tower`)."
    );
    let _ = writeln!(
        w,
        "- **meshless**: `meshless::http::Client` with the library's default policy and the \
         deadline above (attempt timeout deadline ÷ 3, 2 retries under the default budget, \
         P2C over peak-EWMA divided by the share of attempts that answered, outlier ejection), built as loadgen \
         `--mode meshless` builds it."
    );
    let _ = writeln!(
        w,
        "- Measured per run: requests, success (2xx with the whole body read), attempts per \
         request (meshless: requests + retries from `retry_stats()`; tower: counted between \
         its retry and its attempt timeout; plain: 1), latency of every request from the call \
         to the end of the body, failures included (HDR histogram, µs), success per {} ms \
         bucket of start time, and per endpoint the attempts the client finished there, \
         failures among them and ejections.\n",
        super::stats::BUCKET.as_millis()
    );

    let _ = writeln!(w, "## Acceptance\n");
    let _ = writeln!(
        w,
        "From the issue: meshless at ≥ {MIN_SUCCESS_PCT}% success with ≤ \
         {MAX_ATTEMPTS_PER_REQUEST} attempts per request in the slow, flaky, dying and hanging \
         scenarios; in the outage, total attempts within the budget, ≤ (1 + ratio) × requests + \
         min retries per second × ttl, with the defaults ratio {BUDGET_RATIO}, \
         {BUDGET_MIN_PER_S} retries/s, ttl {BUDGET_TTL_S} s.\n"
    );
    let _ = writeln!(w, "{}\n", protect_report::acceptance_text());
    let _ = writeln!(w, "{}\n", hedging::acceptance_text());
    let _ = writeln!(w, "```text");
    for v in verdicts(runs)
        .into_iter()
        .chain(protect_report::verdicts(runs))
        .chain(hedging::verdicts(runs))
    {
        let _ = writeln!(w, "{}", v.line());
    }
    let _ = writeln!(w, "```\n");

    let _ = writeln!(w, "## Summary\n");
    let _ = writeln!(
        w,
        "| scenario | mode | success | attempts / request | p50 | p99 | p99.9 | max |"
    );
    let _ = writeln!(w, "|---|---|--:|--:|--:|--:|--:|--:|");
    for run in runs {
        let _ = writeln!(
            w,
            "| {} | {} | {:.2}% | {:.3} | {} | {} | {} | {} |",
            run.scenario,
            run.mode,
            run.success_pct(),
            run.attempts_per_request(),
            ms_text(run.quantile_ms(0.5)),
            ms_text(run.quantile_ms(0.99)),
            ms_text(run.quantile_ms(0.999)),
            ms_text(run.max_ms()),
        );
    }
    let _ = writeln!(w);

    for scenario in scenarios {
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|r| r.scenario == scenario.name)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let _ = writeln!(w, "## {} (`{}`)\n", scenario.title, scenario.name);
        let _ = writeln!(w, "{}\n", scenario.description);
        let _ = writeln!(
            w,
            "![{} latency CDF]({image_dir}{}-cdf.svg)\n",
            scenario.name, scenario.name
        );
        let _ = writeln!(
            w,
            "![{} success over time]({image_dir}{}-success.svg)\n",
            scenario.name, scenario.name
        );
        let _ = writeln!(
            w,
            "| mode | requests | ok | failures | attempts | attempts / request | p50 | p99 | \
             p99.9 | max | run |"
        );
        let _ = writeln!(w, "|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|");
        for run in &mine {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {:.3} | {} | {} | {} | {} | {:.2} s |",
                run.mode,
                run.requests,
                run.ok,
                run.failures_text(),
                run.attempts,
                run.attempts_per_request(),
                ms_text(run.quantile_ms(0.5)),
                ms_text(run.quantile_ms(0.99)),
                ms_text(run.quantile_ms(0.999)),
                ms_text(run.max_ms()),
                run.duration.as_secs_f64(),
            );
        }
        let _ = writeln!(w);
        protect_report::section(w, scenario, &mine, image_dir);
        hedging::section(w, scenario, &mine, image_dir);
        let _ = writeln!(
            w,
            "Where the attempts went: per backend, attempts the client finished there / \
             failures among them (errors, timeouts, 5xx, 429) / ejections (meshless only), \
             and requests the backend itself read (`served`; a refused connection never gets \
             that far).\n"
        );
        let _ = write!(w, "| # | backend |");
        for run in &mine {
            let _ = write!(w, " {} | {} served |", run.mode, run.mode);
        }
        let _ = writeln!(w);
        let _ = write!(w, "|--:|---|");
        for _ in &mine {
            let _ = write!(w, "--:|--:|");
        }
        let _ = writeln!(w);
        for (i, (_, role)) in scenario.backends.iter().enumerate() {
            let _ = write!(w, "| {i} | {role} |");
            for run in &mine {
                match run.endpoints.get(i) {
                    Some(e) if run.mode.starts_with("meshless") => {
                        let _ = write!(
                            w,
                            " {} / {} / {} | {} |",
                            e.attempts, e.failures, e.ejections, e.served
                        );
                    }
                    Some(e) => {
                        let _ = write!(w, " {} / {} | {} |", e.attempts, e.failures, e.served);
                    }
                    None => {
                        let _ = write!(w, " – | – |");
                    }
                }
            }
            let _ = writeln!(w);
        }
        let _ = writeln!(w);
        if let Some(stats) = mine.iter().find_map(|r| r.meshless.as_ref()) {
            let _ = writeln!(
                w,
                "meshless' own counters: {} retries; retries refused: {} for the budget, {} \
                 for the retry limit, {} for the server's pushback, {} for the deadline; {} \
                 requests failed fast for want of a ready endpoint. Endpoint status at the \
                 end: {}.\n",
                stats.retries,
                stats.budget_exhausted,
                stats.retries_exhausted,
                stats.pushback_refused,
                stats.deadline_refused,
                stats.fail_fast,
                stats
                    .status
                    .iter()
                    .enumerate()
                    .map(|(i, (_, s))| format!("#{i} {}", short_status(s)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    md
}

/// `Ejected { until: .., reason: ConsecutiveFailures }` → `ejected (ConsecutiveFailures)`.
fn short_status(debug: &str) -> String {
    if let Some(rest) = debug.strip_prefix("Ejected") {
        let reason = rest
            .split("reason:")
            .nth(1)
            .map(|r| r.trim().trim_end_matches('}').trim())
            .unwrap_or("?");
        format!("ejected ({reason})")
    } else {
        debug.to_lowercase()
    }
}
