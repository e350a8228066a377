//! `info`: the layers of a checkpoint.

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::common::ModelArgs;
use crate::engine::model::{ModelGraph, Network};
use crate::export::format::group;

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
    /// Print the graph (what feeds what) in Graphviz's DOT language instead of a table
    #[arg(long, conflicts_with = "json")]
    pub dot: bool,
}

#[derive(Serialize)]
struct LayerRow {
    name: String,
    kind: &'static str,
    shape: Vec<usize>,
    parameters: usize,
    min: f32,
    max: f32,
    filterable: bool,
}

/// One row per parameterised layer, with the range of its weight.
fn rows(net: &Network) -> Result<Vec<LayerRow>> {
    net.params
        .layers()
        .iter()
        .map(|l| {
            let key = format!("{}.weight", l.name);
            let (min, max) = match net.params.get(&key) {
                Some(p) => {
                    let v = p.var.as_tensor().flatten_all()?;
                    (v.min(0)?.to_scalar::<f32>()?, v.max(0)?.to_scalar::<f32>()?)
                }
                None => (f32::NAN, f32::NAN),
            };
            Ok(LayerRow {
                name: l.name.clone(),
                kind: l.kind.name(),
                shape: l.shape.clone(),
                parameters: l.parameters,
                min,
                max,
                filterable: l.filterable,
            })
        })
        .collect()
}

pub fn run(a: &InfoArgs) -> Result<()> {
    let net = a.model.load()?;
    let rows = rows(&net)?;
    let graph = net.graph();
    if a.dot {
        print!("{}", dot(&graph));
        return Ok(());
    }
    if a.json {
        let out = serde_json::json!({
            "architecture": net.card.architecture,
            "input": net.card.input,
            "classes": net.num_classes,
            "parameters": net.params.parameter_count(),
            "card": net.card,
            "warnings": net.warnings,
            "layers": rows,
            "graph": graph,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{}", a.model.describe(&net));
    println!(
        "input {:?}, {} classes; * marks the layers the synaptic filters act on\n",
        net.card.input, net.num_classes
    );
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(5);
    println!(
        "  {:width$}  {:<11}  {:<18}  {:>11}  {:>10}  {:>10}",
        "layer", "kind", "shape", "parameters", "min", "max"
    );
    for r in &rows {
        let shape = format!("{:?}", r.shape);
        println!(
            "{} {:width$}  {:<11}  {:<18}  {:>11}  {:>10.5}  {:>10.5}",
            if r.filterable { '*' } else { ' ' },
            r.name,
            r.kind,
            shape,
            group(r.parameters),
            r.min,
            r.max
        );
    }
    println!("\nwhat feeds what (activations, pooling and reshapes between nodes are not shown):\n");
    let labels: Vec<String> = (0..graph.nodes.len()).map(|i| graph.label(i)).collect();
    let width = labels.iter().map(String::len).max().unwrap_or(0);
    for (n, label) in graph.nodes.iter().zip(&labels).skip(1) {
        let from: Vec<&str> = n.inputs.iter().map(|&s| labels[s].as_str()).collect();
        println!("  {label:width$}  <- {}", from.join(" + "));
    }
    Ok(())
}

/// The graph as a Graphviz digraph, nodes labelled as in the table.
fn dot(g: &ModelGraph) -> String {
    let mut out = String::from("digraph model {\n  rankdir=TB;\n  node [shape=box, fontname=\"sans\"];\n");
    for (i, n) in g.nodes.iter().enumerate() {
        let shape = match n.kind {
            crate::engine::model::graph::NodeKind::Layer => "box",
            _ => "ellipse",
        };
        let label = g.label(i).replace('\\', "\\\\").replace('"', "\\\"");
        out += &format!("  n{i} [label=\"{label}\", shape={shape}];\n");
        for s in &n.inputs {
            out += &format!("  n{s} -> n{i};\n");
        }
    }
    out + "}\n"
}
