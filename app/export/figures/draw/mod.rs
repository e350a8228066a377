//! Off-screen rendering of figures with plotters: PNG at `PNG_SCALE` times the logical size,
//! SVG at the logical size, both from the same drawing code (see `pen`).

mod bar;
mod grid;
mod heatmap;
mod legend;
mod line;
mod pen;
mod raster;
pub mod ticks;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

pub use grid::size as grid_size;
use pen::Pen;

use super::Figure;

/// PNG pixels per logical pixel.
pub const PNG_SCALE: u32 = 2;

/// The figure as PNG bytes, `PNG_SCALE` times its logical size.
pub fn render_png(figure: &Figure) -> Result<Vec<u8>> {
    figure.check_size()?;
    let (w, h) = figure.logical_size();
    let (w, h) = (w * PNG_SCALE, h * PNG_SCALE);
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(&root, figure, &Pen::bitmap(f64::from(PNG_SCALE)))?;
        root.present()?;
    }
    raster::encode_png(&rgb, w, h)
}

/// The figure as an SVG document of its logical size.
pub fn render_svg(figure: &Figure) -> Result<String> {
    figure.check_size()?;
    let (w, h) = figure.logical_size();
    let pen = Pen::svg();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        draw(&root, figure, &pen)?;
        root.present()?;
    }
    raster::embed(svg, pen.embedded.map(|e| e.into_inner()).unwrap_or_default())
}

/// Draws `title` centred in a band at the top of `root`; returns the area below it.
fn titled<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, pen: &Pen) -> Result<DrawingArea<DB, Shift>>
where
    DB::ErrorType: 'static,
{
    let band = pen.px(pen::TITLE + 20.0);
    let (top, rest) = root.split_vertically(band);
    let (w, _) = top.dim_in_pixel();
    let style = pen.anchored(pen::TITLE, crate::render::palette::INK, HPos::Center, VPos::Center);
    top.draw_text(title, &style, (w as i32 / 2, band / 2 + pen.px(2.0)))?;
    Ok(rest)
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, figure: &Figure, pen: &Pen) -> Result<()>
where
    DB::ErrorType: 'static,
{
    pen::register_font()?;
    root.fill(&WHITE)?;
    match figure {
        Figure::Line(p) => line::draw(root, p, pen),
        Figure::Bar(p) => bar::draw(root, p, pen),
        Figure::Heatmap(h) => heatmap::draw(root, h, pen),
        Figure::Grid(g) => grid::draw(root, g, pen),
    }
}
