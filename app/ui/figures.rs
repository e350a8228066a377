//! Figures for "Export figure…": each view as a `Figure` with its data and config.

use super::actions::FigureId;
use super::app::ExplorerApp;
use crate::jobs::command::ExportItem;

/// The figure of a view with its data table and config, or None when the view is empty.
pub fn build(id: FigureId, app: &ExplorerApp) -> Option<ExportItem> {
    let _ = (id, app);
    None
}
