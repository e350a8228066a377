//! Runs through training side by side (METHOD.md section 8, "Runs side by side"): trajectory
//! results added from files, drawn from the same figures `compare` exports.

use egui_plot::{Line, LineStyle, PlotPoints, Points};

use super::widgets::plot::{Axis, FigurePlot};
use super::widgets::{empty_note, export_button};
use crate::export::figures::builders::Score;
use crate::export::figures::{Figure, LinePlot};
use crate::jobs::JobKind;
use crate::render::palette;
use crate::ui::actions::{Action, FigureId};
use crate::ui::app::ExplorerApp;
use crate::ui::figures::compare_figures;
use crate::ui::settings::ComparePlot;
use crate::ui::theme;

pub fn show(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    ui.horizontal_wrapped(|ui| {
        let busy = app.jobs.is_running(JobKind::Compare);
        if ui
            .add_enabled(!busy, egui::Button::new("Add run…"))
            .on_hover_text(
                "A trajectory.json written by `fragility-explorer trajectory`, or a study's study.json for all its runs (or drop one on the window)",
            )
            .clicked()
        {
            app.push(Action::AddRunDialog);
        }
        egui::ComboBox::from_id_salt("compare_plot").selected_text(app.settings.compare_plot.label()).show_ui(
            ui,
            |ui| {
                for p in ComparePlot::ALL {
                    ui.selectable_value(&mut app.settings.compare_plot, p, p.label());
                }
            },
        );
        if app.settings.compare_plot.has_score() {
            for s in [Score::Clean, Score::Adv, Score::Diff] {
                ui.radio_value(&mut app.settings.compare_score, s, s.symbol());
            }
        }
        export_button(ui, app, FigureId::Compare);
    });
    if app.session.runs.is_empty() {
        empty_note(
            ui,
            "No runs to compare yet: Add run… opens a trajectory.json (fragility-explorer trajectory --checkpoints DIR --out OUT writes one) or a study.json (fragility-explorer study FILE --out OUT)",
        );
        return;
    }
    let mut remove = None;
    for (i, run) in app.session.runs.iter().enumerate() {
        ui.horizontal_wrapped(|ui| {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
            ui.painter().rect_filled(rect, 2.0, theme::rgb(palette::series(i)));
            let r = &run.result;
            ui.label(format!("Run {}: {}", i + 1, r.run.label())).on_hover_text(run.path.display().to_string());
            ui.weak(format!("epochs {:?}, {} parameters", r.epochs, crate::export::format::group(r.run.parameters)));
            if ui.small_button("Remove").on_hover_text("Remove this run from the comparison").clicked() {
                remove = Some(i);
            }
        });
    }
    if let Some(i) = remove {
        app.push(Action::RemoveRun(i));
    }
    ui.separator();
    let runs: Vec<_> = app.session.runs.iter().map(|r| r.result.clone()).collect();
    let figures = compare_figures(&runs, app.settings.compare_plot, app.settings.compare_score);
    let columns = figures.len().max(1);
    ui.columns(columns, |cols| {
        for (col, (stem, built)) in cols.iter_mut().zip(&figures) {
            match built {
                Ok((Figure::Line(plot), _)) => draw(col, stem, plot),
                Ok(_) => {}
                Err(e) => {
                    col.colored_label(theme::ERROR, format!("{e:#}"));
                }
            }
        }
    });
}

/// A line plot of the figure description, as the exported figure draws it.
fn draw(ui: &mut egui::Ui, id: &str, p: &LinePlot) {
    ui.strong(&p.title);
    let integers = p.x_label == "Epoch";
    let x = if integers { Axis::new(&p.x_label).integers() } else { Axis::new(&p.x_label) };
    let figure = FigurePlot::new(id, x, Axis::new(&p.y_label));
    let mut plot = figure.plot();
    for (range, x_axis) in [(p.x_range, true), (p.y_range, false)] {
        if let Some([lo, hi]) = range {
            plot = if x_axis { plot.include_x(lo).include_x(hi) } else { plot.include_y(lo).include_y(hi) };
        }
    }
    let series = p.series.clone();
    let hlines = p.hlines.clone();
    figure.show(ui, plot, move |plot| {
        for s in series {
            let colour = theme::rgb(palette::series(s.colour));
            let pts: Vec<[f64; 2]> = s.points.iter().copied().filter(|p| p[1].is_finite()).collect();
            if pts.len() > 1 {
                let mut line = Line::new(s.name.clone(), PlotPoints::from(pts.clone())).color(colour).width(2.0);
                if s.dashed {
                    line = line.style(LineStyle::dashed_loose());
                }
                plot.line(line);
            }
            if s.markers || pts.len() == 1 {
                plot.points(Points::new(s.name, PlotPoints::from(pts)).color(colour).radius(3.5));
            }
        }
        for (value, label) in hlines {
            plot.hline(egui_plot::HLine::new(label, value).color(theme::REFERENCE).style(LineStyle::dashed_dense()));
        }
    });
}
