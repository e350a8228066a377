//! The top bar: opening files, recent files, exporting everything, panel toggles.

use crate::ui::actions::Action;
use crate::ui::app::ExplorerApp;

pub fn show(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    ui.horizontal_wrapped(|ui| {
        ui.strong("Fragility explorer");
        ui.separator();
        if ui.button("Open checkpoint…").on_hover_text("A safetensors or PyTorch checkpoint").clicked() {
            app.push(Action::OpenModelDialog);
        }
        if ui.button("Open training run…").on_hover_text("A folder of checkpoints: the learning landscape").clicked()
        {
            app.push(Action::OpenModelFolderDialog);
        }
        if ui.button("Open dataset…").clicked() {
            app.push(Action::OpenDataDialog);
        }
        ui.menu_button("Recent", |ui| {
            if ui.button("Embedded default model and data").clicked() {
                app.push(Action::OpenEmbedded);
                ui.close();
            }
            ui.separator();
            ui.weak("Checkpoints");
            for p in app.settings.recent_models.clone() {
                if ui.button(p.display().to_string()).clicked() {
                    app.push(Action::OpenModel(p));
                    ui.close();
                }
            }
            ui.separator();
            ui.weak("Datasets");
            for p in app.settings.recent_data.clone() {
                if ui.button(p.display().to_string()).clicked() {
                    app.push(Action::OpenData(p));
                    ui.close();
                }
            }
        });
        ui.separator();
        if ui.button("Export all…").on_hover_text("Every figure of this session into one folder").clicked() {
            app.push(Action::ExportAll);
        }
        ui.separator();
        ui.toggle_value(&mut app.settings.layout.model_panel, "Model panel");
        ui.toggle_value(&mut app.settings.layout.controls_panel, "Controls");
    });
}
