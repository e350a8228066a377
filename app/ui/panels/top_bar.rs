//! The top bar: opening files, recent files, exporting everything, panel toggles; and the
//! desktop shortcuts for the same actions.

use egui::{Key, KeyboardShortcut, Modifiers};

use crate::ui::actions::{Action, FigureId};
use crate::ui::app::ExplorerApp;

/// Ctrl+O (Cmd+O on macOS): open a checkpoint.
pub const OPEN_MODEL: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::O);
/// Ctrl+Shift+O: open a dataset.
pub const OPEN_DATA: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND.plus(Modifiers::SHIFT), Key::O);
/// Ctrl+E: export the current view's figure.
pub const EXPORT_VIEW: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::E);

/// Acts on the shortcuts pressed this frame; `figure` is what the current view exports.
pub fn shortcuts(ctx: &egui::Context, app: &mut ExplorerApp, figure: FigureId) {
    // Ctrl+Shift+O first: Ctrl+O would match it too (extra Shift is ignored).
    let (data, model, export) = ctx.input_mut(|i| {
        (i.consume_shortcut(&OPEN_DATA), i.consume_shortcut(&OPEN_MODEL), i.consume_shortcut(&EXPORT_VIEW))
    });
    if data {
        app.push(Action::OpenDataDialog);
    }
    if model {
        app.push(Action::OpenModelDialog);
    }
    if export {
        app.push(Action::Export(figure));
    }
}

pub fn show(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    let keys = |s: &KeyboardShortcut| ui.ctx().format_shortcut(s);
    let (open_model, open_data, export_view) = (keys(&OPEN_MODEL), keys(&OPEN_DATA), keys(&EXPORT_VIEW));
    ui.horizontal_wrapped(|ui| {
        ui.strong("Fragility explorer");
        ui.separator();
        let hover = format!("A safetensors or PyTorch checkpoint ({open_model})");
        if ui.button("Open checkpoint…").on_hover_text(hover).clicked() {
            app.push(Action::OpenModelDialog);
        }
        if ui.button("Open training run…").on_hover_text("A folder of checkpoints: the learning landscape").clicked()
        {
            app.push(Action::OpenModelFolderDialog);
        }
        let hover = format!("A dataset folder or file ({open_data})");
        if ui.button("Open dataset…").on_hover_text(hover).clicked() {
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
        let hover = format!("Every figure of this session into one folder ({export_view} exports the current view's)");
        if ui.button("Export all…").on_hover_text(hover).clicked() {
            app.push(Action::ExportAll);
        }
        ui.separator();
        ui.toggle_value(&mut app.settings.layout.model_panel, "Model panel");
        ui.toggle_value(&mut app.settings.layout.controls_panel, "Controls");
    });
}
