//! Running jobs: stage, progress, ETA and Cancel.

use crate::ui::actions::Action;
use crate::ui::app::ExplorerApp;

pub fn show(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    ui.heading("Jobs");
    let running: Vec<_> = app.jobs.running().map(|(k, s)| (k, s.clone())).collect();
    if running.is_empty() {
        ui.weak("Nothing running");
        return;
    }
    for (kind, s) in running {
        ui.horizontal(|ui| {
            ui.label(kind.label());
            if ui.small_button("Cancel").clicked() {
                app.push(Action::Cancel(kind));
            }
        });
        let eta = s.eta_s.map_or(String::new(), |e| format!(", {} left", duration(e)));
        let text = if s.total > 0 { format!("{} {}/{}{eta}", s.stage, s.done, s.total) } else { s.stage.clone() };
        let bar = match s.fraction() {
            Some(f) => egui::ProgressBar::new(f),
            None => egui::ProgressBar::new(0.0).animate(true),
        };
        ui.add(bar.text(text));
        if s.stop.is_stopped() {
            ui.weak("Stopping after this batch");
        }
    }
}

fn duration(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 60 { format!("{}m {:02}s", s / 60, s % 60) } else { format!("{s}s") }
}
