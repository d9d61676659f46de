//! The SVG chart of a run: one row per configuration; on the left, put+commit, take+commit
//! and the raw baseline in events/s (medians, with min-max whiskers over the rounds); on the
//! right, the per-round ratio to the baseline, with a line at 1 (as fast as the raw disk).
//!
//! Drawn with plotters' SVG backend (no fonts needed: the viewer renders the text).

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::{BenchReport, ConfigReport, Spread, rate};

const PUT: RGBColor = RGBColor(31, 119, 180);
const TAKE: RGBColor = RGBColor(44, 160, 44);
const RAW: RGBColor = RGBColor(150, 150, 150);
const RATIO: RGBColor = RGBColor(255, 127, 14);

const WIDTH: u32 = 1200;
const LABEL_WIDTH: u32 = 250;
const TITLE_HEIGHT: u32 = 84;
const ROW_HEIGHT: u32 = 64;

/// The chart as an SVG document, or why it could not be drawn.
pub fn svg(report: &BenchReport) -> Result<String, String> {
    let configs: Vec<&ConfigReport> = report
        .configurations
        .iter()
        .filter(|c| c.rounds_done > 0)
        .collect();
    let height = TITLE_HEIGHT + 90 + ROW_HEIGHT * configs.len().max(1) as u32;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        draw(&root, report, &configs).map_err(|e| format!("drawing the chart: {e}"))?;
        root.present()
            .map_err(|e| format!("drawing the chart: {e}"))?;
    }
    Ok(out)
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn draw(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    report: &BenchReport,
    configs: &[&ConfigReport],
) -> DrawResult {
    root.fill(&WHITE)?;
    let title = if report.channel == "memory" {
        "tidegate bench: memory channel (no durability, no baseline)".to_string()
    } else {
        "tidegate bench: durable channel vs raw write + fdatasync of the same bytes".to_string()
    };
    root.draw(&Text::new(
        title,
        (12, 10),
        ("sans-serif", 20).into_font().style(FontStyle::Bold),
    ))?;
    let regimes: Vec<String> = report
        .disk_regime
        .iter()
        .filter_map(|r| {
            let b = r.before.as_deref()?;
            Some(format!(
                "{}: {} before, {} after",
                r.dir.display(),
                super::regime::regime_word(b),
                r.after.as_deref().map_or("?", super::regime::regime_word)
            ))
        })
        .collect();
    let subtitle = format!(
        "medians over {} rounds per configuration, whiskers min-max; baseline interleaved \
         round by round on the same directory{}{}",
        report.rounds_requested,
        if regimes.is_empty() {
            ""
        } else {
            "; disk regime "
        },
        regimes.join(", ")
    );
    root.draw(&Text::new(
        subtitle,
        (12, 38),
        ("sans-serif", 13).into_font(),
    ))?;
    if configs.is_empty() {
        root.draw(&Text::new(
            "no configuration finished a round",
            (12, 80),
            ("sans-serif", 16).into_font(),
        ))?;
        return Ok(());
    }

    let body = root.margin(TITLE_HEIGHT, 0, 0, 0);
    let (_, plots) = body.split_horizontally(LABEL_WIDTH);
    let (left, right) = plots.split_horizontally((f64::from(WIDTH - LABEL_WIDTH) * 0.64) as u32);
    let n = configs.len();
    let row = |i: usize| (n - 1 - i) as f64;
    let y_range = -0.5..(n as f64 - 0.5);

    // Left: throughput.
    let top = configs
        .iter()
        .flat_map(|c| {
            [
                c.put.events_per_sec,
                c.take.events_per_sec,
                c.baseline.as_ref().and_then(|b| b.events_per_sec),
            ]
        })
        .flatten()
        .map(|s| s.max)
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&left)
        .margin(12)
        .x_label_area_size(44)
        .caption("events/s", ("sans-serif", 16))
        .build_cartesian_2d(0.0..top * 1.08, y_range.clone())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(0)
        .x_labels(6)
        .x_label_formatter(&|v| rate(*v))
        .x_desc("events per second")
        .draw()?;
    let series: [(&str, RGBColor, f64); 3] = [
        ("put+commit", PUT, 0.27),
        ("take+commit", TAKE, 0.0),
        ("raw baseline", RAW, -0.27),
    ];
    for (k, (name, color, offset)) in series.into_iter().enumerate() {
        let bars: Vec<(f64, Spread)> = configs
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let s = match k {
                    0 => c.put.events_per_sec,
                    1 => c.take.events_per_sec,
                    _ => c.baseline.as_ref().and_then(|b| b.events_per_sec),
                }?;
                Some((row(i) + offset, s))
            })
            .collect();
        if bars.is_empty() {
            continue;
        }
        chart.draw_series(bars.iter().map(|(y, s)| {
            Rectangle::new([(0.0, y - 0.12), (s.median, y + 0.12)], color.filled())
        }))?;
        chart.draw_series(bars.iter().map(|(y, s)| whisker(s.min, s.max, *y, 0.08)))?;
        // The legend, in the header's right corner.
        let x = WIDTH as i32 - 420 + 140 * k as i32;
        root.draw(&Rectangle::new([(x, 62), (x + 14, 74)], color.filled()))?;
        root.draw(&Text::new(
            name,
            (x + 20, 62),
            ("sans-serif", 13).into_font(),
        ))?;
    }

    // Configuration labels, left of the throughput chart, at each row's pixel height.
    for (i, c) in configs.iter().enumerate() {
        let (_, py) = chart.backend_coord(&(0.0, row(i)));
        let style = ("sans-serif", 14)
            .into_font()
            .into_text_style(root)
            .pos(Pos::new(HPos::Right, VPos::Center));
        root.draw(&Text::new(
            c.label(report.disk_regime.len() > 1),
            (LABEL_WIDTH as i32 - 6, py),
            style,
        ))?;
    }

    // Right: ratio to the baseline.
    let ratios: Vec<(f64, Spread)> = configs
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((row(i), c.ratio_spread?)))
        .collect();
    // The axis follows the medians: one wild round (a regime change inside it) must not squeeze
    // every bar into a sliver. Whiskers that go beyond it are cut at the edge and their maximum
    // printed.
    let median_top = ratios.iter().map(|(_, s)| s.median).fold(1.2, f64::max);
    let rmax = ratios
        .iter()
        .map(|(_, s)| s.max)
        .fold(1.2, f64::max)
        .min(median_top * 1.6);
    let mut chart = ChartBuilder::on(&right)
        .margin(12)
        .x_label_area_size(44)
        .caption("ratio to the raw baseline (put+commit)", ("sans-serif", 16))
        .build_cartesian_2d(0.0..rmax, y_range)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(0)
        .x_labels(6)
        .x_label_formatter(&|v| format!("{v:.1}"))
        .x_desc("engine / raw, per round")
        .draw()?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, -0.5), (1.0, n as f64 - 0.5)],
        BLACK.mix(0.6).stroke_width(1),
    )))?;
    if ratios.is_empty() {
        let (px, py) = chart.backend_coord(&(0.05, (n as f64 - 1.0) / 2.0));
        root.draw(&Text::new(
            "no baseline (memory channel)",
            (px, py),
            ("sans-serif", 14).into_font(),
        ))?;
    }
    chart.draw_series(
        ratios
            .iter()
            .map(|(y, s)| Rectangle::new([(0.0, y - 0.2), (s.median, y + 0.2)], RATIO.filled())),
    )?;
    chart.draw_series(
        ratios
            .iter()
            .map(|(y, s)| whisker(s.min.min(rmax), s.max.min(rmax), *y, 0.12)),
    )?;
    // Each bar's median above its left end, where it is never cut off.
    for (y, s) in &ratios {
        let (px, py) = chart.backend_coord(&(0.0, *y));
        let text = if s.max > rmax {
            format!("{:.2} (max {:.1})", s.median, s.max)
        } else {
            format!("{:.2}", s.median)
        };
        root.draw(&Text::new(
            text,
            (px + 4, py - 26),
            ("sans-serif", 13).into_font(),
        ))?;
    }
    Ok(())
}

/// A horizontal min-max whisker at height `y` with end ticks of half-height `h`.
fn whisker(min: f64, max: f64, y: f64, h: f64) -> PathElement<(f64, f64)> {
    PathElement::new(
        vec![
            (min, y - h),
            (min, y + h),
            (min, y),
            (max, y),
            (max, y - h),
            (max, y + h),
        ],
        BLACK.stroke_width(1),
    )
}
