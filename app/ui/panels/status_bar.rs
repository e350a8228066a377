//! The status line: the latest messages (errors stay until dismissed) and the frame time.

use crate::ui::app::ExplorerApp;
use crate::ui::theme;

/// Notes fade out after this long; errors stay until dismissed.
const NOTE_SECONDS: f32 = 12.0;

pub fn show(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    app.session.messages.retain(|m| m.error || m.at.elapsed().as_secs_f32() < NOTE_SECONDS);
    let mut dismiss = None;
    for (i, m) in app.session.messages.iter().enumerate() {
        ui.horizontal(|ui| {
            let colour = if m.error { theme::ERROR } else { theme::NOTE };
            ui.colored_label(colour, if m.error { "Error" } else { "Note" });
            ui.add(egui::Label::new(&m.text).wrap());
            if ui.small_button("Dismiss").clicked() {
                dismiss = Some(i);
            }
        });
    }
    if let Some(i) = dismiss {
        app.session.messages.remove(i);
    }
    ui.horizontal(|ui| {
        let model = app.session.model.as_ref().map_or("no model".to_string(), |m| m.name.clone());
        let data = app.session.data.as_ref().map_or("no data".to_string(), |d| d.name.clone());
        ui.weak(format!("{model}  ·  {data}"));
        // Shown while jobs run, to see that the UI keeps its pace.
        if app.jobs.any_running() {
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                ui.weak(format!("frame {:.1} ms", app.session.frame_ms));
            });
        }
    });
    if app.session.messages.iter().any(|m| !m.error) {
        ui.ctx().request_repaint_after(std::time::Duration::from_secs(1));
    }
}
