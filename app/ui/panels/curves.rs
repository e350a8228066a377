//! Curves: accuracy against threshold as the sweep streams in, accuracy against eps, and
//! the compression view (normalised accuracy against fraction retained).

use egui_plot::{Line, MarkerShape, PlotPoints, Points, VLine};

use super::widgets::plot::{Axis, FigurePlot};
use super::widgets::{empty_note, export_button, job_button};
use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::masks::GLOBAL;
use crate::engine::analysis::sweep::Scope;
use crate::engine::attack::checks;
use crate::jobs::JobKind;
use crate::ui::actions::{Action, FigureId};
use crate::ui::app::ExplorerApp;
use crate::ui::theme;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Curve {
    #[default]
    Threshold,
    Eps,
    Compression,
}

#[derive(Default)]
pub struct CurvesView {
    pub curve: Curve,
}

/// The sweep set the current scope refers to: the layer, or "global".
pub fn sweep_set(app: &ExplorerApp) -> Option<String> {
    match app.settings.scope {
        Scope::Global => Some(GLOBAL.into()),
        Scope::Local => app.settings.layer.clone(),
    }
}

impl CurvesView {
    pub fn ui(&mut self, ui: &mut egui::Ui, app: &mut ExplorerApp) {
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.curve, Curve::Threshold, "Accuracy against threshold");
            ui.selectable_value(&mut self.curve, Curve::Eps, "Accuracy against eps");
            ui.selectable_value(&mut self.curve, Curve::Compression, "Compression");
        });
        ui.separator();
        match self.curve {
            Curve::Threshold => threshold_curve(ui, app),
            Curve::Eps => eps_curve(ui, app),
            Curve::Compression => compression(ui, app),
        }
    }
}

/// Series names, shared by the plots and their legends.
const CLEAN: &str = "clean accuracy";
const ADVERSARIAL: &str = "adversarial accuracy";
const RETAINED: &str = "fraction retained ρ";

fn threshold_curve(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    let filter = app.settings.filter;
    let set = sweep_set(app).unwrap_or_default();
    ui.horizontal(|ui| {
        ui.strong(format!("{set}, {}", filter.label()));
        job_button(ui, app, JobKind::Sweep, "Sweep", Action::Sweep { filters: vec![filter], all_layers: false });
        export_button(ui, app, FigureId::Sweep);
    });
    let Some(rec) = app.session.sweeps.record(&set, filter) else {
        empty_note(ui, "No sweep of this layer and filter yet: press Sweep");
        return;
    };
    let n = app.session.sweeps.baseline.map_or(1, |b| b.samples.max(1)) as f64;
    // Accuracies in percent; the fraction retained on the right axis reads the same grid
    // as 0 to 1.
    let pts = |f: &dyn Fn(&crate::ui::sweep_store::StepPoint) -> f64| -> Vec<[f64; 2]> {
        rec.steps.iter().map(|s| [s.alpha, 100.0 * f(s)]).collect()
    };
    let clean = pts(&|s| s.clean as f64 / n);
    let adv = pts(&|s| s.adv as f64 / n);
    let rho: Vec<[f64; 2]> = rec.steps.iter().zip(rec.rho()).map(|(s, r)| [s.alpha, 100.0 * r]).collect();
    ui.weak(format!("{} of {} steps", rec.steps.len(), rec.alphas.len()));
    let (lo, hi) = rec.alphas.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let threshold = app.settings.threshold;
    let figure = FigurePlot::new("threshold_curve", Axis::new("threshold a (weight value)"), Axis::new("accuracy (%)"))
        .right_axis(Axis::new(RETAINED).scaled(0.01, &[RETAINED]));
    let plot = figure.plot().include_x(lo).include_x(hi).include_y(0.0).include_y(100.0);
    figure.show(ui, plot, move |plot| {
        for (name, data, colour) in
            [(CLEAN, clean, theme::CLEAN), (ADVERSARIAL, adv, theme::ADVERSARIAL), (RETAINED, rho, theme::RETAINED)]
        {
            plot.line(Line::new(name, PlotPoints::from(data.clone())).color(colour).width(2.0));
            plot.points(Points::new(name, PlotPoints::from(data)).color(colour).radius(3.0).shape(MarkerShape::Circle));
        }
        plot.vline(VLine::new("current threshold a", threshold).color(theme::THRESHOLD).width(1.5));
    });
}

fn eps_curve(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    ui.horizontal(|ui| {
        ui.strong("Filtered network");
        job_button(ui, app, JobKind::EpsCurve, "Run", Action::EpsCurve);
        export_button(ui, app, FigureId::Eps);
    });
    if app.session.eps_curve.is_empty() {
        empty_note(ui, "Press Run to measure accuracy at eps from 0 to twice the current one");
        return;
    }
    let clean: Vec<[f64; 2]> = app.session.eps_curve.iter().map(|p| [p[0], 100.0 * p[1]]).collect();
    let adv: Vec<[f64; 2]> = app.session.eps_curve.iter().map(|p| [p[0], 100.0 * p[2]]).collect();
    // Above the plot, which takes the height left: below it they would be cut off.
    masking_notes(ui, &app.session.eps_curve);
    let eps = app.settings.attack.eps;
    let figure = FigurePlot::new("eps_curve", Axis::new("eps (normalised units)"), Axis::new("accuracy (%)"));
    let plot = figure.plot().include_x(0.0).include_y(0.0).include_y(100.0);
    figure.show(ui, plot, move |plot| {
        for (name, data, colour) in [(CLEAN, clean, theme::CLEAN), (ADVERSARIAL, adv, theme::ADVERSARIAL)] {
            plot.line(Line::new(name, PlotPoints::from(data.clone())).color(colour).width(2.0));
            plot.points(Points::new(name, PlotPoints::from(data)).color(colour).radius(3.0));
        }
        plot.vline(VLine::new("current eps", eps).color(theme::THRESHOLD));
    });
}

/// Accuracy that rises with eps, or stays high at the largest eps: the attack, not the
/// network, may have failed (METHOD.md section 4, gradient-masking checks).
fn masking_notes(ui: &mut egui::Ui, curve: &[[f64; 3]]) {
    let adv: Vec<(f64, f64)> = curve.iter().map(|p| (p[0], p[2])).collect();
    let (rising, high_end) = checks::eps_curve_checks(&adv);
    for warning in rising {
        ui.colored_label(theme::ERROR, capitalised(&warning));
    }
    if let Some(note) = high_end {
        ui.weak(capitalised(&note));
    }
}

/// A message of the engine's (lower case, for the command line) as a sentence of the app's.
fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

/// The compression filters (SPEC section 9).
pub const COMPRESSION: [FilterKind; 3] = [FilterKind::H0, FilterKind::H1, FilterKind::H2];

fn compression(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    let set = sweep_set(app).unwrap_or_default();
    ui.horizontal(|ui| {
        ui.strong(&set);
        job_button(
            ui,
            app,
            JobKind::Sweep,
            "Run h0, h1, h2 sweeps",
            Action::Sweep { filters: COMPRESSION.to_vec(), all_layers: false },
        );
        export_button(ui, app, FigureId::Compression);
    });
    let Some(base) = app.session.sweeps.baseline else {
        empty_note(ui, "No sweeps yet");
        return;
    };
    let diagonal = "P / P_base = ρ";
    let figure =
        FigurePlot::new("compression", Axis::new(RETAINED), Axis::new("normalised accuracy P / P_base (unfiltered)"));
    let plot = figure.plot().include_x(0.0).include_x(1.0).include_y(0.0);
    let mut series = Vec::new();
    for f in COMPRESSION {
        let Some(rec) = app.session.sweeps.record(&set, f) else { continue };
        let rho = rec.rho();
        // The exported figure's colours: one per filter, adversarial dashed.
        let colour = theme::filter(f);
        for adv in [false, true] {
            let base_c = if adv { base.adv_correct } else { base.clean_correct }.max(1) as f64;
            let pts: Vec<[f64; 2]> = rec
                .steps
                .iter()
                .zip(&rho)
                .map(|(s, r)| [*r, (if adv { s.adv } else { s.clean }) as f64 / base_c])
                .collect();
            let name = format!("{} {}", f.name(), if adv { "adversarial" } else { "clean" });
            series.push((name, pts, colour, adv));
        }
    }
    figure.show(ui, plot, move |plot| {
        plot.line(
            Line::new(diagonal, PlotPoints::from(vec![[0.0, 0.0], [1.0, 1.0]]))
                .color(theme::RETAINED)
                .style(egui_plot::LineStyle::dashed_dense()),
        );
        for (name, pts, colour, adv) in series {
            let mut line = Line::new(name.clone(), PlotPoints::from(pts.clone())).color(colour).width(1.5);
            if adv {
                line = line.style(egui_plot::LineStyle::dashed_dense());
            }
            plot.line(line);
            plot.points(Points::new(name, PlotPoints::from(pts)).color(colour).radius(2.5));
        }
    });
}
