//! The learning landscape: local sweeps on every checkpoint of a training run, drawn as
//! step-by-epoch maps for the current layer and filter.

use egui::{Color32, Pos2, Rect, Sense, Vec2};

use super::model_panel::class_index;
use super::widgets::{empty_note, export_button, job_button};
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
    let epochs: Vec<String> = r.checkpoints.iter().map(|c| c.epoch.to_string()).collect();
    let maps: [(&str, MapCells); 4] = [
        ("Clean accuracy", MapCells::Value(&m.clean_accuracy)),
        ("Adversarial accuracy", MapCells::Value(&m.adv_accuracy)),
        ("Class (clean)", MapCells::Class(&m.class_clean)),
        ("Class (adversarial)", MapCells::Class(&m.class_adv)),
    ];
    ui.weak("Rows are checkpoints (first epoch at the bottom), columns the sweep's thresholds; accuracy from dark (0 %) to bright (100 %)");
    let size = Vec2::new(
        ((ui.available_width() - 16.0) / 2.0).max(80.0),
        ((ui.available_height() - 60.0) / 2.0 - 20.0).max(40.0),
    );
    let mut maps = maps.into_iter();
    for _ in 0..2 {
        ui.horizontal(|ui| {
            for (title, cells) in maps.by_ref().take(2) {
                ui.allocate_ui(Vec2::new(size.x, size.y + 24.0), |ui| {
                    ui.vertical(|ui| {
                        ui.strong(format!("{title}, {layer} {}", filter.name()));
                        draw_map(ui, &cells, &epochs, size);
                    });
                });
            }
        });
    }
}

enum MapCells<'a> {
    Value(&'a Vec<Vec<f64>>),
    Class(&'a Vec<Vec<crate::engine::analysis::scores::Class>>),
}

fn draw_map(ui: &mut egui::Ui, cells: &MapCells, epochs: &[String], size: Vec2) {
    let (rect, response) = ui.allocate_exact_size(size, Sense::hover());
    let rows = match cells {
        MapCells::Value(v) => v.len(),
        MapCells::Class(v) => v.len(),
    };
    let cols = match cells {
        MapCells::Value(v) => v.first().map_or(0, Vec::len),
        MapCells::Class(v) => v.first().map_or(0, Vec::len),
    };
    if rows == 0 || cols == 0 {
        return;
    }
    let cw = rect.width() / cols as f32;
    let ch = rect.height() / rows as f32;
    let p = ui.painter_at(rect);
    for r in 0..rows {
        for c in 0..cols {
            let colour = match cells {
                MapCells::Value(v) => {
                    let [a, b, d] = Colormap::Viridis.at(v[r][c] as f32);
                    Color32::from_rgb(a, b, d)
                }
                MapCells::Class(v) => theme::class_colour(class_index(v[r][c])),
            };
            // Epoch 0 at the bottom, as in the papers' maps.
            let y = rect.bottom() - (r + 1) as f32 * ch;
            p.rect_filled(
                Rect::from_min_size(Pos2::new(rect.left() + c as f32 * cw, y), Vec2::new(cw + 0.5, ch + 0.5)),
                0.0,
                colour,
            );
        }
    }
    if let Some(pos) = response.hover_pos() {
        let c = ((pos.x - rect.left()) / cw) as usize;
        let r = ((rect.bottom() - pos.y) / ch) as usize;
        if r < rows && c < cols {
            let value = match cells {
                MapCells::Value(v) => format!("{:.1} %", 100.0 * v[r][c]),
                MapCells::Class(v) => v[r][c].name().to_string(),
            };
            let epoch = epochs.get(r).cloned().unwrap_or_default();
            response.on_hover_text_at_pointer(format!("epoch {epoch}, step {c}: {value}"));
        }
    }
}
