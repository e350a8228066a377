//! Line plots: series on one or two y axes, vertical markers, horizontal reference lines.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::HPos;

use super::legend;
use super::pen::{AXIS, Pen, TICK, TITLE, style_axes};
use super::ticks::Axis;
use crate::export::figures::{LinePlot, Series};
use crate::render::palette;

/// The smallest interval holding `values`, widened by `pad` of its span on both sides; a
/// degenerate interval is widened so the axis still has a scale.
pub fn extent(values: impl Iterator<Item = f64>, pad: f64) -> [f64; 2] {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        return [0.0, 1.0];
    }
    if hi - lo < 1e-12 {
        let d = if lo.abs() > 1e-12 { lo.abs() * 0.1 } else { 0.5 };
        return [lo - d, hi + d];
    }
    let d = (hi - lo) * pad;
    [lo - d, hi + d]
}

/// Runs of consecutive finite points: a gap (NaN) in the data breaks the line.
fn runs(s: &Series, map_y: &impl Fn(f64) -> f64) -> Vec<Vec<(f64, f64)>> {
    let (mut out, mut run) = (Vec::new(), Vec::new());
    for p in &s.points {
        if p[0].is_finite() && p[1].is_finite() {
            run.push((p[0], map_y(p[1])));
        } else if !run.is_empty() {
            out.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

pub fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, p: &LinePlot, pen: &Pen) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let y2_series: &[Series] = p.y2.as_ref().map_or(&[], |(_, s)| s);
    let xs = p.series.iter().chain(y2_series).flat_map(|s| s.points.iter().map(|q| q[0]));
    let [x0, x1] = p.x_range.unwrap_or_else(|| extent(xs.chain(p.markers.iter().map(|m| m.x)), 0.0));
    let ys = p.series.iter().flat_map(|s| s.points.iter().map(|q| q[1]));
    let [y0, y1] = p.y_range.unwrap_or_else(|| extent(ys.chain(p.hlines.iter().map(|h| h.0)), 0.05));
    let [s0, s1] =
        p.y2_range.unwrap_or_else(|| extent(y2_series.iter().flat_map(|s| s.points.iter().map(|q| q[1])), 0.05));
    // Second-axis series are drawn in first-axis coordinates: only their tick labels differ.
    let to_primary = move |v: f64| y0 + (v - s0) / (s1 - s0) * (y1 - y0);

    let x_axis = |lo: f64, hi: f64| if p.x_whole { Axis::whole(lo, hi, 8) } else { Axis::new(lo, hi, 8) };
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(&p.title, pen.font(TITLE))
        .margin(pen.px(12.0))
        .x_label_area_size(pen.px(46.0))
        .y_label_area_size(pen.px(64.0));
    if p.y2.is_some() {
        builder.right_y_label_area_size(pen.px(64.0));
    }
    let mut chart = builder
        .build_cartesian_2d(x_axis(x0, x1), Axis::new(y0, y1, 6))?
        .set_secondary_coord(x_axis(x0, x1), Axis::new(s0, s1, 6));
    style_axes(&mut chart.configure_mesh(), pen, &p.x_label, &p.y_label).draw()?;
    if let Some((name, _)) = &p.y2 {
        chart
            .configure_secondary_axes()
            .y_desc(name)
            .label_style(pen.font(TICK))
            .axis_desc_style(pen.font(AXIS))
            .axis_style(pen.line(palette::INK, 1.0))
            .set_all_tick_mark_size(pen.px(4.0))
            .draw()?;
    }

    let reference = pen.line(palette::series(palette::REFERENCE), 1.0);
    legend::reference_lines(root, &mut chart, pen, &p.hlines, [x0, x1], reference)?;
    // Markers in the threshold's colour, as the app marks the threshold.
    let marker_colour = palette::series(palette::THRESHOLD);
    let mut normalised = Vec::new();
    for m in &p.markers {
        let style = pen.line(marker_colour, 1.5);
        chart.draw_series(std::iter::once(DashedPathElement::new(
            vec![(m.x, y0), (m.x, y1)],
            pen.px(4.0),
            pen.px(3.0),
            style,
        )))?;
        if !m.label.is_empty() {
            let (x, y) = chart.backend_coord(&(m.x, y1));
            legend::tag(root, pen, &m.label, (x + pen.px(4.0), y + pen.px(18.0)), marker_colour, HPos::Left)?;
            // The label's span near the top counts as occupied when the legend picks a corner.
            let left = (m.x - x0) / (x1 - x0);
            normalised.extend((0..12).map(|k| (left + 0.02 * k as f64, 0.97)));
        }
    }

    let identity = |v: f64| v;
    let all =
        p.series.iter().map(|s| (s, runs(s, &identity))).chain(y2_series.iter().map(|s| (s, runs(s, &to_primary))));
    for (s, runs) in all {
        let style = pen.line(palette::series(s.colour), 2.0);
        let anno = if s.dashed {
            let dashes = runs.iter().map(|r| DashedPathElement::new(r.clone(), pen.px(7.0), pen.px(4.0), style));
            chart.draw_series(dashes)?
        } else {
            chart.draw_series(runs.iter().map(|r| PathElement::new(r.clone(), style)))?
        };
        if !s.name.is_empty() {
            anno.label(&s.name);
            legend::line_swatch(anno, pen, style, s.dashed, s.markers);
        }
        if s.markers {
            let dots = runs.iter().flatten().map(|&q| Circle::new(q, pen.px(3.0), style.filled()));
            chart.draw_series(dots)?;
        }
        normalised.extend(runs.iter().flatten().map(|&(x, y)| ((x - x0) / (x1 - x0), (y - y0) / (y1 - y0))));
    }
    let entries = p.series.iter().chain(y2_series).filter(|s| !s.name.is_empty()).count();
    if entries > 0 {
        legend::draw(&mut chart, pen, legend::best_corner(&normalised, entries))?;
    }
    Ok(())
}
