//! Image grids: small images with captions, flipped predictions framed.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::pen::{CAPTION, Pen, TITLE};
use super::{raster, titled};
use crate::export::figures::ImageGrid;
use crate::render::palette;

/// Logical layout: fixed width, rows as many as the images need.
const WIDTH: f64 = 800.0;
const MARGIN: f64 = 16.0;
const GAP: f64 = 14.0;
const LINE: f64 = 13.0;
const MAX_IMAGE_HEIGHT: f64 = 240.0;
/// Thickness of a highlighted frame.
const FRAME: f64 = 3.0;

struct Layout {
    columns: usize,
    cell_w: f64,
    image_h: f64,
    row_h: f64,
    top: f64,
    height: f64,
}

fn layout(g: &ImageGrid) -> Layout {
    let columns = g.columns.max(1);
    let rows = g.images.len().div_ceil(columns).max(1);
    let cell_w = (WIDTH - 2.0 * MARGIN - (columns - 1) as f64 * GAP) / columns as f64;
    let aspect = g.images.iter().filter(|i| i.width > 0).map(|i| i.height as f64 / i.width as f64).fold(0.0, f64::max);
    let image_h = (cell_w * if aspect > 0.0 { aspect } else { 1.0 }).min(MAX_IMAGE_HEIGHT);
    let lines = g.images.iter().map(|i| i.caption.lines().count()).max().unwrap_or(0);
    let row_h = image_h + lines as f64 * LINE + 6.0 + GAP;
    let top = TITLE + 20.0 + 4.0;
    Layout { columns, cell_w, image_h, row_h, top, height: top + rows as f64 * row_h + MARGIN - GAP }
}

/// Logical size of the grid's figure.
pub fn size(g: &ImageGrid) -> (u32, u32) {
    (WIDTH as u32, layout(g).height.ceil() as u32)
}

pub fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, g: &ImageGrid, pen: &Pen) -> Result<()>
where
    DB::ErrorType: 'static,
{
    titled(root, &g.title, pen)?;
    let l = layout(g);
    for (k, img) in g.images.iter().enumerate() {
        let (r, c) = (k / l.columns, k % l.columns);
        let (cx, cy) = (MARGIN + c as f64 * (l.cell_w + GAP), l.top + r as f64 * l.row_h);
        // Fit the image into its cell, keeping its aspect, centred.
        let (iw, ih) = (img.width.max(1) as f64, img.height.max(1) as f64);
        let s = (l.cell_w / iw).min(l.image_h / ih);
        let (w, h) = (iw * s, ih * s);
        let (x0, y0) = (cx + (l.cell_w - w) / 2.0, cy + (l.image_h - h) / 2.0);
        let rect = [pen.px(x0), pen.px(y0), pen.px(x0 + w), pen.px(y0 + h)];
        if img.highlight {
            let t = pen.px(FRAME);
            let frame = [(rect[0] - t, rect[1] - t), (rect[2] + t, rect[3] + t)];
            root.draw(&Rectangle::new(frame, pen.fill(palette::HIGHLIGHT)))?;
        } else {
            let frame = [(rect[0] - 1, rect[1] - 1), (rect[2], rect[3])];
            root.draw(&Rectangle::new(frame, pen.line(palette::lighten(palette::INK, 0.6), 1.0)))?;
        }
        raster::paint(root, pen, rect, (img.width, img.height), &img.rgb)?;
        let colour = if img.highlight { palette::HIGHLIGHT } else { palette::INK };
        let style = pen.anchored(CAPTION, colour, HPos::Center, VPos::Top);
        for (i, line) in img.caption.lines().enumerate() {
            let y = cy + l.image_h + 6.0 + i as f64 * LINE;
            root.draw_text(line, &style, (pen.px(cx + l.cell_w / 2.0), pen.px(y)))?;
        }
    }
    Ok(())
}
