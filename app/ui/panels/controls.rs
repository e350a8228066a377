//! Controls: filter, scope, threshold, attack, eps and subset, with the accuracy readout.

use super::widgets::{group, percent};
use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::sweep::Scope;
use crate::engine::attack::AttackKind;
use crate::ui::actions::Action;
use crate::ui::app::ExplorerApp;
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
    ui.horizontal(|ui| {
        ui.label("Attack");
        changed |= ui.radio_value(&mut app.settings.attack, AttackKind::Fgsm, "FGSM").changed();
        changed |= ui.radio_value(&mut app.settings.attack, AttackKind::Pgd, "PGD").changed();
    });
    if app.settings.attack == AttackKind::Pgd {
        changed |= ui.add(egui::Slider::new(&mut app.settings.pgd_steps, 1..=40).text("PGD steps")).changed();
    }
    let mut eps = app.settings.eps.unwrap_or(0.0);
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
        app.settings.eps = Some(eps);
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
        let mut steps = app.settings.steps;
        let r = super::widgets::number(
            ui,
            egui::DragValue::new(&mut steps).range(3..=101).speed(2),
            "Thresholds per sweep",
        );
        if r.changed() {
            // Simpson's rule needs an odd count.
            app.settings.steps = if steps.is_multiple_of(2) { steps + 1 } else { steps };
            changed = true;
        }
    });
    if changed {
        app.push(Action::FilterChanged);
    }

    ui.separator();
    readout(ui, app);
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

fn readout(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    ui.heading("Accuracy");
    let Some(r) = app.session.readout else {
        ui.weak("Evaluating…");
        return;
    };
    let n = r.samples.max(1) as f64;
    let weak = ui.visuals().weak_text_color();
    let delta = |c: usize, b: usize| {
        let d = (c as f64 - b as f64) / n;
        let colour = if d < -0.005 {
            theme::ERROR
        } else if d > 0.005 {
            theme::GOOD
        } else {
            weak
        };
        (format!("{:+.1} pts", 100.0 * d), colour)
    };
    egui::Grid::new("readout").num_columns(3).show(ui, |ui| {
        for (name, c, b, colour) in [
            ("Clean accuracy", r.clean, r.base_clean, theme::CLEAN),
            ("Adversarial accuracy", r.adv, r.base_adv, theme::ADVERSARIAL),
        ] {
            ui.colored_label(colour, name);
            ui.strong(percent(c as f64 / n));
            let (text, col) = delta(c, b);
            ui.colored_label(col, text).on_hover_text(format!("baseline {}", percent(b as f64 / n)));
            ui.end_row();
        }
        ui.label("Weights removed");
        ui.strong(format!("{} of {}", group(r.removed), group(r.total)));
        ui.label(percent(r.removed as f64 / r.total.max(1) as f64));
        ui.end_row();
    });
    ui.weak(format!("on {} images{}", group(r.samples), if app.session.readout_stale { " · updating…" } else { "" }));
}
