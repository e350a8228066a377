//! The model panel: model and data, the layer list, and the selected layer's histogram.

use egui_plot::{Bar, BarChart, VLine};

use super::layer_graph;
use super::widgets::export_button;
use super::widgets::plot::{Axis, FigurePlot};
use crate::engine::analysis::filter::FilterKind;
use crate::engine::model::graph::{ModelGraph, NodeKind};
use crate::export::format::group;
use crate::jobs::command::{LayerRow, ModelSummary};
use crate::ui::actions::{Action, FigureId};
use crate::ui::app::ExplorerApp;
use crate::ui::theme;

pub fn show(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    let Some(model) = app.session.model.clone() else {
        ui.weak("Opening the model…");
        return;
    };
    ui.heading("Model");
    ui.label(format!("{} · {} parameters", model.architecture, group(model.parameters)));
    ui.add(egui::Label::new(egui::RichText::new(&model.name).small()).truncate());
    if let Some(d) = &app.session.data {
        let [c, h, w] = d.shape;
        ui.add(egui::Label::new(egui::RichText::new(format!("{} · {c}x{h}x{w}", d.name)).small()).truncate());
    }
    let broken = model.layers.iter().filter(|l| l.non_finite > 0).count();
    if broken > 0 {
        ui.colored_label(
            theme::ERROR,
            format!("NaN or infinite weights in {broken} layer(s): the analyses refuse this model"),
        );
    }
    ui.separator();
    ui.horizontal(|ui| {
        ui.strong("Layers");
        let note = match model.graph.branches() {
            true => "in forward order; lines show what feeds what, open dots where branches meet",
            false => "in forward order",
        };
        ui.weak(note);
    });
    layer_table(ui, app, &model);
    ui.separator();
    histogram(ui, app);
}

/// The graph as a table: a gutter with the edges, then per row the layer's name (a button
/// that selects it, for filterable layers), kind and shape, parameters, value range and class.
fn layer_table(ui: &mut egui::Ui, app: &mut ExplorerApp, model: &ModelSummary) {
    let graph = &model.graph;
    let lanes = layer_graph::lanes(graph);
    let gutter = layer_graph::width(lanes.iter().map(|l| l.2).max().unwrap_or(0));
    let mut cells: Vec<Option<egui::Rect>> = vec![None; graph.nodes.len()];
    egui::ScrollArea::vertical().id_salt("layers").max_height(ui.available_height() * 0.5).show(ui, |ui| {
        egui::Grid::new("layer_grid").striped(true).num_columns(6).show(ui, |ui| {
            ui.label("");
            for h in ["name", "kind, shape", "params", "min / max", "class"] {
                ui.weak(h);
            }
            ui.end_row();
            for (id, node) in graph.nodes.iter().enumerate() {
                if node.kind == NodeKind::Output {
                    continue;
                }
                cells[id] = Some(layer_graph::cell(ui, gutter));
                // Written only when a tooltip shows.
                let edges = || edges_text(graph, id);
                match &node.kind {
                    NodeKind::Layer => match model.layers.iter().find(|l| l.name == node.name) {
                        Some(l) => layer_row(ui, app, l, &edges),
                        None => empty_row(ui, &node.name, &edges),
                    },
                    NodeKind::Merge(op) => {
                        ui.label(egui::RichText::new(&node.name).italics()).on_hover_ui(|ui| {
                            ui.label(edges());
                        });
                        ui.label(format!("{op} of {}", node.inputs.len()));
                        empty_cells(ui, 3);
                    }
                    _ => {
                        ui.weak("input").on_hover_ui(|ui| {
                            ui.label(edges());
                        });
                        let [c, h, w] = model.input;
                        ui.weak(format!("{c}x{h}x{w}"));
                        empty_cells(ui, 3);
                    }
                }
                ui.end_row();
            }
        });
        let class_of = |id: usize| {
            let node = &graph.nodes[id];
            match app.session.sweeps.layer_class(&node.name) {
                Some(c) if node.kind == NodeKind::Layer => theme::class(c.class),
                _ => ui.visuals().text_color(),
            }
        };
        layer_graph::paint(ui, graph, &cells, &lanes, class_of);
    });
}

/// What feeds node `id` and what it feeds, for its tooltip.
fn edges_text(graph: &ModelGraph, id: usize) -> String {
    let list = |ids: Vec<usize>| match ids.is_empty() {
        true => "nothing".to_string(),
        false => ids.into_iter().map(|i| graph.label(i)).collect::<Vec<_>>().join(", "),
    };
    let fed_by = list(graph.nodes[id].inputs.clone());
    format!("fed by: {fed_by}\nfeeds: {}", list(graph.consumers(id).collect()))
}

fn empty_cells(ui: &mut egui::Ui, n: usize) {
    for _ in 0..n {
        ui.label("");
    }
}

fn empty_row(ui: &mut egui::Ui, name: &str, edges: &dyn Fn() -> String) {
    ui.label(name).on_hover_ui(|ui| {
        ui.label(edges());
    });
    empty_cells(ui, 4);
}

fn layer_row(ui: &mut egui::Ui, app: &mut ExplorerApp, l: &LayerRow, edges: &dyn Fn() -> String) {
    let selected = app.settings.layer.as_deref() == Some(l.name.as_str());
    let name = ui
        .add_enabled(l.filterable, egui::Button::selectable(selected, &l.name))
        .on_hover_ui(|ui| {
            ui.label(format!("{} {:?}\n{}", l.kind.name(), l.shape, edges()));
        })
        .on_disabled_hover_ui(|ui| {
            ui.label(format!("{} {:?} (not filterable)\n{}", l.kind.name(), l.shape, edges()));
        });
    if name.clicked() && !selected {
        app.push(Action::SelectLayer(l.name.clone()));
    }
    let shape: Vec<String> = l.shape.iter().map(|d| d.to_string()).collect();
    ui.label(format!("{} {}", l.kind.name(), shape.join("x")));
    ui.label(group(l.parameters));
    if l.non_finite > 0 {
        ui.colored_label(theme::ERROR, format!("{} NaN/inf", group(l.non_finite)))
            .on_hover_text("values that are not finite numbers; the analyses refuse this model");
    } else if l.min.is_finite() {
        ui.label(format!("{:.3} / {:.3}", l.min, l.max));
    } else {
        ui.label("");
    }
    match app.session.sweeps.layer_class(&l.name) {
        Some(c) => {
            ui.colored_label(theme::class(c.class), c.class.name())
                .on_hover_text(format!("mean S_adv over h1, h2, h3: {:+.4}", c.mean_s_adv));
        }
        None => {
            ui.label("");
        }
    }
}

fn histogram(ui: &mut egui::Ui, app: &mut ExplorerApp) {
    let Some(name) = app.session.layer.as_ref().map(|l| l.name.clone()) else { return };
    ui.horizontal(|ui| {
        ui.strong(format!("Weights of {name}"));
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            export_button(ui, app, FigureId::Histogram);
        });
    });
    let Some(layer) = &app.session.layer else { return };
    let bins = layer.histogram.len().max(1);
    let width = (layer.max - layer.min) as f64 / bins as f64;
    let bars: Vec<Bar> = layer
        .histogram
        .iter()
        .enumerate()
        .map(|(i, &c)| Bar::new(layer.min as f64 + (i as f64 + 0.5) * width, c as f64).width(width).fill(theme::BARS))
        .collect();
    let threshold = app.settings.threshold;
    let kind = app.settings.filter;
    // h3's window: the pulse width the sweep uses.
    let half = app.current_filter(layer.min as f64, layer.max as f64).width / 2.0;
    let figure = FigurePlot::new("histogram", Axis::new("weight value"), Axis::new("count (weights per bin)"));
    let plot = figure.plot().height(ui.available_height().clamp(120.0, 260.0)).allow_scroll(false);
    figure.show(ui, plot, move |plot| {
        plot.bar_chart(BarChart::new("weights", bars).color(theme::BARS));
        let line = |x: f64| VLine::new("threshold a", x).color(theme::THRESHOLD).width(2.0);
        match kind {
            FilterKind::H3 => {
                plot.vline(line(threshold - half));
                plot.vline(line(threshold + half));
            }
            FilterKind::H0 => {
                plot.vline(line(threshold));
                plot.vline(line(-threshold));
            }
            _ => plot.vline(line(threshold)),
        }
    });
}
