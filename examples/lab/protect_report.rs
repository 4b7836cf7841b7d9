//! The report's parts for the scenarios that test how a client protects the upstream: the
//! outage and recovery (traffic received against offered), and the overload (goodput and p99
//! against the fleet's capacity). Verdicts, tables, charts and progress lines.

use super::charts::{self, Lines, ms_text};
use super::modes::{ADAPTIVE, FIXED};
use super::overload::{MAX_P99_RATIO, MIN_GOODPUT};
use super::report::Verdict;
use super::scenario::{Plan, Scenario};
use super::stats::{BUCKET as SUCCESS_BUCKET, Run};
use super::timeline::{BUCKET, FULL, FULL_RUN, PROBES_ONLY};
use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// The acceptance for the recovery: back to full within this of the first good probe.
pub const MAX_BACK_TO_FULL: Duration = Duration::from_secs(2);

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(
        || "never".to_string(),
        |d| format!("{:.1} s", d.as_secs_f64()),
    )
}

/// One line of figures for the progress output, for the scenarios that have them.
pub fn progress(run: &Run) -> Option<String> {
    if let Some(r) = &run.recovery {
        return Some(format!(
            "outage: received {:.1}% of offered; open after {}, then {:.1}%; first good answer \
             {} after healing, back to full {} later",
            100.0 * r.outage_share(),
            secs(r.time_to_open),
            100.0 * r.open_share(),
            secs(r.first_good),
            secs(r.back_to_full)
        ));
    }
    run.overload.as_ref().map(|o| {
        format!(
            "overload: goodput {:.0}/s = {:.1}% of capacity; p99 ok {} vs {} uncongested \
             ({:.2}×); fleet answered {:.0}/s, refused {}, deepest queue {}; failures: {}",
            o.goodput,
            100.0 * o.goodput_share(),
            ms_text(o.rush_p99_ms),
            ms_text(o.calm_p99_ms),
            o.p99_ratio(),
            o.fleet_rate,
            o.refused,
            o.max_queue,
            o.failures_text()
        )
    })
}

/// The acceptance: recovery for meshless (its default stack), overload for the
/// adaptive-limit variant (or, until it exists, a note saying so).
pub fn verdicts(runs: &[Run]) -> Vec<Verdict> {
    let mut out = Vec::new();
    let recovery = runs
        .iter()
        .find(|r| r.mode == "meshless" && r.recovery.is_some());
    if let Some(r) = recovery.and_then(|run| run.recovery.as_ref()) {
        let text = match r.time_to_open {
            Some(open) => format!(
                "recovery: meshless, while holding back (from {} into the outage), the fleet \
                 received {:.1}% of the requests offered ({:.0} of {}) ≤ {:.0}%",
                secs(Some(open)),
                100.0 * r.open_share(),
                r.open_received,
                r.open_offered,
                100.0 * PROBES_ONLY
            ),
            None => format!(
                "recovery: meshless never held back: the fleet received {:.1}% of the requests \
                 offered over the whole outage ({:.0} of {}); ≤ {:.0}% while holding back",
                100.0 * r.outage_share(),
                r.received,
                r.offered,
                100.0 * PROBES_ONLY
            ),
        };
        out.push(Verdict {
            pass: r.time_to_open.is_some() && r.open_share() <= PROBES_ONLY,
            text,
        });
        out.push(Verdict {
            pass: r.back_to_full.is_some_and(|d| d <= MAX_BACK_TO_FULL),
            text: format!(
                "recovery: meshless back to full traffic {} after the first good answer ({} \
                 after healing) ≤ {} s",
                secs(r.back_to_full),
                secs(r.first_good),
                MAX_BACK_TO_FULL.as_secs()
            ),
        });
    }
    let overloaded: Vec<&Run> = runs.iter().filter(|r| r.overload.is_some()).collect();
    if !overloaded.is_empty() {
        match overloaded.iter().find(|r| r.mode == ADAPTIVE) {
            Some(run) => {
                if let Some(o) = &run.overload {
                    out.push(Verdict {
                        pass: o.pass(),
                        text: format!(
                            "overload: {ADAPTIVE} goodput {:.1}% of capacity ≥ {:.0}% and p99 \
                             {} ≤ {MAX_P99_RATIO}× the uncongested {} ({:.2}×)",
                            100.0 * o.goodput_share(),
                            100.0 * MIN_GOODPUT,
                            ms_text(o.rush_p99_ms),
                            ms_text(o.calm_p99_ms),
                            o.p99_ratio()
                        ),
                    });
                }
            }
            None => out.push(Verdict {
                pass: false,
                text: format!(
                    "overload: no run labelled {ADAPTIVE:?} (add the variant in lab/modes.rs)"
                ),
            }),
        }
    }
    out
}

/// The acceptance text for the report's head.
pub fn acceptance_text() -> String {
    format!(
        "Outage and recovery (meshless' default stack): while the client holds back (from the \
         first {} ms bucket of the outage in which the fleet received ≤ {:.0}% of the requests \
         offered, to the end of the outage), the fleet receives ≤ {:.0}% of the requests \
         offered; after healing, traffic is back to full (≥ {:.0}% of offered for {FULL_RUN} \
         buckets in a row) within {} s of the first good answer. Overload (the \
         `{ADAPTIVE}` variant): goodput ≥ {:.0}% of the fleet's capacity and p99 of successful \
         requests ≤ {MAX_P99_RATIO}× the uncongested p99.",
        BUCKET.as_millis(),
        100.0 * PROBES_ONLY,
        100.0 * PROBES_ONLY,
        100.0 * FULL,
        MAX_BACK_TO_FULL.as_secs(),
        100.0 * MIN_GOODPUT
    )
}

/// The extra chart files of `scenario`.
pub fn chart_files(scenario: &Scenario) -> Vec<String> {
    match scenario.plan {
        Plan::Standard | Plan::Hedging { .. } => Vec::new(),
        Plan::Recovery { .. } => vec![format!("{}-traffic.svg", scenario.name)],
        Plan::Overload { .. } => vec![format!("{}-goodput.svg", scenario.name)],
    }
}

/// Draws the extra charts of `scenario` into `dir`.
pub fn charts(dir: &Path, scenario: &Scenario, runs: &[&Run]) -> Result<(), Box<dyn Error>> {
    let Some(file) = chart_files(scenario).into_iter().next() else {
        return Ok(());
    };
    let path = dir.join(file);
    match scenario.plan {
        Plan::Standard | Plan::Hedging { .. } => Ok(()),
        Plan::Recovery {
            outage_at, outage, ..
        } => {
            let bucket_s = BUCKET.as_secs_f64();
            let series = runs
                .iter()
                .filter_map(|run| {
                    let t = run.timeline.as_ref()?;
                    let points = t
                        .offered
                        .iter()
                        .zip(&t.received)
                        .enumerate()
                        .filter(|(_, (offered, _))| **offered > 0)
                        .map(|(b, (offered, received))| {
                            let share = 100.0 * received / *offered as f64;
                            ((b as f64 + 0.5) * bucket_s, share.min(200.0))
                        })
                        .collect();
                    Some((run.mode, points))
                })
                .collect();
            let title = format!("{}: requests the fleet received", scenario.title);
            let x_desc = format!("time, s ({} ms buckets; outage shaded)", BUCKET.as_millis());
            charts::lines(
                &path,
                &Lines {
                    title: &title,
                    x_desc: &x_desc,
                    y_desc: "received, % of offered",
                    y_max: 210.0,
                    series,
                    shade: Some((outage_at.as_secs_f64(), (outage_at + outage).as_secs_f64())),
                    level: Some((100.0, "offered")),
                },
            )
        }
        Plan::Overload { capacity, calm, .. } => {
            let bucket_s = SUCCESS_BUCKET.as_secs_f64();
            let series = runs
                .iter()
                .map(|run| {
                    let points = run
                        .buckets
                        .iter()
                        .enumerate()
                        .map(|(b, (_, ok))| ((b as f64 + 0.5) * bucket_s, *ok as f64 / bucket_s))
                        .collect();
                    (run.mode, points)
                })
                .collect();
            let title = format!("{}: goodput", scenario.title);
            let x_desc = format!(
                "request start, s ({} ms buckets; overload from {} s)",
                SUCCESS_BUCKET.as_millis(),
                calm.0.as_secs()
            );
            let level = format!("capacity ({capacity:.0}/s)");
            charts::lines(
                &path,
                &Lines {
                    title: &title,
                    x_desc: &x_desc,
                    y_desc: "successful requests per second",
                    y_max: capacity * 1.6,
                    series,
                    shade: None,
                    level: Some((capacity, &level)),
                },
            )
        }
    }
}

/// The scenario's extra section: its chart and a table of its figures, one row per client.
pub fn section(w: &mut String, scenario: &Scenario, runs: &[&Run], image_dir: &str) {
    for file in chart_files(scenario) {
        let _ = writeln!(
            w,
            "![{}]({image_dir}{file})\n",
            file.trim_end_matches(".svg")
        );
    }
    match scenario.plan {
        Plan::Standard | Plan::Hedging { .. } => {}
        Plan::Recovery { .. } => {
            let _ = writeln!(
                w,
                "| client | received / offered, whole outage | holding back after | received \
                 / offered while holding back | first good answer after healing | back to \
                 full after that |"
            );
            let _ = writeln!(w, "|---|--:|--:|--:|--:|--:|");
            for run in runs {
                let Some(r) = &run.recovery else { continue };
                let held_back = if r.time_to_open.is_some() {
                    format!(
                        "{:.1}% ({:.0} / {})",
                        100.0 * r.open_share(),
                        r.open_received,
                        r.open_offered
                    )
                } else {
                    "–".to_string()
                };
                let _ = writeln!(
                    w,
                    "| {} | {:.1}% ({:.0} / {}) | {} | {held_back} | {} | {} |",
                    run.mode,
                    100.0 * r.outage_share(),
                    r.received,
                    r.offered,
                    secs(r.time_to_open),
                    secs(r.first_good),
                    secs(r.back_to_full)
                );
            }
            let _ = writeln!(
                w,
                "\nReceived: requests the fleet read, from its counters sampled every {} ms \
                 and interpolated per {} ms bucket; offered: requests the client was asked to \
                 send in that bucket. Holding back: from the first bucket of the outage with \
                 ≤ {:.0}% received (`never` if there is none) to the end of the outage. Back \
                 to full: the first of {FULL_RUN} buckets in a row with ≥ {:.0}% received.\n",
                (BUCKET / 4).as_millis(),
                BUCKET.as_millis(),
                100.0 * PROBES_ONLY,
                100.0 * FULL
            );
        }
        Plan::Overload { .. } => {
            let _ = writeln!(
                w,
                "| client | goodput | of capacity | p99 ok, overload | p99 ok, uncongested | \
                 ratio | failures under overload | fleet answered | refused by the fleet | deepest \
                 queue |"
            );
            let _ = writeln!(w, "|---|--:|--:|--:|--:|--:|---|--:|--:|--:|");
            for run in runs {
                let Some(o) = &run.overload else { continue };
                let _ = writeln!(
                    w,
                    "| {} | {:.0}/s ({} of {}) | {:.1}% | {} | {} | {:.2}× | {} | {:.0}/s | {} | {} |",
                    run.mode,
                    o.goodput,
                    o.ok,
                    o.offered,
                    100.0 * o.goodput_share(),
                    ms_text(o.rush_p99_ms),
                    ms_text(o.calm_p99_ms),
                    o.p99_ratio(),
                    o.failures_text(),
                    o.fleet_rate,
                    o.refused,
                    o.max_queue
                );
            }
            let _ = writeln!(
                w,
                "\nGoodput: requests started during the overload that succeeded (2xx within \
                 the deadline), per second of overload. p99 ok: the 99th percentile latency of \
                 the successful requests started in each span. Fleet answered: responses the \
                 backends sent, per second of the whole run, whether or not the client still \
                 waited for them (a request whose client went away leaves the queue, or its \
                 worker, unanswered). The issue asks, of \
                 `{ADAPTIVE}`, goodput ≥ {:.0}% of capacity and a p99 ≤ {MAX_P99_RATIO}× the \
                 uncongested one, beside `{FIXED}` and no limit (`meshless`).\n",
                100.0 * MIN_GOODPUT
            );
        }
    }
}
