//! The hedging scenario (issue 11): a fleet whose answers are fast but for a small share some
//! 50× slower than the median, and the report's parts for it — a progress line, the verdict, a tail chart and a
//! table of what hedging bought and what it cost, for meshless and tower each with and
//! without hedging.

use super::charts::{self, ms_text};
use super::hedge_verdict::{self, MAX_EXTRA_PCT, MIN_CUT, Tail};
use super::modes::{HEDGING, TOWER_HEDGE};
use super::report::Verdict;
use super::scenario::{BACKENDS, Plan, Scenario};
use super::stats::Run;
use super::tower_hedge;
use meshless::testing::{Backend, Behavior, Latency, Phase};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// The scenario's name, on the command line and in file names.
pub const NAME: &str = "hedging";
/// The fast mode: log-normal, median 1 ms, p99 3 ms, as the backends draw it. tokio's timer
/// rounds each delay up to the next millisecond and the loopback adds its share: clients see
/// a median of about 2.5 ms.
const FAST_MEDIAN: Duration = Duration::from_millis(1);
const FAST_P99: Duration = Duration::from_millis(3);
/// The slow mode: about 40× the median clients see (the example: 50× a median of
/// "about 2 ms"), 100× the backends' own.
const SLOW: Duration = Duration::from_millis(100);
/// Each backend stalls for this long at a time…
const STALL: Duration = Duration::from_millis(2);
/// …on average this often (a Poisson process): 2 ms in 133 ms is 1.5% of the time.
const MEAN_STALL_GAP: Duration = Duration::from_millis(131);
/// Stalls are drawn from this seed (plus the backend's index): every run has the same ones.
const SEED: u64 = 11;
/// How long the load lasts: 20 000 requests at the lab's 1000 per second, so that the p99.9 is
/// the 20th slowest request, not one outlier.
const LENGTH: Duration = Duration::from_secs(20);
/// A request slower than this met the slow mode without a hedge to rescue it.
const SLOW_MS: f64 = 50.0;

/// The fleet: five backends, each answering after the fast mode but during its stalls, when
/// a request arriving waits the slow mode. The stalls of each backend are its own.
pub fn scenario() -> Scenario {
    let fast = Behavior::healthy().latency(Latency::lognormal(FAST_MEDIAN, FAST_P99));
    let slow = Behavior::healthy().latency(Latency::fixed(SLOW));
    let share = STALL.as_secs_f64() / (STALL + MEAN_STALL_GAP).as_secs_f64();
    let backends = (0..BACKENDS as u64)
        .map(|i| {
            let mut rng = StdRng::seed_from_u64(SEED + i);
            let mut phases = Vec::new();
            let mut until = Duration::ZERO;
            // Past the end of the load by a deadline, then fast for good.
            while until < LENGTH + Duration::from_secs(2) {
                // An exponential gap: `1 - u` is in (0, 1], so its logarithm is finite.
                let u: f64 = rng.random();
                let gap = MEAN_STALL_GAP.mul_f64(-(1.0 - u).ln());
                phases.push(Phase::new(gap, fast.clone()));
                phases.push(Phase::new(STALL, slow.clone()));
                until += gap + STALL;
            }
            phases.push(Phase::open_ended(fast.clone()));
            let role = format!(
                "log-normal median {} ms, p99 {} ms; {} ms stalls every {} ms on average \
                 (seed {})",
                FAST_MEDIAN.as_millis(),
                FAST_P99.as_millis(),
                STALL.as_millis(),
                (STALL + MEAN_STALL_GAP).as_millis(),
                SEED + i
            );
            (Backend::phases(phases), role)
        })
        .collect();
    Scenario {
        name: NAME,
        title: "Tail latency and hedging",
        description: format!(
            "Five backends answer after a log-normal delay of median {} ms (p99 {} ms; tokio's \
             timer rounds each delay up to the next millisecond, so clients see a median of \
             about 2.5 ms: the p50 column), but a request that arrives while its backend \
             stalls is answered after {} ms, some 40× the median clients see. Each backend stalls for {} ms at random moments, on average every {} ms \
             (a Poisson process drawn from a fixed seed, the same for every client and run, \
             and different for each backend), so about {:.1}% of answers take {} ms and the \
             rest are fast: a bimodal mix, one slow answer no predictor of the next. (The \
             fleet's `Latency` has no mixture shape, so the slow mode comes in short random \
             phases.) The load lasts {} s at the lab's rate. Compared: tower and meshless \
             with their defaults, tower's `hedge` middleware around the same tower client \
             (p{:.0} of the previous {} ms, after {} answers), and meshless with \
             `HedgeConfig::default()` (loadgen's `--hedge`: p95 of the last 30 s after 100 \
             answers, one hedge, at most 5% extra load, on the retry budget).",
            FAST_MEDIAN.as_millis(),
            FAST_P99.as_millis(),
            SLOW.as_millis(),
            STALL.as_millis(),
            (STALL + MEAN_STALL_GAP).as_millis(),
            100.0 * share,
            SLOW.as_millis(),
            LENGTH.as_secs(),
            100.0 * tower_hedge::PERCENTILE,
            tower_hedge::PERIOD.as_millis(),
            tower_hedge::MIN_DATA_POINTS
        ),
        backends,
        plan: Plan::Hedging { length: LENGTH },
    }
}

fn tail(run: &Run) -> Tail {
    Tail {
        label: run.mode.to_string(),
        requests: run.requests,
        attempts: run.attempts,
        lost: run.lost(),
        p999_ms: run.quantile_ms(0.999),
    }
}

/// Requests slower than `SLOW_MS`, in percent.
fn slow_pct(run: &Run) -> f64 {
    let micros = (SLOW_MS * 1000.0) as u64;
    let slow = run.sorted_micros.iter().rev().take_while(|&&m| m > micros);
    100.0 * slow.count() as f64 / (run.sorted_micros.len().max(1)) as f64
}

/// The hedges, in a few words: `412 sent, 398 won; refused: extra_load 30; delay 4.1 ms`.
fn hedges_text(run: &Run) -> String {
    let Some(h) = &run.hedges else {
        return "no hedging".to_string();
    };
    let mut text = format!("{} sent, {} won", h.sent, h.won);
    let refused: Vec<String> = h
        .refused
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    if !refused.is_empty() {
        let _ = write!(text, "; refused: {}", refused.join(", "));
    }
    if let Some(delay) = h.delay {
        let _ = write!(text, "; delay {}", ms_text(delay.as_secs_f64() * 1e3));
    }
    text
}

/// The progress line of a run of this scenario.
pub fn progress(run: &Run) -> Option<String> {
    (run.scenario == NAME).then(|| {
        format!(
            "hedging: p50 {}, extra attempts {:.2}%, lost {}, slower than {SLOW_MS} ms {:.2}%; \
             hedges: {}",
            ms_text(run.quantile_ms(0.5)),
            run.extra_attempts_pct(),
            run.lost(),
            slow_pct(run),
            hedges_text(run)
        )
    })
}

/// The acceptance: meshless with hedging against meshless without.
pub fn verdicts(runs: &[Run]) -> Vec<Verdict> {
    let find = |label: &str| runs.iter().find(|r| r.scenario == NAME && r.mode == label);
    if !runs.iter().any(|r| r.scenario == NAME) {
        return Vec::new();
    }
    match (find("meshless"), find(HEDGING)) {
        (Some(baseline), Some(hedged)) => {
            let (pass, text) = hedge_verdict::judge(&tail(baseline), &tail(hedged));
            vec![Verdict { pass, text }]
        }
        _ => vec![Verdict {
            pass: false,
            text: format!("hedging: needs runs of both \"meshless\" and {HEDGING:?}"),
        }],
    }
}

/// The acceptance text for the report's head.
pub fn acceptance_text() -> String {
    format!(
        "Tail latency and hedging: `{HEDGING}` cuts the p99.9 of `meshless` by at least \
         {MIN_CUT}×, with at most {MAX_EXTRA_PCT}% extra attempts (attempts beyond one per \
         request, retries and hedges alike) and no lost request (one ended by an error or a \
         timeout rather than an answer)."
    )
}

/// The tail chart's file.
pub fn chart_files(scenario: &Scenario) -> Vec<String> {
    match scenario.plan {
        Plan::Hedging { .. } => vec![format!("{}-tail.svg", scenario.name)],
        _ => Vec::new(),
    }
}

/// Draws the tail chart into `dir`.
pub fn charts(dir: &Path, scenario: &Scenario, runs: &[&Run]) -> Result<(), Box<dyn Error>> {
    match chart_files(scenario).first() {
        Some(file) => charts::tail(
            &dir.join(file),
            &format!("{}: the tail", scenario.title),
            runs,
        ),
        None => Ok(()),
    }
}

/// The scenario's section: the tail chart, and a table of the tails and what they cost.
pub fn section(w: &mut String, scenario: &Scenario, runs: &[&Run], image_dir: &str) {
    if !matches!(scenario.plan, Plan::Hedging { .. }) {
        return;
    }
    for file in chart_files(scenario) {
        let _ = writeln!(w, "![{NAME} tail]({image_dir}{file})\n");
    }
    let _ = writeln!(
        w,
        "| client | success | p50 | p99 | p99.9 | slower than {SLOW_MS} ms | attempts / request \
         | extra attempts | hedges | lost |"
    );
    let _ = writeln!(w, "|---|--:|--:|--:|--:|--:|--:|--:|---|--:|");
    for run in runs {
        let _ = writeln!(
            w,
            "| {} | {:.2}% | {} | {} | {} | {:.2}% | {:.3} | {:.2}% | {} | {} |",
            run.mode,
            run.success_pct(),
            ms_text(run.quantile_ms(0.5)),
            ms_text(run.quantile_ms(0.99)),
            ms_text(run.quantile_ms(0.999)),
            slow_pct(run),
            run.attempts_per_request(),
            run.extra_attempts_pct(),
            hedges_text(run),
            run.lost()
        );
    }
    let find = |label: &str| runs.iter().find(|r| r.mode == label);
    let cut = |base: &str, hedged: &str| match (find(base), find(hedged)) {
        (Some(b), Some(h)) => format!("{:.1}×", hedge_verdict::cut(&tail(b), &tail(h))),
        _ => "–".to_string(),
    };
    let ratio = find("meshless").map_or_else(
        || "–".to_string(),
        |run| format!("{:.0}×", SLOW.as_secs_f64() * 1e3 / run.quantile_ms(0.5)),
    );
    let _ = writeln!(
        w,
        "\nThe slow mode ({} ms) is {ratio} the p50 of `meshless` without hedging. Hedging cut \
         the p99.9 {} for meshless, {} for tower. Extra attempts: attempts \
         beyond one per request, in percent of the requests (meshless: requests + retries + \
         hedges from its own counters; tower: attempts counted inside its retry, where each \
         hedge is a request of its own). Hedges: sent, and won (the request's answer came \
         from the hedge); for meshless also the hedges it refused, by reason, and the delay in \
         force at the end. Lost: requests that got no answer (an error or the deadline). \
         tower's hedge has no budget and no cap: it hedges every request of the idempotent \
         methods still unanswered after the percentile; meshless' hedges draw on the retry \
         budget and are capped by `max_extra_load` (5% of the requests). In the table below, \
         the failures of `{TOWER_HEDGE}` are the attempts its hedge dropped when the other \
         answered first (loadgen's meter counts an attempt that never ended as failed); \
         meshless counts those as cancelled, not in its endpoints' attempts.\n",
        SLOW.as_millis(),
        cut("meshless", HEDGING),
        cut("tower", TOWER_HEDGE)
    );
}
