//! Legends (where to put them, their swatches) and labels of reference lines.

use anyhow::Result;
use plotters::chart::{ChartContext, SeriesAnno, SeriesLabelPosition};
use plotters::coord::{CoordTranslate, Shift};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use plotters::style::text_anchor::{HPos, VPos};

use super::pen::{LEGEND, Pen, TICK};
use super::ticks::Axis;
use crate::render::palette;

/// The corner of the plot where a legend of `entries` lines covers the fewest of `points`,
/// given in plot fractions (0 to 1, y up). Ties go to the upper right.
pub fn best_corner(points: &[(f64, f64)], entries: usize) -> SeriesLabelPosition {
    let (w, h) = (0.42, (0.075 * entries as f64 + 0.06).min(0.9));
    let corners = [
        (SeriesLabelPosition::UpperRight, 1.0 - w, 1.0 - h),
        (SeriesLabelPosition::UpperLeft, 0.0, 1.0 - h),
        (SeriesLabelPosition::LowerRight, 1.0 - w, 0.0),
        (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
    ];
    let covered =
        |x0: f64, y0: f64| points.iter().filter(|(x, y)| *x >= x0 && *x <= x0 + w && *y >= y0 && *y <= y0 + h).count();
    let mut best = (usize::MAX, SeriesLabelPosition::UpperRight);
    for (pos, x0, y0) in corners {
        let n = covered(x0, y0);
        if n < best.0 {
            best = (n, pos);
        }
    }
    best.1
}

/// Draws the legend of every labelled series of `chart` at `pos`.
pub fn draw<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    pen: &Pen,
    pos: SeriesLabelPosition,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(pos)
        .label_font(pen.font(LEGEND))
        .legend_area_size(pen.upx(28.0))
        .margin(pen.upx(6.0))
        .border_style(pen.line(palette::lighten(palette::INK, 0.6), 1.0))
        .background_style(WHITE.mix(0.9).filled())
        .draw()?;
    Ok(())
}

/// Gives `anno` a line swatch (dashed, with a marker) in `style`.
pub fn line_swatch<'a, DB: DrawingBackend + 'a>(
    anno: &mut SeriesAnno<'a, DB>,
    pen: &Pen,
    style: ShapeStyle,
    dashed: bool,
    marker: bool,
) {
    let (len, dash, gap, r) = (pen.px(22.0), pen.px(5.0), pen.px(3.0), pen.px(3.0));
    match (dashed, marker) {
        (true, _) => {
            anno.legend(move |(x, y)| DashedPathElement::new(vec![(x, y), (x + len, y)], dash, gap, style));
        }
        (false, true) => {
            anno.legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (len, 0)], style)
                    + Circle::new((len / 2, 0), r, style.filled())
            });
        }
        (false, false) => {
            anno.legend(move |(x, y)| PathElement::new(vec![(x, y), (x + len, y)], style));
        }
    }
}

/// Gives `anno` a filled square swatch of `colour`.
pub fn box_swatch<'a, DB: DrawingBackend + 'a>(anno: &mut SeriesAnno<'a, DB>, pen: &Pen, colour: [u8; 3]) {
    let (w, h) = (pen.px(16.0), pen.px(5.0));
    let style = pen.fill(colour);
    anno.legend(move |(x, y)| Rectangle::new([(x + 3, y - h), (x + 3 + w, y + h)], style));
}

/// The height of a [`tag`], box included.
fn tag_height<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, pen: &Pen) -> Result<i32>
where
    DB::ErrorType: 'static,
{
    let style = pen.anchored(TICK, palette::INK, HPos::Left, VPos::Bottom);
    Ok(root.estimate_text_size("Ag", &style)?.1 as i32 + 2 * pen.px(2.0))
}

/// Bottom rows for tags of horizontal lines at pixel rows `ys`: just above each line, except that
/// a tag which would overlap the one above it goes below its line instead.
fn tag_rows(ys: &[i32], height: i32) -> Vec<i32> {
    let mut order: Vec<usize> = (0..ys.len()).collect();
    order.sort_by_key(|&i| ys[i]);
    let mut rows = vec![0; ys.len()];
    let mut last = i32::MIN / 2;
    for i in order {
        let above = ys[i] - 1;
        rows[i] = if above - height >= last { above } else { (ys[i] + height + 1).max(last + height) };
        last = rows[i];
    }
    rows
}

/// Dashed horizontal reference lines from `x0` to `x1`, each tagged with its name at the right
/// end, the tags of close lines kept apart.
pub fn reference_lines<'a, DB: DrawingBackend + 'a>(
    root: &DrawingArea<DB, Shift>,
    chart: &mut ChartContext<'a, DB, Cartesian2d<Axis, Axis>>,
    pen: &Pen,
    lines: &[(f64, String)],
    [x0, x1]: [f64; 2],
    style: ShapeStyle,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let ends: Vec<_> = lines.iter().map(|(v, _)| chart.backend_coord(&(x1, *v))).collect();
    let rows = tag_rows(&ends.iter().map(|e| e.1).collect::<Vec<_>>(), tag_height(root, pen)?);
    for (((v, name), (x, _)), row) in lines.iter().zip(ends).zip(rows) {
        chart.draw_series(std::iter::once(DashedPathElement::new(
            vec![(x0, *v), (x1, *v)],
            pen.px(6.0),
            pen.px(4.0),
            style,
        )))?;
        tag(root, pen, name, (x - pen.px(4.0), row), palette::INK, HPos::Right)?;
    }
    Ok(())
}

/// Draws `text` starting (`HPos::Left`) or ending at `at` (pixels of `root`), just above it, on a
/// translucent white box so it stays legible over bars and lines.
pub fn tag<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    pen: &Pen,
    text: &str,
    at: (i32, i32),
    colour: [u8; 3],
    align: HPos,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let style = pen.anchored(TICK, colour, align, VPos::Bottom);
    let (w, h) = root.estimate_text_size(text, &style)?;
    // The layout estimate is a little narrow for some glyphs: pad the sides more.
    let (w, h, pad, side) = (w as i32, h as i32, pen.px(2.0), pen.px(5.0));
    let (x0, y1) = (if matches!(align, HPos::Left) { at.0 } else { at.0 - w }, at.1);
    root.draw(&Rectangle::new([(x0 - side, y1 - h - 2 * pad), (x0 + w + side, y1)], WHITE.mix(0.9).filled()))?;
    root.draw_text(text, &style, (at.0, y1 - pad))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::tag_rows;

    #[test]
    fn close_lines_get_tags_on_either_side() {
        // Far apart: each tag just above its line.
        assert_eq!(tag_rows(&[100, 300], 20), vec![99, 299]);
        // Three lines within a tag's height: the first above, the others pushed below.
        assert_eq!(tag_rows(&[205, 200, 210], 20), vec![226, 199, 246]);
    }
}
