//! Heatmaps: cells painted with a colormap (and a colorbar) or with categorical colours (and
//! a legend); shaded cells dimmed and hatched.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::pen::{AXIS, LEGEND, Pen, TICK, style_axes};
use super::ticks::{Axis, index_ticks, label, ticks};
use super::{raster, titled};
use crate::export::figures::Heatmap;
use crate::render::palette;

/// Up to this many cells an SVG gets one rectangle per cell; past it, an embedded image.
const VECTOR_CELLS: usize = 20_000;
/// Shaded cells at least this large (logical pixels) are hatched as well as dimmed.
const HATCH_MIN_CELL: f64 = 6.0;
/// How far shaded cells are blended towards white.
const DIM: f32 = 0.65;

/// The colour of cell `i`; None leaves it empty.
fn cell_colour(h: &Heatmap, i: usize) -> Option<[u8; 3]> {
    let v = *h.values.get(i)?;
    if v.is_nan() {
        return None;
    }
    let c = match &h.categories {
        Some(cats) => cats.get(v.max(0.0) as usize).map_or(palette::EMPTY, |c| c.1),
        None => {
            let [lo, hi] = h.range;
            h.colormap.at(if hi > lo { (v - lo) / (hi - lo) } else { 0.5 })
        }
    };
    Some(if h.shaded.get(i).copied().unwrap_or(false) { palette::lighten(c, DIM) } else { c })
}

/// Rows or columns that get a tick: evenly thinned, or those with a non-empty label.
fn ticked(labels: &[String], n: usize) -> Vec<usize> {
    if labels.is_empty() {
        return index_ticks(n, 12);
    }
    let named: Vec<usize> = (0..n).filter(|&i| labels.get(i).is_some_and(|l| !l.is_empty())).collect();
    let keep = index_ticks(named.len(), 12);
    keep.into_iter().map(|k| named[k]).collect()
}

/// Tick label of row or column `i`.
fn tick_name(labels: &[String], i: usize) -> String {
    labels.get(i).cloned().unwrap_or_else(|| i.to_string())
}

pub fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, h: &Heatmap, pen: &Pen) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let area = titled(root, &h.title, pen)?;
    let shaded = h.shaded.iter().any(|s| *s);
    let shaded_name = if h.shaded_label.is_empty() { "Shaded" } else { &h.shaded_label };
    let side_w = match &h.categories {
        Some(cats) => {
            let names = cats.iter().map(|c| c.0.as_str()).chain(shaded.then_some(shaded_name));
            names.map(|n| pen.text_width(root, n, LEGEND)).max().unwrap_or(0) + pen.px(48.0)
        }
        None => pen.px(96.0).max(if shaded { pen.text_width(root, shaded_name, LEGEND) + pen.px(40.0) } else { 0 }),
    };
    let (aw, ah) = area.dim_in_pixel();
    let (main, _) = area.split_horizontally(aw as i32 - side_w);

    let (rows, cols) = (h.rows.max(1), h.cols.max(1));
    let row_ticks = ticked(&h.row_labels, rows);
    let col_ticks = ticked(&h.col_labels, cols);
    let widest_row = row_ticks.iter().map(|&r| pen.text_width(root, &tick_name(&h.row_labels, r), TICK)).max();
    let (y_area, x_area, margin) = (widest_row.unwrap_or(0) + pen.px(40.0), pen.px(46.0), pen.px(12.0));
    let (mut ml, mut mr, mut mt, mut mb) = (margin, margin, pen.px(4.0), margin);
    if h.equal_aspect {
        let avail_w = f64::from(aw as i32 - side_w - ml - mr - y_area);
        let avail_h = f64::from(ah as i32 - mt - mb - x_area);
        let cell = (avail_w / cols as f64).min(avail_h / rows as f64);
        let (spare_w, spare_h) = ((avail_w - cell * cols as f64) as i32, (avail_h - cell * rows as f64) as i32);
        (ml, mr, mt, mb) = (ml + spare_w / 2, mr + spare_w - spare_w / 2, mt + spare_h / 2, mb + spare_h - spare_h / 2);
    }
    let mut chart = ChartBuilder::on(&main)
        .margin_left(ml)
        .margin_right(mr)
        .margin_top(mt)
        .margin_bottom(mb)
        .x_label_area_size(x_area)
        .y_label_area_size(y_area)
        .build_cartesian_2d(Axis::new(0.0, cols as f64, 0), Axis::new(0.0, rows as f64, 0))?;
    style_axes(&mut chart.configure_mesh(), pen, &h.x_label, &h.y_label).disable_mesh().draw()?;

    // Row r is drawn at y = r (row 0 at the bottom) or y = rows - 1 - r (row 0 at the top).
    let y_of = |r: usize| if h.row0_at_bottom { r } else { rows - 1 - r } as f64;
    let (left, top) = chart.backend_coord(&(0.0, rows as f64));
    let (right, bottom) = chart.backend_coord(&(cols as f64, 0.0));
    if pen.embedded.is_some() && rows * cols <= VECTOR_CELLS {
        let cells = (0..rows * cols).filter_map(|i| {
            let (r, c) = (i / cols, i % cols);
            let colour = cell_colour(h, i)?;
            Some(Rectangle::new([(c as f64, y_of(r)), (c as f64 + 1.0, y_of(r) + 1.0)], pen.fill(colour)))
        });
        chart.draw_series(cells)?;
    } else {
        let mut rgb = Vec::with_capacity(rows * cols * 3);
        for iy in 0..rows {
            let r = if h.row0_at_bottom { rows - 1 - iy } else { iy };
            for c in 0..cols {
                rgb.extend(cell_colour(h, r * cols + c).unwrap_or(palette::EMPTY));
            }
        }
        raster::paint(root, pen, [left, top, right, bottom], (cols, rows), &rgb)?;
    }
    let cell_px = (f64::from(right - left) / cols as f64).min(f64::from(bottom - top) / rows as f64);
    if shaded && cell_px >= HATCH_MIN_CELL * pen.scale {
        let hatch = pen.line(palette::lighten(palette::INK, 0.35), 1.0);
        let lines = (0..rows * cols).filter(|&i| h.shaded.get(i).copied().unwrap_or(false)).map(|i| {
            let (x, y) = ((i % cols) as f64, y_of(i / cols));
            PathElement::new(vec![(x, y), (x + 1.0, y + 1.0)], hatch)
        });
        chart.draw_series(lines)?;
    }
    root.draw(&Rectangle::new([(left, top), (right, bottom)], pen.line(palette::INK, 1.0)))?;

    // Ticks at cell centres.
    let tick = pen.px(4.0);
    for &c in &col_ticks {
        let (x, y) = chart.backend_coord(&(c as f64 + 0.5, 0.0));
        root.draw(&PathElement::new(vec![(x, y), (x, y + tick)], pen.line(palette::INK, 1.0)))?;
        let style = pen.anchored(TICK, palette::INK, HPos::Center, VPos::Top);
        root.draw_text(&tick_name(&h.col_labels, c), &style, (x, y + tick + pen.px(2.0)))?;
    }
    for &r in &row_ticks {
        let (x, y) = chart.backend_coord(&(0.0, y_of(r) + 0.5));
        root.draw(&PathElement::new(vec![(x - tick, y), (x, y)], pen.line(palette::INK, 1.0)))?;
        let style = pen.anchored(TICK, palette::INK, HPos::Right, VPos::Center);
        root.draw_text(&tick_name(&h.row_labels, r), &style, (x - tick - pen.px(3.0), y))?;
    }

    // The title band splits the figure vertically, so x is the same in `area` and `root`.
    let side_x = aw as i32 - side_w;
    let swatch = Swatches { x: side_x + pen.px(10.0), size: pen.px(12.0), step: pen.px(20.0) };
    match &h.categories {
        Some(cats) => {
            let mut y = top;
            for (name, colour) in cats {
                swatch.draw(root, pen, y, *colour, false, name)?;
                y += swatch.step;
            }
            if shaded {
                swatch.draw(root, pen, y, palette::lighten(palette::INK, DIM), true, shaded_name)?;
            }
        }
        None => {
            let bar_bottom = if shaded { bottom - swatch.step - pen.px(8.0) } else { bottom };
            colorbar(root, h, pen, [side_x + pen.px(10.0), top, side_x + pen.px(28.0), bar_bottom])?;
            if shaded {
                let grey = palette::lighten(h.colormap.at(0.5), DIM);
                swatch.draw(root, pen, bottom - swatch.size, grey, true, shaded_name)?;
            }
        }
    }
    Ok(())
}

/// A column of legend entries: a colour square and its name.
struct Swatches {
    x: i32,
    size: i32,
    step: i32,
}

impl Swatches {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        pen: &Pen,
        y: i32,
        colour: [u8; 3],
        hatched: bool,
        name: &str,
    ) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (x0, y0, x1, y1) = (self.x, y, self.x + self.size, y + self.size);
        root.draw(&Rectangle::new([(x0, y0), (x1, y1)], pen.fill(colour)))?;
        if hatched {
            root.draw(&PathElement::new(
                vec![(x0, y1), (x1, y0)],
                pen.line(palette::lighten(palette::INK, 0.35), 1.0),
            ))?;
        }
        root.draw(&Rectangle::new([(x0, y0), (x1, y1)], pen.line(palette::lighten(palette::INK, 0.5), 1.0)))?;
        let style = pen.anchored(LEGEND, palette::INK, HPos::Left, VPos::Center);
        root.draw_text(name, &style, (x1 + pen.px(6.0), (y0 + y1) / 2))?;
        Ok(())
    }
}

/// A vertical colorbar in `rect` (pixels of `root`), high values at the top, with ticks and
/// the colorbar label.
fn colorbar<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, h: &Heatmap, pen: &Pen, rect: [i32; 4]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let [x0, y0, x1, y1] = rect;
    if y1 <= y0 {
        return Ok(());
    }
    const STEPS: usize = 256;
    let rgb: Vec<u8> = (0..STEPS).flat_map(|i| h.colormap.at(1.0 - i as f32 / (STEPS - 1) as f32)).collect();
    raster::paint(root, pen, rect, (1, STEPS), &rgb)?;
    root.draw(&Rectangle::new([(x0, y0), (x1, y1)], pen.line(palette::INK, 1.0)))?;
    let [lo, hi] = [f64::from(h.range[0]), f64::from(h.range[1])];
    if hi > lo {
        let (values, decimals) = ticks(lo, hi, 5);
        for v in values {
            let y = y1 - ((v - lo) / (hi - lo) * f64::from(y1 - y0)).round() as i32;
            root.draw(&PathElement::new(vec![(x1, y), (x1 + pen.px(4.0), y)], pen.line(palette::INK, 1.0)))?;
            let style = pen.anchored(TICK, palette::INK, HPos::Left, VPos::Center);
            root.draw_text(&label(v, decimals), &style, (x1 + pen.px(6.0), y))?;
        }
    }
    let style = pen.anchored(AXIS, palette::INK, HPos::Center, VPos::Center).transform(FontTransform::Rotate270);
    root.draw_text(&h.colorbar_label, &style, (x1 + pen.px(62.0), (y0 + y1) / 2))?;
    Ok(())
}
