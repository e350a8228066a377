//! Controls: filter, scope, threshold, attack, eps and subset, with the accuracy readout.

use super::widgets::percent;
use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::sweep::Scope;
use crate::engine::attack::apgd::Norm;
use crate::engine::attack::checks::MASKING_MARGIN;
use crate::engine::attack::{AttackKind, MAX_QUERIES};
use crate::export::format::group;
use crate::jobs::command::EvalOutcome;
use crate::ui::actions::Action;
use crate::ui::app::ExplorerApp;
use crate::ui::session::ReadoutView;
use crate::ui::theme;

pub fn show(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    ui.heading("Filter");
    let mut changed = false;
    let before = (app.settings.filter, app.settings.scope);
    egui::ComboBox::from_label("Filter").selected_text(app.settings.filter.label()).show_ui(ui, |ui| {
        for f in FilterKind::ALL {
            ui.selectable_value(&mut app.settings.filter, f, f.label());
        }
    });
    ui.horizontal(|ui| {
        ui.label("Scope");
        ui.radio_value(&mut app.settings.scope, Scope::Local, "This layer");
        ui.radio_value(&mut app.settings.scope, Scope::Global, "Global");
    });
    let (lo, hi) = app.threshold_range();
    if (app.settings.filter, app.settings.scope) != before {
        changed = true;
        app.settings.threshold = app.settings.threshold.clamp(lo, hi);
    }
    let slider = egui::Slider::new(&mut app.settings.threshold, lo..=hi).text("Threshold").max_decimals(4);
    if ui.add(slider).changed() {
        changed = true;
    }
    if app.settings.scope == Scope::Global {
        ui.weak("Global: the same threshold on every filterable layer");
    }

    ui.separator();
    ui.heading("Attack");
    ui.horizontal_wrapped(|ui| {
        ui.label("Attack");
        for kind in AttackKind::ALL {
            changed |= ui.radio_value(&mut app.settings.attack.kind, kind, kind.label()).changed();
        }
    });
    let attack = &mut app.settings.attack;
    if attack.kind == AttackKind::Pgd {
        changed |= ui.add(egui::Slider::new(&mut attack.pgd_steps, 1..=40).text("PGD steps")).changed();
    }
    if attack.kind.uses_apgd() {
        changed |= ui.add(egui::Slider::new(&mut attack.attack_steps, 1..=200).text("APGD steps")).changed();
        changed |= ui.add(egui::Slider::new(&mut attack.restarts, 1..=5).text("Restarts")).changed();
    }
    if attack.kind.targeted() {
        changed |= ui.add(egui::Slider::new(&mut attack.targets, 1..=9).text("Target classes")).changed();
    }
    if attack.kind.uses_queries() {
        let queries = egui::Slider::new(&mut attack.queries, 1..=MAX_QUERIES).logarithmic(true).text("Square queries");
        changed |= ui.add(queries).changed();
    }
    if attack.kind.has_l2() {
        ui.horizontal(|ui| {
            ui.label("Norm");
            changed |= ui.radio_value(&mut attack.norm, Norm::Linf, "L-infinity").changed();
            changed |= ui.radio_value(&mut attack.norm, Norm::L2, "L2").changed();
        });
    } else if attack.norm != Norm::Linf {
        attack.norm = Norm::Linf;
        changed = true;
    }
    let mut eps = app.settings.attack.eps;
    let std0 = app.session.model.as_ref().map_or(1.0, |m| m.std0 as f64);
    let eps_changed = ui
        .horizontal(|ui| {
            let r = super::widgets::number(
                ui,
                egui::DragValue::new(&mut eps).range(0.0..=10.0).speed(0.005).max_decimals(4),
                "Eps",
            );
            ui.weak(format!("normalised · {:.4} in pixel units", eps * std0));
            r.changed()
        })
        .inner;
    if eps_changed {
        app.settings.attack.eps = eps;
        app.settings.eps_chosen = true;
        changed = true;
    }
    // Until the data is open its size is unknown: do not clamp the stored subset to it.
    let images = app.session.data.as_ref().map_or(app.settings.subset, |d| d.images).max(1);
    ui.horizontal(|ui| {
        let r = super::widgets::number(
            ui,
            egui::DragValue::new(&mut app.settings.subset).range(1..=images).speed(10),
            "Evaluation images",
        );
        changed |= r.changed();
    });
    ui.horizontal(|ui| {
        let mut steps = app.settings.sweep.steps;
        let r = super::widgets::number(
            ui,
            egui::DragValue::new(&mut steps).range(3..=101).speed(2),
            "Thresholds per sweep",
        );
        if r.changed() {
            // Simpson's rule needs an odd count.
            app.settings.sweep.steps = if steps.is_multiple_of(2) { steps + 1 } else { steps };
            changed = true;
        }
    });
    if changed {
        app.push(Action::FilterChanged);
    }

    ui.separator();
    // A change made in this frame is evaluated at its end: nothing shown yet is for it.
    readout(ui, app, changed);
    ui.separator();
    ui.horizontal_wrapped(|ui| {
        let filter = app.settings.filter;
        super::widgets::job_button(
            ui,
            app,
            crate::jobs::JobKind::Sweep,
            "Sweep this filter",
            Action::Sweep { filters: vec![filter], all_layers: false },
        );
        if !app.jobs.is_running(crate::jobs::JobKind::Sweep) && ui.button("Characterise all layers").clicked() {
            app.push(Action::Sweep { filters: FilterKind::PAPER.to_vec(), all_layers: true });
        }
    });
}

/// The gradient-masking checks of the exact readout, when they find something.
fn masking_rows(ui: &mut egui::Ui, r: &EvalOutcome) {
    let over_margin = |count: usize| count as f64 > MASKING_MARGIN * r.samples as f64;
    let rows = [
        (
            r.blind > 0,
            "Zero gradients",
            "Samples whose input gradient is zero or not finite: no gradient attack can move them",
            r.blind,
        ),
        (
            over_margin(r.black_box_gain),
            "Square beat APGD",
            "The black-box attack fooled samples both gradient attacks missed: masked gradients",
            r.black_box_gain,
        ),
        (
            over_margin(r.single_step_gain),
            "One step beat many",
            "A single FGSM step fooled samples the iterative attack missed: masked or noisy gradients",
            r.single_step_gain,
        ),
    ];
    for (shown, label, why, count) in rows {
        if shown {
            ui.colored_label(theme::ERROR, label).on_hover_text(why);
            ui.label(group(count));
            ui.label("");
            ui.end_row();
        }
    }
}

/// The accuracy of the filtered network: the exact counts, a first estimate with its 95 %
/// interval while they are computed, or placeholders; never numbers made for a filter,
/// threshold or subset other than the current one.
fn readout(ui: &mut egui::Ui, app: &ExplorerApp, changed: bool) {
    ui.heading("Accuracy");
    let view = if changed { ReadoutView::Pending } else { app.session.readout_view(app.filter_version) };
    let weak = ui.visuals().weak_text_color();
    egui::Grid::new("readout").num_columns(3).show(ui, |ui| {
        let rows = [("Clean accuracy", theme::CLEAN), ("Adversarial accuracy", theme::ADVERSARIAL)];
        match view {
            ReadoutView::Exact(r) => {
                let n = r.samples.max(1) as f64;
                for ((name, colour), (c, b)) in rows.into_iter().zip([(r.clean, r.base_clean), (r.adv, r.base_adv)]) {
                    ui.colored_label(colour, name);
                    ui.strong(percent(c as f64 / n));
                    let d = (c as f64 - b as f64) / n;
                    let col = if d < -0.005 {
                        theme::ERROR
                    } else if d > 0.005 {
                        theme::GOOD
                    } else {
                        weak
                    };
                    ui.colored_label(col, format!("{:+.1} pts", 100.0 * d))
                        .on_hover_text(format!("baseline {}", percent(b as f64 / n)));
                    ui.end_row();
                }
                removed_row(ui, r.removed, r.total);
                masking_rows(ui, r);
            }
            ReadoutView::Estimate(e) => {
                let n = e.samples.max(1) as f64;
                for ((name, colour), (c, (lo, hi))) in
                    rows.into_iter().zip([(e.clean, e.clean_interval()), (e.adv, e.adv_interval())])
                {
                    ui.colored_label(colour, name);
                    ui.strong(format!("≈ {}", percent(c as f64 / n)));
                    ui.label(format!("95 %: {:.1}–{:.1}", 100.0 * lo, 100.0 * hi)).on_hover_text(
                        "Wilson score interval of the accuracy over all the evaluation images, \
                         from the first ones",
                    );
                    ui.end_row();
                }
                removed_row(ui, e.removed, e.total);
            }
            ReadoutView::Pending => {
                for (name, colour) in rows {
                    ui.colored_label(colour, name);
                    ui.weak("…");
                    ui.label("");
                    ui.end_row();
                }
                ui.label("Weights removed");
                ui.weak("…");
                ui.label("");
                ui.end_row();
            }
        }
    });
    match view {
        ReadoutView::Exact(r) => ui.weak(format!("on {} images", group(r.samples))),
        ReadoutView::Estimate(e) => {
            ui.weak(format!("first {} of {} images · exact count follows…", group(e.samples), group(e.of)))
        }
        ReadoutView::Pending => ui.weak("Evaluating…"),
    };
}

fn removed_row(ui: &mut egui::Ui, removed: usize, total: usize) {
    ui.label("Weights removed");
    ui.strong(format!("{} of {}", group(removed), group(total)));
    ui.label(percent(removed as f64 / total.max(1) as f64));
    ui.end_row();
}
