//! Figures as data: every plot and view of the app is described by a [`Figure`], which the
//! GUI draws live and the exporters render off-screen to PNG (2x) and SVG, with the
//! plotted data as CSV and the config as JSON beside it.

use crate::render::colormap::Colormap;

/// One line of a line plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<[f64; 2]>,
    /// Index into the theme's series palette.
    pub colour: usize,
    pub dashed: bool,
    /// Draw a marker at every point.
    pub markers: bool,
}

/// A vertical marker line (the current threshold, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Optional second y axis on the right: its label and series.
    pub y2: Option<(String, Vec<Series>)>,
    pub markers: Vec<Marker>,
    /// Fixed axis ranges; None fits the data.
    pub x_range: Option<[f64; 2]>,
    pub y_range: Option<[f64; 2]>,
}

/// Grouped bars: one group per category, one bar per series.
#[derive(Debug, Clone, PartialEq)]
pub struct BarPlot {
    pub title: String,
    pub categories: Vec<String>,
    pub y_label: String,
    /// (series name, one value per category, palette colour).
    pub series: Vec<(String, Vec<f64>, usize)>,
    /// Horizontal reference lines (a mean, zero, ...).
    pub hlines: Vec<(f64, String)>,
    /// Per category, an optional class colour (fragile / robust / antifragile) for the label.
    pub category_class: Vec<Option<usize>>,
}

/// A matrix of values (weights, a landscape map) painted with a colormap or with
/// categorical colours, with a colorbar or legend.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    pub title: String,
    pub rows: usize,
    pub cols: usize,
    /// Row-major, `rows * cols` values.
    pub values: Vec<f32>,
    pub range: [f32; 2],
    pub colormap: Colormap,
    /// Categorical maps: value i is painted with colour i and named in the legend.
    pub categories: Option<Vec<(String, [u8; 3])>>,
    pub x_label: String,
    pub y_label: String,
    pub colorbar_label: String,
    /// Cells to shade (e.g. removed weights), row-major; empty means none.
    pub shaded: Vec<bool>,
}

/// A grid of small images with captions (the perturbation view).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageGrid {
    pub title: String,
    pub columns: usize,
    pub images: Vec<GridImage>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GridImage {
    pub width: usize,
    pub height: usize,
    /// RGB, row-major.
    pub rgb: Vec<u8>,
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

/// Writes `stem.png` (2x), `stem.svg`, `stem.csv` (the plotted data) and `stem.json`
/// (the config that produced it) into `dir`, each atomically; returns the paths written.
pub fn export(
    figure: &Figure,
    data: crate::export::tables::Table,
    config: &serde_json::Value,
    dir: &std::path::Path,
    stem: &str,
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let _ = (figure, data, config, dir, stem);
    anyhow::bail!("figure rendering is not implemented yet")
}
