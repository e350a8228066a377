//! Regular against selective training from the open checkpoint, side by side, with live
//! clean and adversarial test accuracy per epoch.

use egui_plot::{Corner, Line, PlotPoints, Points};

use super::widgets::plot::{Axis, FigurePlot, legend};
use super::widgets::{empty_note, export_button, job_button};
use crate::engine::analysis::selective::Selection;
use crate::engine::train::EpochLog;
use crate::jobs::JobKind;
use crate::ui::actions::{Action, FigureId};
use crate::ui::app::ExplorerApp;
use crate::ui::theme;

pub fn show(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    ui.horizontal_wrapped(|ui| {
        super::widgets::number(ui, egui::DragValue::new(&mut app.settings.train_epochs).range(1..=100), "Epochs");
        super::widgets::number(
            ui,
            egui::DragValue::new(&mut app.settings.train_images).range(100..=60_000).speed(100),
            "Training images",
        );
        ui.radio_value(&mut app.settings.selection, Selection::PerWeight, "Freeze fragile weights");
        ui.radio_value(&mut app.settings.selection, Selection::PerLayer, "Freeze fragile layers");
        job_button(ui, app, JobKind::Training, "Train both", Action::Train);
        export_button(ui, app, FigureId::Training);
    });
    ui.weak("Both arms start from the open checkpoint with the same seed and data order; the selective arm re-characterises every epoch and trains only robust and antifragile weights");
    if app.session.regular.is_empty() && app.session.selective.is_empty() {
        empty_note(ui, "No training yet");
        return;
    }
    // Accuracies in percent.
    let series = |logs: &[EpochLog], adv: bool| -> Vec<[f64; 2]> {
        logs.iter()
            .filter_map(|l| {
                let a = if adv { l.test_adv_accuracy? } else { l.test_clean_accuracy? };
                Some([l.epoch as f64, 100.0 * a])
            })
            .collect()
    };
    // As the exported figure draws them: clean and adversarial in their colours, selective dashed.
    let mut lines = Vec::new();
    for (arm, logs, dashed) in [("regular", &app.session.regular, false), ("selective", &app.session.selective, true)] {
        for adv in [false, true] {
            let name = format!("{arm}, {} accuracy", if adv { "adversarial" } else { "clean" });
            lines.push((name, series(logs, adv), if adv { theme::ADVERSARIAL } else { theme::CLEAN }, dashed));
        }
    }
    let figure = FigurePlot::new("training", Axis::new("epoch").integers(), Axis::new("test accuracy (%)"));
    // Accuracies near 100 % at the top: the legend goes in the empty bottom corner.
    let plot = figure.plot().include_y(0.0).include_y(100.0).legend(legend(Corner::RightBottom));
    figure.show(ui, plot, move |plot| {
        for (name, pts, colour, dashed) in lines {
            let mut line = Line::new(name.clone(), PlotPoints::from(pts.clone())).color(colour).width(2.0);
            if dashed {
                line = line.style(egui_plot::LineStyle::dashed_loose());
            }
            plot.line(line);
            plot.points(Points::new(name, PlotPoints::from(pts)).color(colour).radius(3.0));
        }
    });
}
