//! The perturbation view: clean image, perturbation, adversarial image, the true label and
//! both predictions, for the current filtered network; flipped predictions marked.

use egui::{ColorImage, TextureHandle, TextureOptions};

use super::widgets::map;
use super::widgets::{empty_note, export_button, job_button};
use crate::jobs::JobKind;
use crate::render::colormap::Colormap;
use crate::ui::actions::{Action, FigureId};
use crate::ui::app::ExplorerApp;
use crate::ui::theme;

#[derive(Default)]
pub struct PerturbationView {
    key: u64,
    textures: Vec<[TextureHandle; 3]>,
}

impl PerturbationView {
    fn upload(&mut self, ctx: &egui::Context, app: &ExplorerApp) {
        if self.key == app.session.samples_key && self.textures.len() == app.session.samples.len() {
            return;
        }
        self.key = app.session.samples_key;
        self.textures = app
            .session
            .samples
            .iter()
            .map(|s| {
                let img = |rgb: &[u8]| ColorImage::from_rgb(s.size, rgb);
                let tex = |name: &str, rgb: &[u8]| {
                    ctx.load_texture(format!("sample-{}-{name}", s.index), img(rgb), TextureOptions::NEAREST)
                };
                [tex("clean", &s.clean_rgb), tex("delta", &s.perturbation_rgb), tex("adv", &s.adv_rgb)]
            })
            .collect();
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, app: &mut ExplorerApp) {
        ui.horizontal(|ui| {
            super::widgets::number(ui, egui::DragValue::new(&mut app.settings.samples).range(1..=64), "Samples");
            job_button(ui, app, JobKind::Perturb, "Attack samples", Action::Perturb);
            export_button(ui, app, FigureId::Perturbation);
        });
        ui.weak("Clean image · perturbation δ = adversarial − clean (pixel units, averaged over channels) · adversarial image, for the filtered network");
        if app.session.samples.is_empty() {
            empty_note(ui, "No samples yet");
            return;
        }
        // The perturbation's colours: each image is scaled to its own largest |δ|, given under it.
        let line = ui.text_style_height(&egui::TextStyle::Body);
        let (bar, _) = ui
            .allocate_exact_size(egui::vec2(ui.available_width().min(560.0), 2.0 * line + 12.0), egui::Sense::hover());
        map::colorbar_horizontal(
            ui,
            ui.make_persistent_id("perturbation_colorbar"),
            bar,
            Colormap::Diverging,
            [-1.0, 1.0],
            "δ / max |δ| of the sample",
        );
        self.upload(ui.ctx(), app);
        let classes = app.session.model.as_ref().map(|m| m.classes.clone()).unwrap_or_default();
        let name = |k: u32| classes.get(k as usize).cloned().unwrap_or_else(|| k.to_string());
        let flipped = app.session.samples.iter().filter(|s| s.clean_pred == s.label && s.adv_pred != s.label).count();
        ui.label(format!("{flipped} of {} predictions flipped by the attack", app.session.samples.len()));
        let cell = 64.0;
        let cols = ((ui.available_width() / (3.0 * cell + 24.0)).floor() as usize).max(1);
        egui::ScrollArea::vertical().show(ui, |ui| {
            egui::Grid::new("samples").spacing([12.0, 10.0]).show(ui, |ui| {
                for (i, (s, tex)) in app.session.samples.iter().zip(&self.textures).enumerate() {
                    let flip = s.adv_pred != s.clean_pred;
                    let frame = egui::Frame::new()
                        .stroke(egui::Stroke::new(
                            if flip { 2.0 } else { 1.0 },
                            if flip { theme::HIGHLIGHT } else { ui.visuals().widgets.noninteractive.bg_stroke.color },
                        ))
                        .inner_margin(4.0);
                    frame.show(ui, |ui| {
                        ui.vertical(|ui| {
                            ui.horizontal(|ui| {
                                for t in tex {
                                    ui.add(egui::Image::new(t).fit_to_exact_size(egui::vec2(cell, cell)));
                                }
                            });
                            ui.label(format!("true {} · max |δ| {:.3}", name(s.label), s.perturbation_scale));
                            ui.colored_label(
                                theme::CLEAN,
                                format!("clean {} ({:.0} %)", name(s.clean_pred), 100.0 * s.clean_conf),
                            );
                            let adv = format!("adversarial {} ({:.0} %)", name(s.adv_pred), 100.0 * s.adv_conf);
                            if flip {
                                ui.colored_label(theme::HIGHLIGHT, format!("{adv} · flipped"));
                            } else {
                                ui.colored_label(theme::ADVERSARIAL, adv);
                            }
                        });
                    });
                    if (i + 1) % cols == 0 {
                        ui.end_row();
                    }
                }
            });
        });
    }
}
