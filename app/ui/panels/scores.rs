//! Per-layer filtering scores: a bar chart for the current filter and a table of every
//! complete sweep with the layer classes.

use egui_plot::{Bar, BarChart};

use super::widgets::plot::{Axis, FigurePlot, top_with_legend_room};
use super::widgets::{empty_note, export_button, job_button};
use crate::engine::analysis::filter::FilterKind;
use crate::jobs::JobKind;
use crate::ui::actions::{Action, FigureId};
use crate::ui::app::ExplorerApp;
use crate::ui::theme;

/// (layer, S_clean, S_adv, S_diff) of every complete record of `filter`, in model order.
pub fn scores_of(app: &ExplorerApp, filter: FilterKind) -> Vec<(String, f64, f64, f64)> {
    let order: Vec<String> =
        app.session.model.as_ref().map(|m| m.layers.iter().map(|l| l.name.clone()).collect()).unwrap_or_default();
    let mut rows: Vec<_> = app
        .session
        .sweeps
        .records
        .iter()
        .filter(|r| r.filter == filter)
        .filter_map(|r| {
            let d = r.done.as_ref()?;
            Some((r.layer.clone(), d.s_clean?, d.s_adv?, d.s_diff?))
        })
        .collect();
    rows.sort_by_key(|r| order.iter().position(|l| *l == r.0).unwrap_or(usize::MAX));
    rows
}

pub fn show(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    ui.horizontal(|ui| {
        job_button(
            ui,
            app,
            JobKind::Sweep,
            "Characterise all layers",
            Action::Sweep { filters: FilterKind::PAPER.to_vec(), all_layers: true },
        );
        export_button(ui, app, FigureId::Scores);
    });
    let filter = app.settings.filter;
    let rows = scores_of(app, filter);
    if rows.is_empty() {
        empty_note(ui, "No complete sweeps yet: Characterise all layers runs h1, h2 and h3 on every layer");
        return;
    }
    ui.strong(format!("Scores of {}", filter.label()));
    let bars = |k: usize, off: f64, colour: egui::Color32| -> Vec<Bar> {
        rows.iter()
            .enumerate()
            .map(|(i, r)| {
                let v = [r.1, r.2, r.3][k];
                Bar::new(i as f64 + off, v).width(0.25).fill(colour).name(&r.0)
            })
            .collect()
    };
    let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let figure = FigurePlot::new(
        "scores",
        Axis::new("layer").categories(names),
        Axis::new("score S (area of normalised accuracy − ρ)"),
    );
    let (lo, hi) = rows.iter().flat_map(|r| [r.1, r.2, r.3]).fold((0f64, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let plot =
        figure.plot().height(ui.available_height() * 0.55).include_y(0.0).include_y(top_with_legend_room(lo, hi));
    let charts = [
        BarChart::new("S_clean", bars(0, -0.27, theme::CLEAN)).color(theme::CLEAN),
        BarChart::new("S_adv", bars(1, 0.0, theme::ADVERSARIAL)).color(theme::ADVERSARIAL),
        BarChart::new("S_diff = S_adv − S_clean", bars(2, 0.27, theme::SCORE_DIFF)).color(theme::SCORE_DIFF),
    ];
    figure.show(ui, plot, move |plot| {
        for chart in charts {
            plot.bar_chart(chart);
        }
    });
    egui::ScrollArea::vertical().show(ui, |ui| {
        egui::Grid::new("score_table").striped(true).num_columns(6).show(ui, |ui| {
            for h in ["layer", "filter", "S_clean", "S_adv", "S_diff", "layer class"] {
                ui.strong(h);
            }
            ui.end_row();
            for r in &app.session.sweeps.records {
                let Some(d) = &r.done else { continue };
                let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:+.4}"));
                ui.label(&r.layer);
                ui.label(r.filter.name());
                ui.label(f(d.s_clean));
                ui.label(f(d.s_adv));
                ui.label(f(d.s_diff));
                match app.session.sweeps.layer_class(&r.layer) {
                    Some(c) => ui.colored_label(theme::class(c.class), c.class.name()),
                    None => ui.label(""),
                };
                ui.end_row();
            }
        });
    });
}
