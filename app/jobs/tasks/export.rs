//! Writing figures (PNG, SVG, CSV, JSON) off the UI thread.

use std::path::Path;

use anyhow::{Context, Result};

use crate::engine::progress::Ctrl;
use crate::export::figures;
use crate::jobs::command::{ExportItem, Payload};

pub fn export(dir: &Path, items: Vec<ExportItem>, ctrl: Ctrl) -> Result<Payload> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    ctrl.progress.start("writing figures", items.len());
    let mut written = Vec::new();
    for item in items {
        ctrl.check()?;
        let (figure, table) = (item.build)().with_context(|| format!("drawing {}", item.stem))?;
        let paths = figures::export(&figure, table, &item.config, dir, &item.stem)
            .with_context(|| format!("exporting {}", item.stem))?;
        written.extend(paths);
        ctrl.progress.advance(1);
    }
    Ok(Payload::Exported(written))
}
