//! The panels, one per file. Each reads the app's state and pushes actions; none runs
//! compute or touches the model.

mod card_dialog;
mod compare;
mod controls;
pub mod curves;
mod dropout;
pub mod file_browser;
mod jobs;
mod landscape;
mod layer_graph;
pub mod mask_view;
mod model_panel;
mod perturbation;
mod scores;
mod status_bar;
mod top_bar;
mod training;
pub mod widgets;

use super::actions::FigureId;
use super::app::ExplorerApp;
use super::settings::Tab;

/// Per-panel UI state that is not a setting (zoom, textures).
#[derive(Default)]
pub struct Panels {
    pub mask: mask_view::MaskView,
    pub perturbation: perturbation::PerturbationView,
    pub curves: curves::CurvesView,
    /// The built-in file browser, while it is shown (no native dialog on this desktop).
    pub browser: Option<file_browser::FileBrowser>,
    /// Why the built-in browser is used has been said in the status line.
    pub browser_explained: bool,
}

impl Panels {
    pub fn show(&mut self, ui: &mut egui::Ui, app: &mut ExplorerApp) {
        // The browser first: its keys (arrows, Enter, Backspace, Escape) are taken before
        // any widget behind it sees them.
        if let Some(browser) = &mut self.browser
            && !browser.show(ui.ctx())
        {
            self.browser = None;
        }
        top_bar::shortcuts(ui.ctx(), app, self.figure(app.settings.layout.tab));
        egui::Panel::top("top_bar").show(ui, |ui| top_bar::show(ui, app));
        egui::Panel::bottom("status_bar").show(ui, |ui| status_bar::show(ui, app));
        if app.settings.layout.model_panel {
            egui::Panel::left("model_panel")
                .resizable(true)
                .default_size(330.0)
                .show(ui, |ui| model_panel::show(ui, app));
        }
        if app.settings.layout.controls_panel {
            egui::Panel::right("controls_panel").resizable(true).default_size(290.0).show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    controls::show(ui, app);
                    ui.separator();
                    jobs::show(ui, app);
                });
            });
        }
        egui::CentralPanel::default().show(ui, |ui| {
            // Wrapped, so that every view's tab stays reachable in a narrow window.
            ui.horizontal_wrapped(|ui| {
                for tab in Tab::ALL {
                    let selected = app.settings.layout.tab == tab;
                    if ui.selectable_label(selected, tab.label()).clicked() && !selected {
                        app.settings.layout.tab = tab;
                        app.tab_opened(tab);
                    }
                }
            });
            ui.separator();
            match app.settings.layout.tab {
                Tab::Mask => self.mask.ui(ui, app),
                Tab::Perturbation => self.perturbation.ui(ui, app),
                Tab::Curves => self.curves.ui(ui, app),
                Tab::Scores => scores::show(ui, app),
                Tab::Dropout => dropout::show(ui, app),
                Tab::Landscape => landscape::show(ui, app),
                Tab::Training => training::show(ui, app),
                Tab::Compare => compare::show(ui, app),
            }
        });
        card_dialog::show(ui.ctx(), app);
    }

    /// The figure the current view exports (Ctrl+E).
    fn figure(&self, tab: Tab) -> FigureId {
        match tab {
            Tab::Mask => FigureId::Mask,
            Tab::Perturbation => FigureId::Perturbation,
            Tab::Curves => match self.curves.curve {
                curves::Curve::Threshold => FigureId::Sweep,
                curves::Curve::Eps => FigureId::Eps,
                curves::Curve::Compression => FigureId::Compression,
            },
            Tab::Scores => FigureId::Scores,
            Tab::Dropout => FigureId::Dropout,
            Tab::Landscape => FigureId::Landscape,
            Tab::Training => FigureId::Training,
            Tab::Compare => FigureId::Compare,
        }
    }
}
