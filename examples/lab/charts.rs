//! The two SVG charts of a scenario: latency CDF per mode (log latency axis), and success rate
//! over time per mode.

use super::modes::{ADAPTIVE, FIXED, HEDGING, TOWER_HEDGE};
use super::stats::{BUCKET, Run};
use plotters::prelude::*;
use std::error::Error;
use std::path::Path;

const SIZE: (u32, u32) = (760, 420);

/// Latency axis bounds, in ms: the same for every scenario, so charts compare.
const MIN_MS: f64 = 0.1;
const MAX_MS: f64 = 2000.0;

fn color(mode: &str) -> RGBColor {
    match mode {
        "plain" => RGBColor(214, 39, 40),
        "tower" => RGBColor(31, 119, 180),
        "meshless" => RGBColor(44, 160, 44),
        // The variants that share a chart: a colour each, the same in every chart.
        FIXED => RGBColor(255, 127, 14),
        ADAPTIVE => RGBColor(140, 86, 75),
        TOWER_HEDGE => RGBColor(23, 190, 207),
        HEDGING => RGBColor(148, 103, 189),
        // Any other: a colour picked by the label.
        variant => {
            const OTHERS: [RGBColor; 4] = [
                RGBColor(148, 103, 189),
                RGBColor(255, 127, 14),
                RGBColor(140, 86, 75),
                RGBColor(23, 190, 207),
            ];
            let pick = variant.bytes().map(usize::from).sum::<usize>() % OTHERS.len();
            OTHERS[pick]
        }
    }
}

fn width(mode: &str) -> u32 {
    if mode == "meshless" { 3 } else { 2 }
}

/// The fraction of requests at or below each latency, one line per mode.
pub fn cdf(path: &Path, title: &str, runs: &[&Run]) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d((MIN_MS..MAX_MS).log_scale(), 0.0f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc("latency, ms (log scale; every request, failures included)")
        .y_desc("fraction of requests")
        .x_label_formatter(&|v| format!("{v}"))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .draw()?;
    for run in runs {
        let c = color(run.mode);
        let style = c.stroke_width(width(run.mode));
        let label = format!(
            "{} (p99 {}, p99.9 {})",
            run.mode,
            ms_text(run.quantile_ms(0.99)),
            ms_text(run.quantile_ms(0.999))
        );
        chart
            .draw_series(LineSeries::new(cdf_points(&run.sorted_micros), style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}

/// A step CDF thinned to points at least 1% apart in latency, the last 50 (the tail) kept.
fn cdf_points(sorted_micros: &[u64]) -> Vec<(f64, f64)> {
    let n = sorted_micros.len();
    let mut points = Vec::new();
    let mut last_x = 0.0f64;
    for (i, &micros) in sorted_micros.iter().enumerate() {
        let x = (micros as f64 / 1000.0).clamp(MIN_MS, MAX_MS);
        let y = (i + 1) as f64 / n as f64;
        let next_differs = sorted_micros.get(i + 1) != Some(&micros);
        if next_differs && (x > last_x * 1.01 || i + 50 >= n) {
            // The step: up at x from the previous fraction.
            if let Some(&(_, prev_y)) = points.last() {
                points.push((x, prev_y));
            }
            points.push((x, y));
            last_x = x;
        }
    }
    points
}

/// The lowest fraction the tail chart shows: below one request in the runs' tens of thousands.
const MIN_FRACTION: f64 = 1e-5;

/// The tail: the fraction of requests slower than each latency, one line per mode, both axes
/// log scale, so that the p99 and p99.9 are as far apart as the p50 and p90.
pub fn tail(path: &Path, title: &str, runs: &[&Run]) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (MIN_MS..MAX_MS).log_scale(),
            (MIN_FRACTION..1.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("latency, ms (log scale; every request, failures included)")
        .y_desc("fraction of requests slower (log scale)")
        .x_label_formatter(&|v| format!("{v}"))
        .y_label_formatter(&|v| format!("{v:e}"))
        .draw()?;
    for run in runs {
        let c = color(run.mode);
        let style = c.stroke_width(width(run.mode));
        let label = format!(
            "{} (p99 {}, p99.9 {})",
            run.mode,
            ms_text(run.quantile_ms(0.99)),
            ms_text(run.quantile_ms(0.999))
        );
        // The CDF's points, turned over: slower than x is one minus at most x.
        let points = cdf_points(&run.sorted_micros)
            .into_iter()
            .map(|(x, y)| (x, (1.0 - y).max(MIN_FRACTION)));
        chart
            .draw_series(LineSeries::new(points, style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Success rate per bucket of start time, one line per mode.
pub fn success(path: &Path, title: &str, runs: &[&Run]) -> Result<(), Box<dyn Error>> {
    let buckets = runs
        .iter()
        .map(|r| r.buckets.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let bucket_s = BUCKET.as_secs_f64();
    let end = buckets as f64 * bucket_s;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0f64..end, 0.0f64..101.0)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "request start, s ({} ms buckets)",
            BUCKET.as_millis()
        ))
        .y_desc("success, %")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for run in runs {
        let c = color(run.mode);
        let style = c.stroke_width(width(run.mode));
        let points: Vec<(f64, f64)> = run
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, (total, _))| *total > 0)
            .map(|(i, (total, ok))| {
                (
                    (i as f64 + 0.5) * bucket_s,
                    100.0 * *ok as f64 / *total as f64,
                )
            })
            .collect();
        let label = format!("{} ({:.2}% overall)", run.mode, run.success_pct());
        chart
            .draw_series(LineSeries::new(points, style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}

/// A quantity over time, one line per run: `series` is (mode label, points (s, value)).
/// `shade` greys a span of time (s); `level` draws a dashed horizontal line with its label.
pub struct Lines<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub y_max: f64,
    pub series: Vec<(&'a str, Vec<(f64, f64)>)>,
    pub shade: Option<(f64, f64)>,
    pub level: Option<(f64, &'a str)>,
}

pub fn lines(path: &Path, chart: &Lines<'_>) -> Result<(), Box<dyn Error>> {
    let end = chart
        .series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut ctx = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0f64..end, 0.0f64..chart.y_max)?;
    ctx.configure_mesh()
        .x_desc(chart.x_desc)
        .y_desc(chart.y_desc)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    if let Some((from, to)) = chart.shade {
        let grey = RGBColor(220, 220, 220).mix(0.6).filled();
        ctx.draw_series(std::iter::once(Rectangle::new(
            [(from, 0.0), (to, chart.y_max)],
            grey,
        )))?;
    }
    if let Some((level, label)) = chart.level {
        let style = BLACK.mix(0.6).stroke_width(1);
        ctx.draw_series(DashedLineSeries::new(
            [(0.0, level), (end, level)],
            6,
            4,
            style,
        ))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
    }
    for (mode, points) in &chart.series {
        let style = color(mode).stroke_width(width(mode));
        ctx.draw_series(LineSeries::new(points.iter().copied(), style))?
            .label(*mode)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
    }
    ctx.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}

/// `0.42 ms`, `12.3 ms`, `1,004 ms`.
pub fn ms_text(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        let whole = ms.round() as u64;
        if whole >= 1000 {
            format!("{},{:03} ms", whole / 1000, whole % 1000)
        } else {
            format!("{whole} ms")
        }
    }
}
