//! Sizes, fonts and strokes in logical units, scaled to the output's pixels: the SVG is drawn
//! at scale 1, the PNG at `PNG_SCALE`, from the same drawing code.

use std::cell::RefCell;
use std::sync::OnceLock;

use anyhow::{Result, bail};
use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::raster::Embedded;

/// The family every figure uses. SVG viewers substitute their own sans-serif; the PNG uses the
/// font below.
pub const FAMILY: &str = "sans-serif";

/// Text sizes, logical pixels.
pub const TITLE: f64 = 16.0;
pub const AXIS: f64 = 13.0;
pub const TICK: f64 = 11.0;
pub const LEGEND: f64 = 11.0;
pub const CAPTION: f64 = 10.0;

/// Registers the embedded font with plotters once. The PNG backend rasterises text with
/// ab_glyph from these bytes; no system font library is involved. Ubuntu Light is the GUI's
/// own default font (via egui), so exported figures and the app read alike.
pub fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT).is_ok()
    });
    if !ok {
        bail!("the embedded figure font cannot be read");
    }
    Ok(())
}

pub fn rgb(c: [u8; 3]) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// Scale and output kind of one rendering.
pub struct Pen {
    pub scale: f64,
    /// SVG only: images to embed once the document is complete (see `raster`).
    pub(super) embedded: Option<RefCell<Vec<Embedded>>>,
}

impl Pen {
    pub fn bitmap(scale: f64) -> Self {
        Self { scale, embedded: None }
    }

    pub fn svg() -> Self {
        Self { scale: 1.0, embedded: Some(RefCell::new(Vec::new())) }
    }

    /// A logical length in output pixels.
    pub fn px(&self, logical: f64) -> i32 {
        (logical * self.scale).round() as i32
    }

    pub fn upx(&self, logical: f64) -> u32 {
        self.px(logical).max(0) as u32
    }

    pub fn font(&self, size: f64) -> TextStyle<'static> {
        self.font_in(size, crate::render::palette::INK)
    }

    pub fn font_in(&self, size: f64, colour: [u8; 3]) -> TextStyle<'static> {
        (FAMILY, size * self.scale).into_font().color(&rgb(colour))
    }

    /// `font` anchored at `h`, `v` of the text.
    pub fn anchored(&self, size: f64, colour: [u8; 3], h: HPos, v: VPos) -> TextStyle<'static> {
        self.font_in(size, colour).pos(Pos::new(h, v))
    }

    pub fn line(&self, colour: [u8; 3], width: f64) -> ShapeStyle {
        ShapeStyle { color: rgb(colour).to_rgba(), filled: false, stroke_width: self.upx(width).max(1) }
    }

    pub fn fill(&self, colour: [u8; 3]) -> ShapeStyle {
        ShapeStyle { color: rgb(colour).to_rgba(), filled: true, stroke_width: 0 }
    }

    /// Estimated width of `text` in output pixels (for layout decisions).
    pub fn text_width<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, plotters::coord::Shift>,
        text: &str,
        size: f64,
    ) -> i32 {
        area.estimate_text_size(text, &self.font(size))
            .map_or((text.len() as f64 * size * 0.6 * self.scale) as i32, |(w, _)| w as i32)
    }
}

/// The house style of axes: descriptions, tick labels, light grid, dark axis lines.
pub fn style_axes<'a, 'b, X, Y, DB>(
    mesh: &'b mut MeshStyle<'a, 'b, X, Y, DB>,
    pen: &Pen,
    x_desc: &str,
    y_desc: &str,
) -> &'b mut MeshStyle<'a, 'b, X, Y, DB>
where
    X: Ranged<ValueType: Clone> + ValueFormatter<X::ValueType>,
    Y: Ranged<ValueType: Clone> + ValueFormatter<Y::ValueType>,
    DB: DrawingBackend,
{
    mesh.x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(pen.font(TICK))
        .axis_desc_style(pen.font(AXIS))
        .bold_line_style(pen.line(crate::render::palette::GRID, 1.0))
        .light_line_style(TRANSPARENT)
        .axis_style(pen.line(crate::render::palette::INK, 1.0))
        .set_all_tick_mark_size(pen.px(4.0))
}
