//! The dialog for a checkpoint without a card whose architecture was not recognised:
//! choose the architecture, input and normalisation, and save the card beside it.

use crate::engine::card::{Activation, Architecture, LayerSpec, ModelCard, Normalize, Stem};
use crate::ui::actions::Action;
use crate::ui::app::ExplorerApp;
use crate::ui::session::CardRequest;
use crate::ui::theme;

pub fn show(ctx: &egui::Context, app: &mut ExplorerApp) {
    let Some(mut req) = app.session.card_request.take() else { return };
    let mut keep = true;
    let mut save = None;
    egui::Window::new("Describe this checkpoint").collapsible(false).resizable(true).default_width(460.0).show(
        ctx,
        |ui| {
            ui.label(format!(
                "{} has no model card and its architecture was not recognised.",
                req.checkpoint.display()
            ));
            ui.add(egui::Label::new(egui::RichText::new(&req.message).small().weak()).wrap());
            ui.separator();
            egui::Grid::new("card_form").num_columns(2).show(ui, |ui| {
                ui.label("Architecture");
                egui::ComboBox::from_id_salt("architecture")
                    .selected_text(Architecture::ALL[req.architecture].name())
                    .show_ui(ui, |ui| {
                        for (i, a) in Architecture::ALL.iter().enumerate() {
                            ui.selectable_value(&mut req.architecture, i, a.name());
                        }
                    });
                ui.end_row();
                ui.label("Input channels, height, width");
                ui.horizontal(|ui| {
                    for (d, name) in req.input.iter_mut().zip(["channels", "height", "width"]) {
                        crate::ui::panels::widgets::number(ui, egui::DragValue::new(d).range(1..=1024), name);
                    }
                });
                ui.end_row();
                ui.label("Normalisation mean");
                ui.text_edit_singleline(&mut req.mean);
                ui.end_row();
                ui.label("Normalisation std");
                ui.text_edit_singleline(&mut req.std);
                ui.end_row();
                ui.label("Dataset (optional)");
                ui.text_edit_singleline(&mut req.dataset);
                ui.end_row();
                let architecture = Architecture::ALL[req.architecture];
                if architecture.has_stem() {
                    ui.label("Stem");
                    let stems = [
                        (None, "from the weights"),
                        (Some(Stem::Torchvision), "ImageNet"),
                        (Some(Stem::Cifar), "CIFAR"),
                    ];
                    choice(ui, "stem", &mut req.stem, &stems);
                    ui.end_row();
                }
                if architecture.has_activation() {
                    ui.label("Activation");
                    let default = match architecture.default_activation() {
                        Activation::Silu => "default (SiLU)",
                        _ => "default (ReLU)",
                    };
                    let acts = [(None, default), (Some(Activation::Relu), "ReLU"), (Some(Activation::Silu), "SiLU")];
                    choice(ui, "activation", &mut req.activation, &acts);
                    ui.end_row();
                }
            });
            if Architecture::ALL[req.architecture] == Architecture::Sequential {
                ui.label("Layers (JSON, as in a model card)");
                ui.add(egui::TextEdit::multiline(&mut req.layers_json).code_editor().desired_rows(8));
            }
            if let Some(e) = &req.error {
                ui.colored_label(theme::ERROR, e);
            }
            ui.horizontal(|ui| {
                if ui.button("Save card and open").clicked() {
                    match card_of(&req) {
                        Ok(card) => save = Some(card),
                        Err(e) => req.error = Some(e),
                    }
                }
                if ui.button("Cancel").clicked() {
                    keep = false;
                }
            });
        },
    );
    if let Some(card) = save {
        app.push(Action::SaveCard { checkpoint: req.checkpoint.clone(), card: Box::new(card) });
    } else if keep {
        app.session.card_request = Some(req);
    }
}

/// A combo box over `options` (value, label).
fn choice<T: Copy + PartialEq>(ui: &mut egui::Ui, id: &str, value: &mut T, options: &[(T, &str)]) {
    let shown = options.iter().find(|(v, _)| v == value).map_or("", |(_, l)| *l);
    egui::ComboBox::from_id_salt(id).selected_text(shown).show_ui(ui, |ui| {
        for (v, label) in options {
            ui.selectable_value(value, *v, *label);
        }
    });
}

fn numbers(text: &str, what: &str) -> Result<Vec<f32>, String> {
    text.split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<f32>().map_err(|_| format!("{what}: `{s}` is not a number")))
        .collect()
}

/// The card the form describes, checked as a card file would be.
fn card_of(req: &CardRequest) -> Result<ModelCard, String> {
    let architecture = Architecture::ALL[req.architecture];
    let layers: Vec<LayerSpec> = if architecture == Architecture::Sequential {
        serde_json::from_str(&req.layers_json).map_err(|e| format!("layers: {e}"))?
    } else {
        Vec::new()
    };
    let card = ModelCard {
        architecture,
        input: req.input,
        normalize: Some(Normalize { mean: numbers(&req.mean, "mean")?, std: numbers(&req.std, "std")? }),
        classes: None,
        dataset: Some(req.dataset.trim().to_string()).filter(|s| !s.is_empty()),
        eps: None,
        layers,
        stem: req.stem.filter(|_| architecture.has_stem()),
        training: None,
        activation: req.activation.filter(|_| architecture.has_activation()),
        inner_normalize: None,
    };
    // The same checks as a card read from disk.
    ModelCard::parse(&card.to_json(), &req.checkpoint).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(architecture: Architecture) -> CardRequest {
        CardRequest {
            checkpoint: "m.safetensors".into(),
            message: String::new(),
            architecture: Architecture::ALL.iter().position(|&a| a == architecture).unwrap(),
            input: [3, 32, 32],
            mean: "0.5".into(),
            std: "0.25".into(),
            dataset: String::new(),
            layers_json: String::new(),
            stem: Some(Stem::Cifar),
            activation: Some(Activation::Silu),
            error: None,
        }
    }

    #[test]
    fn the_form_keeps_only_the_fields_the_architecture_has() {
        let card = card_of(&request(Architecture::MobileNetV2)).unwrap();
        assert_eq!((card.stem, card.activation), (Some(Stem::Cifar), None));
        let card = card_of(&request(Architecture::WideResNet)).unwrap();
        assert_eq!((card.stem, card.activation), (None, Some(Activation::Silu)));
        let card = card_of(&request(Architecture::Vgg)).unwrap();
        assert_eq!((card.stem, card.activation), (None, None));
    }
}
