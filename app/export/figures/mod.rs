//! Figures as data: every plot and view of the app is described by a [`Figure`], which the
//! GUI draws live and the exporters render off-screen to PNG (2x) and SVG, with the
//! plotted data as CSV and the config as JSON beside it.
//!
//! `builders` turns engine results into figures with their data tables; `export` renders and
//! writes the four files. Their colours are the app's, from `render::palette`.

pub mod builders;
mod draw;
mod export;

pub use draw::{PNG_SCALE, render_png, render_svg, ticks};
pub use export::export;

use crate::render::colormap::Colormap;

/// One line of a line plot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    pub name: String,
    pub points: Vec<[f64; 2]>,
    /// Index into `render::palette::SERIES`.
    pub colour: usize,
    pub dashed: bool,
    /// Draw a marker at every point.
    pub markers: bool,
}

/// A vertical marker line (the current threshold, ...).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Optional second y axis on the right: its label and series.
    pub y2: Option<(String, Vec<Series>)>,
    /// Fixed range of the second y axis; None fits its series.
    pub y2_range: Option<[f64; 2]>,
    pub markers: Vec<Marker>,
    /// Horizontal reference lines on the first y axis (a baseline, ...): value and label.
    pub hlines: Vec<(f64, String)>,
    /// Fixed axis ranges; None fits the data.
    pub x_range: Option<[f64; 2]>,
    pub y_range: Option<[f64; 2]>,
    /// The x axis counts whole units (epochs): ticks on whole numbers only.
    pub x_whole: bool,
}

/// Grouped bars: one group per category, one bar per series.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BarPlot {
    pub title: String,
    pub categories: Vec<String>,
    /// What the categories are (layer, kernel, ...).
    pub x_label: String,
    pub y_label: String,
    /// (series name, one value per category, palette colour).
    pub series: Vec<(String, Vec<f64>, usize)>,
    /// Horizontal reference lines (a mean, zero, ...).
    pub hlines: Vec<(f64, String)>,
    /// Fixed y range (to show small differences between bars); None fits the data and zero.
    pub y_range: Option<[f64; 2]>,
    /// Per category, an optional class colour (fragile / robust / antifragile) for the label.
    /// `Class::index` (into `render::palette::CLASS_COLOURS`); the classes used are named in the legend.
    pub category_class: Vec<Option<usize>>,
    /// Per category, an optional colour for all its bars instead of the series colour
    /// (fragile kernels, ...); empty means none.
    pub bar_colours: Vec<Option<[u8; 3]>>,
    /// Legend entries besides the series (what `bar_colours` mean): name and colour.
    pub legend_extra: Vec<(String, [u8; 3])>,
}

/// A matrix of values (weights, a landscape map) painted with a colormap or with
/// categorical colours, with a colorbar or legend.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Heatmap {
    pub title: String,
    pub rows: usize,
    pub cols: usize,
    /// Row-major, `rows * cols` values. NaN cells are left empty (the gaps between tiled
    /// kernels).
    pub values: Vec<f32>,
    pub range: [f32; 2],
    pub colormap: Colormap,
    /// Categorical maps: value i is painted with colour i and named in the legend.
    pub categories: Option<Vec<(String, [u8; 3])>>,
    pub x_label: String,
    pub y_label: String,
    pub colorbar_label: String,
    /// Cells to shade (e.g. removed weights), row-major; empty means none. Shaded cells are
    /// dimmed, and hatched where they are large enough.
    pub shaded: Vec<bool>,
    /// Legend entry of the shaded cells ("removed by h1", ...); empty gives "shaded".
    pub shaded_label: String,
    /// Tick labels of the rows and columns (epochs, thresholds); empty means indices. A row or
    /// column whose label is "" gets no tick.
    pub row_labels: Vec<String>,
    pub col_labels: Vec<String>,
    /// Row 0 at the bottom (a y axis that grows upwards, like epochs); else at the top, as in a
    /// matrix.
    pub row0_at_bottom: bool,
    /// Square cells (kernels, images); else the cells stretch to fill the plot.
    pub equal_aspect: bool,
}

/// A grid of small images with captions (the perturbation view).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImageGrid {
    pub title: String,
    pub columns: usize,
    pub images: Vec<GridImage>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GridImage {
    pub width: usize,
    pub height: usize,
    /// RGB, row-major.
    pub rgb: Vec<u8>,
    /// One or more lines (separated by `\n`) under the image.
    pub caption: String,
    /// Drawn with a highlighted frame (a flipped prediction).
    pub highlight: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Figure {
    Line(LinePlot),
    Bar(BarPlot),
    Heatmap(Heatmap),
    Grid(ImageGrid),
}

/// "fragile" -> "Fragile": legend entries and labels are in sentence case.
pub(crate) fn sentence_case(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
}

/// The most a figure draws: far above what any analysis writes (a 10,001-step sweep has about
/// 60,000 points, a landscape of 100 epochs 1,000,000 cells), low enough that a crafted results
/// file cannot keep the renderer busy for hours.
pub const MAX_LINE_POINTS: usize = 500_000;
pub const MAX_BARS: usize = 100_000;
pub const MAX_CELLS: usize = 4_000_000;
pub const MAX_GRID_IMAGES: usize = 1_000;
pub const MAX_GRID_IMAGE_SIDE: usize = 1_024;

impl Figure {
    /// Refuses a figure too large to draw in reasonable time, or whose data disagree with
    /// its declared size, saying which bound it passed.
    pub fn check_size(&self) -> anyhow::Result<()> {
        let over = |what: &str, n: usize, max: usize| {
            anyhow::anyhow!("`{}` has {n} {what}; a figure draws at most {max}", self.title())
        };
        match self {
            Figure::Line(p) => {
                let y2 = p.y2.iter().flat_map(|(_, s)| s);
                let n: usize = p.series.iter().chain(y2).map(|s| s.points.len()).sum();
                if n > MAX_LINE_POINTS {
                    return Err(over("points", n, MAX_LINE_POINTS));
                }
            }
            Figure::Bar(p) => {
                let n = p.categories.len().saturating_mul(p.series.len().max(1));
                if n > MAX_BARS {
                    return Err(over("bars", n, MAX_BARS));
                }
            }
            Figure::Heatmap(h) => {
                let n = h.rows.saturating_mul(h.cols);
                if n > MAX_CELLS {
                    return Err(over("cells", n, MAX_CELLS));
                }
                if h.values.len() != n {
                    anyhow::bail!("`{}` has {} values for {} x {} cells", self.title(), h.values.len(), h.rows, h.cols);
                }
            }
            Figure::Grid(g) => {
                if g.images.len() > MAX_GRID_IMAGES {
                    return Err(over("images", g.images.len(), MAX_GRID_IMAGES));
                }
                for (i, im) in g.images.iter().enumerate() {
                    if im.width.max(im.height) > MAX_GRID_IMAGE_SIDE {
                        anyhow::bail!(
                            "`{}`: image {i} is {} x {} pixels; a figure draws images of at most {MAX_GRID_IMAGE_SIDE} a side",
                            self.title(),
                            im.width,
                            im.height
                        );
                    }
                    if im.rgb.len() != im.width * im.height * 3 {
                        anyhow::bail!(
                            "`{}`: image {i} has {} bytes for {} x {} RGB pixels",
                            self.title(),
                            im.rgb.len(),
                            im.width,
                            im.height
                        );
                    }
                }
            }
        }
        Ok(())
    }

    pub fn title(&self) -> &str {
        match self {
            Figure::Line(p) => &p.title,
            Figure::Bar(p) => &p.title,
            Figure::Heatmap(h) => &h.title,
            Figure::Grid(g) => &g.title,
        }
    }

    pub fn title_mut(&mut self) -> &mut String {
        match self {
            Figure::Line(p) => &mut p.title,
            Figure::Bar(p) => &mut p.title,
            Figure::Heatmap(h) => &mut h.title,
            Figure::Grid(g) => &mut g.title,
        }
    }

    /// Size in logical pixels: the SVG's size; the PNG has `PNG_SCALE` times as many pixels
    /// each way. Fixed per kind, except an image grid, which grows with its rows.
    pub fn logical_size(&self) -> (u32, u32) {
        match self {
            Figure::Line(_) | Figure::Bar(_) => (800, 500),
            Figure::Heatmap(_) => (800, 600),
            Figure::Grid(g) => draw::grid_size(g),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_too_large_or_inconsistent_are_refused_before_drawing() {
        let map = |rows: usize, cols: usize, n: usize| {
            Figure::Heatmap(Heatmap { title: "map".into(), rows, cols, values: vec![0.5; n], ..Heatmap::default() })
        };
        assert!(map(10, 10, 100).check_size().is_ok());
        let e = render_png(&map(2_001, 2_000, 0)).unwrap_err().to_string();
        assert!(e.contains("4002000 cells") && e.contains("at most 4000000"), "{e}");
        let e = render_svg(&map(10, 10, 99)).unwrap_err().to_string();
        assert!(e.contains("99 values for 10 x 10"), "{e}");
        let line = Figure::Line(LinePlot {
            title: "curves".into(),
            series: vec![Series { points: vec![[0.0, 0.0]; MAX_LINE_POINTS + 1], ..Series::default() }],
            ..LinePlot::default()
        });
        assert!(render_png(&line).unwrap_err().to_string().contains("500001 points"));
        let grid = |side: usize, bytes: usize| {
            Figure::Grid(ImageGrid {
                title: "grid".into(),
                columns: 1,
                images: vec![GridImage { width: side, height: side, rgb: vec![0; bytes], ..GridImage::default() }],
            })
        };
        assert!(render_png(&grid(2_000, 12_000_000)).unwrap_err().to_string().contains("at most 1024 a side"));
        assert!(render_png(&grid(4, 47)).unwrap_err().to_string().contains("47 bytes for 4 x 4"));
    }
}
