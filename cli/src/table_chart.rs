//! table.svg: each row's scores (fp32, quantized, FHE) beside its FHE latency per sample.

use crate::table_cmd::Row;
use anyhow::Context;
use plotters::prelude::*;
use std::path::Path;

/// Pixel height per row.
const ROW_PX: u32 = 54;
/// Rows' worth of blank space below the last row, where the legends go (from y = −0.5).
const LEGEND_ROWS: f64 = 1.8;
const FP32: RGBColor = RGBColor(120, 144, 156);
const QUANTIZED: RGBColor = RGBColor(66, 133, 244);
const FHE: RGBColor = RGBColor(15, 157, 88);
const CONCRETE: RGBColor = RGBColor(230, 124, 115);

/// Draw `rows` into an SVG file at `path`: scores on the left (R² clipped to [0, 1]), latency
/// on a log scale on the right, with Concrete ML's measured latency where the row has one.
pub fn draw(rows: &[Row], path: &Path) -> anyhow::Result<()> {
    let n = rows.len().max(1);
    // One blank row's height at the bottom holds the legends.
    let height = 90 + ROW_PX * (n as u32 + 1);
    let root = SVGBackend::new(path, (1200, height)).into_drawing_area();
    draw_on(&root, rows).map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A score bar: colour, legend label, offset within the row, and the score it draws.
type Bar = (RGBColor, &'static str, f64, fn(&Row) -> f64);

/// A legend entry's swatch at `(x, y)`.
fn legend_box(color: RGBColor) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
}

fn draw_on(root: &DrawingArea<SVGBackend, plotters::coord::Shift>, rows: &[Row]) -> DrawResult {
    root.fill(&WHITE)?;
    let n = rows.len().max(1);
    let top = |i: usize| (n - 1 - i) as f64;
    let labels: Vec<String> = rows
        .iter()
        .map(|r| format!("{} · {} ({})", r.model, r.dataset, r.metric))
        .collect();
    let label_of = |y: &f64| {
        let k = y.round();
        if (y - k).abs() > 1e-6 || k < 0.0 || k as usize >= n {
            return String::new();
        }
        labels.get(n - 1 - k as usize).cloned().unwrap_or_default()
    };
    let (left, right) = root.split_horizontally(760);
    let y_range = -LEGEND_ROWS..(n as f64 - 0.5);

    let mut scores = ChartBuilder::on(&left)
        .caption("score: fp32, quantized, FHE", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(300)
        .build_cartesian_2d(0.0..1.0f64, y_range.clone())?;
    scores
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n + 1)
        .y_label_formatter(&label_of)
        .x_desc("accuracy, F1 or R² (R² below 0 drawn at 0)")
        .draw()?;
    let bars: [Bar; 3] = [
        (FP32, "fp32", 0.27, |r| r.fp32.unwrap_or(0.0)),
        (QUANTIZED, "quantized", 0.0, |r| r.quantized),
        (FHE, "FHE", -0.27, |r| r.fhe),
    ];
    for (color, name, offset, value) in bars {
        scores
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let y = top(i) + offset;
                Rectangle::new(
                    [(0.0, y - 0.12), (value(r).clamp(0.0, 1.0), y + 0.12)],
                    color.filled(),
                )
            }))?
            .label(name)
            .legend(legend_box(color));
    }
    scores
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;

    let mut latency = ChartBuilder::on(&right)
        .caption("FHE latency per sample (s)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(10)
        .build_cartesian_2d((1e-4..100.0f64).log_scale(), y_range)?;
    latency
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("seconds, log scale")
        .draw()?;
    latency
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let y = top(i) + 0.14;
            Rectangle::new(
                [(1e-4, y - 0.12), (r.latency_s.max(1e-4), y + 0.12)],
                FHE.filled(),
            )
        }))?
        .label("qfhe")
        .legend(legend_box(FHE));
    latency
        .draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
            let c = r.concrete_ml_here?;
            let y = top(i) - 0.14;
            Some(Rectangle::new(
                [(1e-4, y - 0.12), (c.latency_s.max(1e-4), y + 0.12)],
                CONCRETE.filled(),
            ))
        }))?
        .label("Concrete ML 1.9, same kind of machine")
        .legend(legend_box(CONCRETE));
    latency
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
