//! The learning landscape: local sweeps on every checkpoint of a training run, drawn as
//! step-by-epoch maps for the current layer and filter, each with its axes and a colorbar
//! (accuracy) or a class legend.

use egui::{Color32, Id, Pos2, Rect, Sense, Vec2};

use super::widgets::map::{self, MapAxis};
use super::widgets::plot::Axis;
use super::widgets::{empty_note, export_button, job_button};
use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::landscape::LandscapeResult;
use crate::engine::analysis::scores::Class;
use crate::jobs::JobKind;
use crate::render::colormap::Colormap;
use crate::ui::actions::{Action, FigureId};
use crate::ui::app::ExplorerApp;
use crate::ui::theme;

pub fn show(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    let checkpoints = app.session.model.as_ref().map_or(0, |m| m.checkpoints.len());
    if checkpoints == 0 {
        empty_note(
            ui,
            "Open a folder of checkpoints (Open checkpoint…, then choose the folder) to map the learning landscape",
        );
        return;
    }
    ui.horizontal(|ui| {
        ui.label(format!("{checkpoints} checkpoints"));
        job_button(ui, app, JobKind::Landscape, "Run landscape", Action::Landscape);
        export_button(ui, app, FigureId::Landscape);
    });
    if app.jobs.is_running(JobKind::Landscape) {
        ui.weak(format!("{} steps done", app.session.landscape_steps));
    }
    let Some(r) = &app.session.landscape else { return };
    let layer = app.settings.layer.clone().unwrap_or_default();
    let filter = app.settings.filter;
    let Some(m) = r.maps.iter().find(|m| m.layer == layer && m.filter == filter) else {
        empty_note(ui, "No map for this layer and filter (the landscape runs h1, h2 and h3)");
        return;
    };
    let maps: [(&str, MapCells); 4] = [
        ("Clean accuracy", MapCells::Value(&m.clean_accuracy)),
        ("Adversarial accuracy", MapCells::Value(&m.adv_accuracy)),
        ("Class (clean)", MapCells::Class(&m.class_clean)),
        ("Class (adversarial)", MapCells::Class(&m.class_adv)),
    ];
    ui.weak("One local sweep per checkpoint, over the layer's range at that epoch; hover a cell for its threshold a");
    let title_h = ui.text_style_height(&egui::TextStyle::Body) + ui.spacing().item_spacing.y;
    // One band width for all four maps, so they line up: a colorbar or the class legend.
    let classes: Vec<&str> = map::class_entries().iter().map(|e| e.1).collect();
    let band = map::colorbar_width(ui, [0.0, 100.0]).max(map::legend_width(ui, "class", &classes));
    let size = Vec2::new(
        ((ui.available_width() - ui.spacing().item_spacing.x) / 2.0).max(map::LEFT + band + 80.0),
        ((ui.available_height() - ui.spacing().item_spacing.y) / 2.0 - title_h).max(map::BOTTOM + 60.0),
    );
    let source = Source { result: r, layer: &layer, filter };
    let mut maps = maps.into_iter();
    for row in 0..2 {
        ui.horizontal(|ui| {
            for (col, (title, cells)) in maps.by_ref().take(2).enumerate() {
                ui.allocate_ui(Vec2::new(size.x, size.y + title_h), |ui| {
                    ui.vertical(|ui| {
                        ui.strong(format!("{title}, {layer} {}", filter.name()));
                        let what = title.to_lowercase();
                        draw_map(
                            ui,
                            ui.make_persistent_id(("landscape", row, col)),
                            &cells,
                            &what,
                            &source,
                            size,
                            band,
                        );
                    });
                });
            }
        });
    }
}

enum MapCells<'a> {
    Value(&'a Vec<Vec<f64>>),
    Class(&'a Vec<Vec<Class>>),
}

impl MapCells<'_> {
    fn rows(&self) -> usize {
        match self {
            MapCells::Value(v) => v.len(),
            MapCells::Class(v) => v.len(),
        }
    }

    fn cols(&self) -> usize {
        match self {
            MapCells::Value(v) => v.iter().map(Vec::len).max().unwrap_or(0),
            MapCells::Class(v) => v.iter().map(Vec::len).max().unwrap_or(0),
        }
    }

    /// The cell's colour and its value in words; None where a cancelled run left no value.
    fn cell(&self, r: usize, c: usize) -> Option<(Color32, String)> {
        match self {
            MapCells::Value(v) => {
                let a = *v.get(r)?.get(c)?;
                Some((theme::rgb(Colormap::Viridis.at(a as f32)), format!("{:.1} %", 100.0 * a)))
            }
            MapCells::Class(v) => {
                let k = *v.get(r)?.get(c)?;
                Some((theme::class(k), k.name().to_string()))
            }
        }
    }
}

/// Where the maps come from, for the axes and the tooltip.
struct Source<'a> {
    result: &'a LandscapeResult,
    layer: &'a str,
    filter: FilterKind,
}

impl Source<'_> {
    fn epoch(&self, row: usize) -> String {
        self.result.checkpoints.get(row).map_or_else(|| row.to_string(), |c| c.epoch.to_string())
    }

    /// The threshold of step `step` in the sweep of checkpoint `row`.
    fn alpha(&self, row: usize, step: usize) -> Option<f64> {
        self.result.sweeps.get(row)?.record(self.layer, self.filter)?.alphas.get(step).copied()
    }
}

/// One map: threshold steps across, epochs upwards (first epoch at the bottom, as in the
/// papers' maps), with its axes and, on the right, a colorbar or the class legend.
fn draw_map(ui: &mut egui::Ui, id: Id, cells: &MapCells, what: &str, source: &Source, size: Vec2, band: f32) {
    let (outer, response) = ui.allocate_exact_size(size, Sense::hover());
    let rect = Rect::from_min_max(outer.min + Vec2::new(map::LEFT, 4.0), outer.max - Vec2::new(band, map::BOTTOM));
    let band = Rect::from_min_max(Pos2::new(rect.right(), rect.top()), Pos2::new(outer.right(), rect.bottom()));
    let (rows, cols) = (cells.rows(), cells.cols());
    if rows == 0 || cols == 0 {
        return;
    }
    let cw = rect.width() / cols as f32;
    let ch = rect.height() / rows as f32;
    let p = ui.painter_at(rect);
    for r in 0..rows {
        for c in 0..cols {
            let Some((colour, _)) = cells.cell(r, c) else { continue };
            let y = rect.bottom() - (r + 1) as f32 * ch;
            p.rect_filled(
                Rect::from_min_size(Pos2::new(rect.left() + c as f32 * cw, y), Vec2::new(cw + 0.5, ch + 0.5)),
                0.0,
                colour,
            );
        }
    }
    let epochs: Vec<String> = (0..rows).map(|r| source.epoch(r)).collect();
    let x = MapAxis::new(&Axis::new("threshold step i").integers(), -0.5, cols as f64 - 0.5, rect.width(), |v| {
        rect.left() + (v as f32 + 0.5) * cw
    });
    let y = MapAxis::vertical(&Axis::new("epoch").categories(epochs), -0.5, rows as f64 - 0.5, rect.height(), |v| {
        rect.bottom() - (v as f32 + 0.5) * ch
    });
    map::axes(ui, id, rect, &x, &y);
    match cells {
        MapCells::Value(_) => {
            map::colorbar(ui, id.with("colorbar"), band, Colormap::Viridis, [0.0, 100.0], &format!("{what} (%)"))
        }
        MapCells::Class(_) => map::legend(ui, id.with("legend"), band, "class", &map::class_entries()),
    }
    if let Some(pos) = response.hover_pos().filter(|p| rect.contains(*p)) {
        let c = ((pos.x - rect.left()) / cw) as usize;
        let r = ((rect.bottom() - pos.y) / ch) as usize;
        if let Some((_, value)) = cells.cell(r, c) {
            let alpha = source.alpha(r, c).map_or(String::new(), |a| format!(", a = {a:.4}"));
            response.on_hover_text_at_pointer(format!("epoch {}, step {c}{alpha}: {value}", source.epoch(r)));
        }
    }
}
