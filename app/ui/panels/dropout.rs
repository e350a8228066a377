//! Fragile neurons: nodal dropout of a convolution layer (A_k per kernel, the mean line,
//! fragile and null kernels marked) and how far the attack moves each kernel (d_F against d_N).

use egui_plot::{Bar, BarChart, HLine, Legend, Plot};

use super::widgets::{empty_note, export_button, job_button};
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
    let colour = |k: usize| {
        if r.fragile.contains(&k) {
            theme::class_colour(0)
        } else if r.null.contains(&k) {
            theme::class_colour(2)
        } else {
            theme::BAR
        }
    };
    let h = (ui.available_height() - 30.0) / 2.0;
    let acc: Vec<Bar> = r
        .accuracy_per_kernel
        .iter()
        .enumerate()
        .map(|(k, &a)| Bar::new(k as f64, a).width(0.8).fill(colour(k)))
        .collect();
    let lo = r.accuracy_per_kernel.iter().copied().fold(r.baseline_accuracy, f64::min);
    Plot::new("dropout_accuracy")
        .legend(Legend::default())
        .height(h)
        .x_axis_label("kernel")
        .y_axis_label("clean accuracy without it")
        // Zoomed to where the kernels differ; bars from 0 would all look the same.
        .default_y_bounds(lo - 0.005, r.baseline_accuracy.max(lo) + 0.003)
        .show(ui, |plot| {
            plot.bar_chart(BarChart::new("A_k (red fragile, green null)", acc).color(theme::BAR));
            plot.hline(HLine::new("mean", r.mean).color(theme::MEAN_LINE).width(1.5));
            plot.hline(HLine::new("baseline", r.baseline_accuracy).color(theme::CLEAN));
        });
    ui.horizontal(|ui| {
        ui.strong("Shift under attack per kernel");
        export_button(ui, app, FigureId::DropoutShift);
    });
    let d: Vec<Bar> =
        r.d_per_kernel.iter().enumerate().map(|(k, &v)| Bar::new(k as f64, v).width(0.8).fill(colour(k))).collect();
    Plot::new("dropout_shift").legend(Legend::default()).height(h).x_axis_label("kernel").y_axis_label("d_k").show(
        ui,
        |plot| {
            plot.bar_chart(BarChart::new("d_k", d).color(theme::BAR));
            if let Some(v) = r.d_fragile {
                plot.hline(HLine::new("d_F", v).color(theme::class_colour(0)));
            }
            if let Some(v) = r.d_other {
                plot.hline(HLine::new("d_N", v).color(theme::MEAN_LINE));
            }
        },
    );
}
