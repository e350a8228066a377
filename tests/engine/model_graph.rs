//! The model graph (what feeds what): every layer of every fixture model is in it, and a
//! model read natively and as its TorchScript ONNX export has the same graph, one
//! described by the architecture's code and the other followed through the file's nodes.

use crate::common;

use candle_core::Device;
use common::*;
use fragility_explorer::engine::model::Network;
use fragility_explorer::engine::model::graph::{ModelGraph, NodeKind};

fn models() -> std::path::PathBuf {
    fixtures().join("models")
}

fn manifest() -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(models().join("manifest.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap().as_object().unwrap().clone()
}

fn load(file: &str) -> Network {
    Network::load(&models().join(file), None, &Device::Cpu).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Each node as its label and its inputs' labels (sorted: a sum reads its terms in
/// whichever order the code wrote them).
fn edges(g: &ModelGraph) -> Vec<(String, Vec<String>)> {
    let mut v: Vec<_> = (0..g.nodes.len())
        .map(|i| {
            let mut ins: Vec<String> = g.nodes[i].inputs.iter().map(|&s| g.label(s)).collect();
            ins.sort();
            (g.label(i), ins)
        })
        .collect();
    v.sort();
    v
}

/// Inputs come before the node, one input node first and one output node last, and every
/// parameterised layer is a node (exactly once where `once`).
fn check_well_formed(file: &str, net: &Network, once: bool) {
    let g = net.graph();
    assert_eq!(g.nodes.first().map(|n| &n.kind), Some(&NodeKind::Input), "{file}");
    assert_eq!(g.nodes.last().map(|n| &n.kind), Some(&NodeKind::Output), "{file}");
    for (i, n) in g.nodes.iter().enumerate() {
        assert!(n.inputs.iter().all(|&s| s < i), "{file}: node {i} `{}` reads a later node", n.name);
        assert!(i == 0 || !n.inputs.is_empty(), "{file}: node {i} `{}` reads nothing", n.name);
        if let NodeKind::Merge(_) = n.kind {
            assert!(n.inputs.len() >= 2, "{file}: merge `{}` of one branch", n.name);
        }
    }
    for l in net.params.layers() {
        let uses = g.nodes.iter().filter(|n| n.kind == NodeKind::Layer && n.name == l.name).count();
        assert!(uses >= 1, "{file}: layer `{}` is not in the graph", l.name);
        assert!(!once || uses == 1, "{file}: layer `{}` is in the graph {uses} times", l.name);
    }
}

#[test]
fn every_fixture_model_has_all_its_layers_in_the_graph() {
    let mut checked = 0;
    for (name, m) in manifest() {
        if m.get("native") != Some(&serde_json::Value::Bool(false)) {
            let file = format!("{name}.safetensors");
            check_well_formed(&file, &load(&file), true);
            checked += 1;
        }
        for f in m.get("onnx").and_then(|v| v.as_array()).into_iter().flatten() {
            let file = f.as_str().unwrap();
            check_well_formed(file, &load(file), false);
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} models checked");
}

#[test]
fn native_and_onnx_graphs_agree() {
    let mut compared = 0;
    for (name, m) in manifest() {
        let exports: Vec<&str> =
            m.get("onnx").and_then(|v| v.as_array()).into_iter().flatten().filter_map(|v| v.as_str()).collect();
        let Some(ts) = exports.iter().find(|f| f.ends_with(".ts.onnx")) else { continue };
        if m.get("native") == Some(&serde_json::Value::Bool(false)) {
            continue;
        }
        let native = load(&format!("{name}.safetensors")).graph();
        let onnx = load(ts).graph();
        assert_eq!(edges(&native), edges(&onnx), "{name}: native and {ts} differ");
        assert_eq!(native.branches(), onnx.branches(), "{name}");
        compared += 1;
    }
    assert!(compared >= 6, "only {compared} models compared");
}

#[test]
fn a_resnet_block_adds_its_shortcut() {
    let g = load("resnet18_cifar.safetensors").graph();
    assert!(g.branches());
    let label_of = |name: &str| g.label(g.layer(name).unwrap_or_else(|| panic!("no layer {name}")));
    let add = |block: &str| {
        let i = g.nodes.iter().position(|n| n.kind == NodeKind::Merge("add".into()) && n.name == block).unwrap();
        let mut ins: Vec<String> = g.nodes[i].inputs.iter().map(|&s| g.label(s)).collect();
        ins.sort();
        ins
    };
    // An identity shortcut reads the stem's output; a projection its own convolution.
    assert_eq!(add("layer1.0"), [label_of("bn1"), label_of("layer1.0.bn2")]);
    assert_eq!(add("layer1.1"), ["add (layer1.0)".to_string(), label_of("layer1.1.bn2")]);
    let down = add("layer2.0");
    assert_eq!(down.len(), 2);
    assert!(down.iter().any(|l| l.starts_with("layer2.0.") && l.ends_with(".1") && !l.contains("bn")), "{down:?}");
    // The next block's first convolution reads the sum.
    let next = g.layer("layer1.1.conv1").unwrap();
    assert_eq!(g.label(g.nodes[next].inputs[0]), "add (layer1.0)");
    // A plain stack has no branches.
    assert!(!load("seq_cnn.safetensors").graph().branches());
}
