//! Small pieces shared by panels: buttons, notes, and the axes, colorbars and legends that make
//! every plot and map read like a figure.

pub mod map;
pub mod plot;

use crate::jobs::JobKind;
use crate::ui::actions::{Action, FigureId};
use crate::ui::app::ExplorerApp;

/// "Export figure…" for one plot or view.
pub fn export_button(ui: &mut egui::Ui, app: &mut ExplorerApp, id: FigureId) {
    if ui.button("Export figure…").on_hover_text("PNG (2x), SVG, CSV data and JSON config").clicked() {
        app.push(Action::Export(id));
    }
}

/// A button that starts a job, or a note that it runs with a Cancel button.
pub fn job_button(ui: &mut egui::Ui, app: &mut ExplorerApp, kind: JobKind, label: &str, action: Action) {
    if app.jobs.is_running(kind) {
        ui.add(egui::Spinner::new());
        if ui.button("Cancel").clicked() {
            app.push(Action::Cancel(kind));
        }
    } else if ui.button(label).clicked() {
        app.push(action);
    }
}

pub fn percent(v: f64) -> String {
    format!("{:.1} %", 100.0 * v)
}

/// A short note in the weak text colour for empty views.
pub fn empty_note(ui: &mut egui::Ui, text: &str) {
    ui.add_space(20.0);
    ui.vertical_centered(|ui| ui.weak(text));
}

/// A number field with its label on the right, linked for screen readers and tests.
pub fn number(ui: &mut egui::Ui, field: egui::DragValue, label: &str) -> egui::Response {
    let r = ui.add(field);
    let l = ui.label(label);
    r.labelled_by(l.id)
}
