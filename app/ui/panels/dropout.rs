//! Fragile neurons: nodal dropout of a convolution layer (A_k per kernel, the mean line,
//! fragile and null kernels marked) and how far the attack moves each kernel (d_F against d_N).

use egui_plot::{Bar, BarChart, HLine};

use super::widgets::plot::{Axis, FigurePlot, top_with_legend_room};
use super::widgets::{empty_note, export_button, job_button};
use crate::engine::analysis::scores::Class;
use crate::engine::model::LayerKind;
use crate::jobs::JobKind;
use crate::ui::actions::{Action, FigureId};
use crate::ui::app::ExplorerApp;
use crate::ui::theme;

pub fn show(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    let selected = app.settings.layer.clone();
    let conv = selected.filter(|l| app.session.layer_row(l).is_some_and(|r| r.kind == LayerKind::Conv2d));
    ui.horizontal(|ui| {
        let target = conv.clone().unwrap_or_else(|| "the first convolution".into());
        job_button(
            ui,
            app,
            JobKind::Dropout,
            &format!("Run nodal dropout of {target}"),
            Action::Dropout { layer: conv.clone() },
        );
        export_button(ui, app, FigureId::Dropout);
    });
    let Some(r) = app.session.dropout.clone() else {
        empty_note(ui, "Removes one kernel at a time and measures clean accuracy (choose a convolution layer first)");
        return;
    };
    ui.label(format!(
        "{}: baseline {:.2} %, mean with one kernel removed {:.2} %, {} fragile, {} null kernels",
        r.layer,
        100.0 * r.baseline_accuracy,
        100.0 * r.mean,
        r.fragile.len(),
        r.null.len()
    ));
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.5}"));
    ui.label(format!(
        "d_F {} (fragile), d_N {} (others): the attack {} fragile kernels",
        f(r.d_fragile),
        f(r.d_other),
        if r.targeted { "targets" } else { "does not target" }
    ));
    // One bar chart per kind of kernel, so each colour has its legend entry (the figure's colours).
    let kinds = [
        ("fragile kernels", theme::class(Class::Fragile)),
        ("null kernels", theme::NULL_KERNEL),
        ("other kernels", theme::BARS),
    ];
    let kind_of = |k: usize| {
        if r.fragile.contains(&k) {
            0
        } else if r.null.contains(&k) {
            1
        } else {
            2
        }
    };
    let charts = |values: &[f64], scale: f64| -> Vec<BarChart> {
        kinds
            .iter()
            .enumerate()
            .filter_map(|(i, &(name, colour))| {
                let bars: Vec<Bar> = values
                    .iter()
                    .enumerate()
                    .filter(|&(k, _)| kind_of(k) == i)
                    .map(|(k, &v)| Bar::new(k as f64, scale * v).width(0.8).fill(colour))
                    .collect();
                (!bars.is_empty()).then(|| BarChart::new(name, bars).color(colour))
            })
            .collect()
    };
    let h = (ui.available_height() - 30.0) / 2.0;
    let acc = charts(&r.accuracy_per_kernel, 100.0);
    let lo = r.accuracy_per_kernel.iter().copied().fold(r.baseline_accuracy, f64::min);
    let figure = FigurePlot::new(
        "dropout_accuracy",
        Axis::new("kernel k removed").integers(),
        Axis::new("clean accuracy without kernel k (%)"),
    );
    // Zoomed to where the kernels differ; bars from 0 would all look the same.
    let (bottom, top) = (100.0 * (lo - 0.005), 100.0 * (r.baseline_accuracy.max(lo) + 0.003));
    let plot = figure.plot().height(h).default_y_bounds(bottom, top_with_legend_room(bottom, top));
    let (mean, baseline) = (100.0 * r.mean, 100.0 * r.baseline_accuracy);
    figure.show(ui, plot, move |plot| {
        for chart in acc {
            plot.bar_chart(chart);
        }
        plot.hline(HLine::new("mean A_k", mean).color(theme::REFERENCE).width(1.5));
        plot.hline(HLine::new("baseline (no kernel removed)", baseline).color(theme::CLEAN));
    });
    ui.horizontal(|ui| {
        ui.strong("Shift under attack per kernel");
        export_button(ui, app, FigureId::DropoutShift);
    });
    let d = charts(&r.d_per_kernel, 1.0);
    let (d_fragile, d_other) = (r.d_fragile, r.d_other);
    let figure = FigurePlot::new(
        "dropout_shift",
        Axis::new("kernel k").integers(),
        Axis::new("d_k, mean |output change| under attack"),
    );
    let d_max = r.d_per_kernel.iter().copied().fold(0.0, f64::max);
    let plot = figure.plot().height(h).include_y(0.0).include_y(top_with_legend_room(0.0, d_max));
    figure.show(ui, plot, move |plot| {
        for chart in d {
            plot.bar_chart(chart);
        }
        if let Some(v) = d_fragile {
            plot.hline(HLine::new("d_F (mean of fragile kernels)", v).color(theme::class(Class::Fragile)));
        }
        if let Some(v) = d_other {
            plot.hline(HLine::new("d_N (mean of the others)", v).color(theme::REFERENCE));
        }
    });
}
