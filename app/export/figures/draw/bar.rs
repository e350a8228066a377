//! Grouped bar plots over named categories (layers, kernels).

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::legend;
use super::line::extent;
use super::pen::{Pen, TICK, TITLE, style_axes};
use super::ticks::{Axis, index_ticks};
use crate::engine::analysis::scores::Class;
use crate::export::figures::{BarPlot, sentence_case};
use crate::render::palette::{self, CLASS_COLOURS};

/// Share of a category's slot covered by its bars.
const GROUP_WIDTH: f64 = 0.8;
/// Widest bar, logical pixels.
const MAX_BAR: f64 = 56.0;

pub fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, p: &BarPlot, pen: &Pen) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let n = p.categories.len().max(1);
    let values: Vec<f64> = p.series.iter().flat_map(|s| s.1.iter().copied()).filter(|v| v.is_finite()).collect();
    let [mut y0, mut y1] = extent(values.iter().copied().chain([0.0]).chain(p.hlines.iter().map(|h| h.0)), 0.08);
    // Bars grow from zero: no padding below zero when every bar is positive, and vice versa.
    if values.iter().chain(p.hlines.iter().map(|h| &h.0)).all(|v| *v >= 0.0) {
        y0 = 0.0;
    }
    if values.iter().chain(p.hlines.iter().map(|h| &h.0)).all(|v| *v <= 0.0) {
        y1 = 0.0;
    }
    if let Some(r) = p.y_range {
        [y0, y1] = r;
    }
    // Bars start at zero, or at the axis when zero is outside a fixed range.
    let base = 0.0f64.clamp(y0, y1);

    // Category labels: every one if few, else evenly thinned; vertical when they do not fit.
    let shown = if n <= 40 { (0..p.categories.len()).collect() } else { index_ticks(n, 20) };
    let slot = pen.scale * (800.0 - 100.0) / n as f64 * (n as f64 / shown.len().max(1) as f64);
    let widest = shown.iter().map(|&i| pen.text_width(root, &p.categories[i], TICK)).max().unwrap_or(0);
    let vertical = f64::from(widest) > 0.9 * slot;
    let chips = !p.category_class.is_empty();
    let chip = if chips { pen.px(12.0) } else { 0 };
    let label_height = if vertical { widest.min(pen.px(150.0)) } else { pen.px(14.0) };

    let mut chart = ChartBuilder::on(root)
        .caption(&p.title, pen.font(TITLE))
        .margin(pen.px(12.0))
        .x_label_area_size(pen.px(30.0) + chip + label_height)
        .y_label_area_size(pen.px(64.0))
        .build_cartesian_2d(Axis::new(-0.5, n as f64 - 0.5, 0), Axis::new(y0, y1, 6))?;
    style_axes(&mut chart.configure_mesh(), pen, &p.x_label, &p.y_label).disable_x_mesh().draw()?;

    let ns = p.series.len().max(1);
    // Bars at most MAX_BAR wide, so one or two categories do not give slabs.
    let slot_px = f64::from(chart.backend_coord(&(0.5, y0)).0 - chart.backend_coord(&(-0.5, y0)).0).max(1.0);
    let width = (GROUP_WIDTH / ns as f64).min(MAX_BAR * pen.scale / slot_px);
    let group = width * ns as f64;
    let mut covered = Vec::new();
    for (j, (name, vals, colour)) in p.series.iter().enumerate() {
        let bars = vals.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(i, &v)| {
            let c = p.bar_colours.get(i).copied().flatten().unwrap_or(palette::series(*colour));
            let xa = i as f64 - group / 2.0 + j as f64 * width;
            Rectangle::new([(xa, base), (xa + width, v.clamp(y0, y1))], pen.fill(c))
        });
        let anno = chart.draw_series(bars)?;
        if !name.is_empty() {
            anno.label(name);
            legend::box_swatch(anno, pen, palette::series(*colour));
        }
        for (i, &v) in vals.iter().enumerate().filter(|(_, v)| v.is_finite()) {
            let x = (i as f64 + 0.5) / n as f64;
            covered.extend((0..=4).map(|k| (x, (base + (v - base) * k as f64 / 4.0 - y0) / (y1 - y0))));
        }
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(-0.5, base), (n as f64 - 0.5, base)],
        pen.line(palette::INK, 1.0),
    )))?;
    let style = pen.line(palette::series(palette::REFERENCE), 1.5);
    legend::reference_lines(root, &mut chart, pen, &p.hlines, [-0.5, n as f64 - 0.5], style)?;

    // Category labels (and class chips) under the axis, in the class colour where there is one.
    for &i in &shown {
        let class = p.category_class.get(i).copied().flatten().filter(|&c| c < CLASS_COLOURS.len());
        let colour = class.map_or(palette::INK, |c| CLASS_COLOURS[c]);
        let (x, y) = chart.backend_coord(&(i as f64, y0));
        if let Some(c) = class {
            let h = pen.px(4.0);
            root.draw(&Rectangle::new([(x - h, y + h), (x + h, y + 3 * h)], pen.fill(CLASS_COLOURS[c])))?;
        }
        let top = y + pen.px(6.0) + chip;
        let style = if vertical {
            pen.anchored(TICK, colour, HPos::Right, VPos::Center).transform(FontTransform::Rotate270)
        } else {
            pen.anchored(TICK, colour, HPos::Center, VPos::Top)
        };
        root.draw_text(&p.categories[i], &style, (x, top))?;
    }

    let mut entries = p.series.iter().filter(|s| !s.0.is_empty()).count();
    for (name, colour) in &p.legend_extra {
        let anno = chart.draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())?;
        anno.label(name);
        legend::box_swatch(anno, pen, *colour);
        entries += 1;
    }
    for (c, class) in Class::ALL.iter().enumerate() {
        if p.category_class.contains(&Some(c)) {
            let anno = chart.draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())?;
            anno.label(sentence_case(class.name()));
            legend::box_swatch(anno, pen, CLASS_COLOURS[c]);
            entries += 1;
        }
    }
    if entries > 0 {
        legend::draw(&mut chart, pen, legend::best_corner(&covered, entries))?;
    }
    Ok(())
}
