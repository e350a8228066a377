//! Writing a figure: image files, its data and its config, each file atomically.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Figure, render_png, render_svg};
use crate::engine::fsutil::write_atomic;
use crate::export::tables::Table;

/// Writes `stem.png` (2x), `stem.svg`, `stem.csv` (the plotted data) and `stem.json`
/// (the config that produced it) into `dir`, each atomically; returns the paths written.
///
/// Both images are rendered before anything is written, so a figure that cannot be drawn
/// leaves the folder as it was; each file is replaced whole or not at all.
pub fn export(
    figure: &Figure,
    data: Table,
    config: &serde_json::Value,
    dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>> {
    check_stem(stem)?;
    if !dir.is_dir() {
        bail!("cannot write the figure `{stem}`: the folder does not exist: {}", dir.display());
    }
    let png = render_png(figure).with_context(|| format!("drawing the PNG of `{}`", figure.title()))?;
    let svg = render_svg(figure).with_context(|| format!("drawing the SVG of `{}`", figure.title()))?;
    let json = serde_json::to_string_pretty(config).context("serialising the figure's config")?;

    let path = |ext: &str| dir.join(format!("{stem}.{ext}"));
    let (png_path, svg_path, csv_path, json_path) = (path("png"), path("svg"), path("csv"), path("json"));
    data.write(&csv_path)?;
    write_atomic(&json_path, json.as_bytes())?;
    write_atomic(&svg_path, svg.as_bytes())?;
    write_atomic(&png_path, &png)?;
    Ok(vec![png_path, svg_path, csv_path, json_path])
}

/// A stem names files inside the folder: no separators, nothing hidden or relative.
fn check_stem(stem: &str) -> Result<()> {
    let bad = stem.is_empty() || stem.starts_with('.') || stem.contains(['/', '\\', '\0']);
    if bad {
        bail!("`{stem}` cannot name a figure's files: use letters, digits, `-`, `_` and `.` without a leading `.`");
    }
    Ok(())
}
