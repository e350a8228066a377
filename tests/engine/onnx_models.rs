//! ONNX exports of the fixture models (`scripts/make_fixtures.py`, both of PyTorch's
//! exporters): their numbers against PyTorch are in `reference_models`; here, that they are
//! the native models' own layers, that a sweep and a nodal dropout give exactly the native
//! counts, and that files the explorer cannot run are refused with the node and reason.

use crate::common;

use candle_core::Device;
use common::*;
use fragility_explorer::engine::analysis::dropout::{self, DropoutConfig};
use fragility_explorer::engine::analysis::filter::FilterKind;
use fragility_explorer::engine::analysis::sweep::{self, Scope, SweepConfig, SweepOptions};
use fragility_explorer::engine::attack::AttackConfig;
use fragility_explorer::engine::card::Architecture;
use fragility_explorer::engine::model::{BnMode, Network};
use fragility_explorer::engine::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    ValueInfoProto,
};
use fragility_explorer::engine::progress::{Ctrl, quiet};
use prost::Message;

fn models() -> std::path::PathBuf {
    fixtures().join("models")
}

/// (model, ONNX file) for every export; the model is None when it has no native form.
fn exports() -> Vec<(Option<String>, String)> {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models().join("manifest.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for (name, m) in manifest.as_object().unwrap() {
        let native = m.get("native") != Some(&serde_json::Value::Bool(false));
        for f in m.get("onnx").and_then(|v| v.as_array()).into_iter().flatten() {
            out.push((native.then(|| name.clone()), f.as_str().unwrap().to_string()));
        }
    }
    out
}

fn load(file: &str) -> Network {
    Network::load(&models().join(file), None, &Device::Cpu).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn every_export_opens_with_the_native_layers() {
    let all = exports();
    assert!(all.len() >= 16, "the manifest lists {} ONNX files", all.len());
    for (name, file) in all {
        let onnx = load(&file);
        assert_eq!(onnx.card.architecture, Architecture::Onnx);
        assert!(onnx.params.filterable().count() > 0, "{file}: no filterable layer");
        let Some(name) = name else { continue };
        let native = load(&format!("{name}.safetensors"));
        // In graph order, which may put a shortcut before the block's first convolution.
        let layers = |n: &Network| -> Vec<(String, Vec<usize>)> {
            let mut v: Vec<_> = n.params.filterable().map(|l| (l.name.clone(), l.shape.clone())).collect();
            v.sort();
            v
        };
        if file.ends_with(".ts.onnx") {
            // Batch norm kept apart: every parameter is the model's own, by its own name.
            assert_eq!(layers(&onnx), layers(&native), "{file}");
            assert_eq!(onnx.params.parameter_count(), native.params.parameter_count(), "{file}");
        } else {
            // Folded batch norm: the same layers (names and shapes), other values.
            assert_eq!(layers(&onnx).len(), layers(&native).len(), "{file}");
        }
    }
}

#[test]
fn a_native_model_and_its_export_give_the_same_sweep_and_dropout() {
    for (name, layer) in [
        ("resnet18_cifar", "layer3.1.conv2"),
        ("mobilenet_v2", "features.9.conv.1.0"),
        ("dm_wide_resnet", "layer.1.block.0.conv_1"),
    ] {
        let native = load(&format!("{name}.safetensors"));
        let onnx = load(&format!("{name}.ts.onnx"));
        let data = fixture_dataset(name, &native);
        let norm = native.card.normalize.clone().unwrap();
        let (p, s) = quiet();
        let ctrl = Ctrl { progress: &p, stop: &s };
        let options = SweepOptions { steps: 7, ..SweepOptions::default() };
        let cfg = SweepConfig {
            layers: vec![layer.into(), native.params.filterable().next().unwrap().name.clone()],
            filters: vec![FilterKind::H1, FilterKind::H2, FilterKind::H3],
            options,
            batch: 2,
            ..SweepConfig::new(Scope::Local, AttackConfig::fgsm(0.1))
        };
        let a = sweep::run(&native, &data, &norm, &cfg, ctrl, &|_| {}).unwrap();
        let b = sweep::run(&onnx, &data, &norm, &cfg, ctrl, &|_| {}).unwrap();
        assert_eq!(a.records.len(), b.records.len(), "{name}");
        for (x, y) in a.records.iter().zip(&b.records) {
            assert_eq!((&x.layer, x.filter, &x.removed), (&y.layer, y.filter, &y.removed), "{name}");
            assert_eq!((&x.clean_correct, &x.adv_correct), (&y.clean_correct, &y.adv_correct), "{name} {}", x.layer);
        }
        let cfg =
            DropoutConfig { layer: Some(layer.into()), attack: AttackConfig::fgsm(0.1), bn: BnMode::Running, batch: 2 };
        let a = dropout::run(&native, &data, &norm, &cfg, ctrl).unwrap();
        let b = dropout::run(&onnx, &data, &norm, &cfg, ctrl).unwrap();
        assert_eq!(a.correct_per_kernel, b.correct_per_kernel, "{name}: dropout");
        assert_eq!((&a.fragile, &a.null), (&b.fragile, &b.null), "{name}: dropout classes");
        for (x, y) in a.d_per_kernel.iter().zip(&b.d_per_kernel) {
            assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{name}: d_k {x} vs {y}");
        }
    }
}

/// Attention's input projection and the MLP's linear layers run as `MatMul(x, Transpose(W))`
/// in the TorchScript export and as `MatMul(x, W^T)` in the dynamo export: in both, every
/// linear and convolution weight of PyTorch's ViT is a filterable layer, under its module's name.
#[test]
fn every_vit_weight_is_a_layer_in_both_exports() {
    let mut want = vec!["conv_proj".to_string(), "heads.head".to_string()];
    for l in 0..2 {
        for part in ["self_attention", "self_attention.out_proj", "mlp.0", "mlp.3"] {
            want.push(format!("encoder.layers.encoder_layer_{l}.{part}"));
        }
    }
    want.sort();
    for file in ["vit_tiny.ts.onnx", "vit_tiny.dynamo.onnx"] {
        let net = load(file);
        let mut names: Vec<String> = net.params.filterable().map(|l| l.name.clone()).collect();
        names.sort();
        assert_eq!(names, want, "{file}");
        let qkv = net.params.layer("encoder.layers.encoder_layer_0.self_attention").unwrap();
        assert_eq!(qkv.shape, [48, 16], "{file}: the three projections in one weight, as PyTorch keeps it");
    }
}

/// For the models read only as ONNX, the manifest lists every convolution, linear layer and
/// attention block of the PyTorch model: each export offers exactly these as filterable
/// layers, under the same names.
#[test]
fn every_onnx_only_export_has_each_pytorch_layer() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models().join("manifest.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (name, m) in manifest.as_object().unwrap() {
        let Some(layers) = m.get("layers").and_then(|v| v.as_array()) else { continue };
        let mut want: Vec<&str> = layers.iter().filter_map(|v| v.as_str()).collect();
        want.sort();
        for f in m["onnx"].as_array().unwrap() {
            let file = f.as_str().unwrap();
            let net = load(file);
            let mut names: Vec<&str> = net.params.filterable().map(|l| l.name.as_str()).collect();
            names.sort();
            assert_eq!(names, want, "{file}");
            checked += 1;
        }
        assert!(!want.is_empty(), "{name}");
    }
    assert!(checked >= 17, "only {checked} exports checked");
}

/// The opset probe (`scripts/fixture_archs.py`: the operators whose form changes between
/// opsets) exported at each opset the explorer accepts: each file is at its opset, and all
/// give PyTorch's logits (`reference_models` checks gradients and attacks too).
#[test]
fn every_opset_from_13_to_20_loads_and_gives_the_same_logits() {
    let io = load_tensors(&models().join("opset_probe.io.safetensors"));
    for opset in 13..=20 {
        let file = format!("opset_probe.ts{opset}.onnx");
        let model = ModelProto::decode(std::fs::read(models().join(&file)).unwrap().as_slice()).unwrap();
        let found = model.opset_import.iter().find(|o| o.domain.is_empty()).map(|o| o.version);
        assert_eq!(found, Some(opset), "{file}");
        let logits = load(&file).logits(&io["input"], BnMode::Running).unwrap();
        let diff = max_rel_diff(&logits, &io["logits"], 1.0);
        assert!(diff < 1e-4, "{file}: logits differ from PyTorch's by {diff} (relative)");
    }
}

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    use fragility_explorer::engine::onnx::proto::{Dimension, TensorShapeProto, TensorTypeProto, TypeProto};
    let dim = dims.iter().map(|&d| Dimension { dim_value: d, dim_param: String::new() }).collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto { elem_type: 1, shape: Some(TensorShapeProto { dim }) }),
        }),
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: name.into(),
        op_type: op.into(),
        ..NodeProto::default()
    }
}

/// A 1x4x4 image through `nodes` to `y`, written to a temporary folder.
fn write_model(
    nodes: Vec<NodeProto>,
    initializer: Vec<TensorProto>,
    opset: i64,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let model = ModelProto {
        ir_version: 8,
        graph: Some(GraphProto {
            node: nodes,
            initializer,
            input: vec![value_info("x", &[1, 1, 4, 4])],
            output: vec![value_info("y", &[1, 2])],
            ..GraphProto::default()
        }),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
        ..ModelProto::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    (dir, path)
}

fn open_err(path: &std::path::Path) -> String {
    Network::load(path, None, &Device::Cpu).unwrap_err().to_string()
}

fn flatten_gemm() -> (Vec<NodeProto>, Vec<TensorProto>) {
    let mut flat = node("Flatten", "flat", &["x"], &["f"]);
    flat.attribute.push(AttributeProto { name: "axis".into(), i: 1, r#type: 2, ..AttributeProto::default() });
    let w = TensorProto {
        dims: vec![2, 16],
        data_type: 1,
        float_data: vec![0.5; 32],
        name: "fc.weight".into(),
        ..TensorProto::default()
    };
    let mut gemm = node("Gemm", "fc", &["f", "fc.weight"], &["y"]);
    gemm.attribute.push(AttributeProto { name: "transB".into(), i: 1, r#type: 2, ..AttributeProto::default() });
    (vec![flat, gemm], vec![w])
}

#[test]
fn a_hand_built_graph_runs_and_its_weight_is_a_layer() {
    let (nodes, inits) = flatten_gemm();
    let (_d, path) = write_model(nodes, inits, 17);
    let net = Network::load(&path, None, &Device::Cpu).unwrap();
    assert_eq!(net.num_classes, 2);
    assert_eq!(net.params.filterable().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["fc"]);
    let x = candle_core::Tensor::ones((3, 1, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let y = net.logits(&x, BnMode::Running).unwrap();
    assert_eq!(vec4(&y), vec![8.0; 6]);
}

#[test]
fn what_cannot_run_is_refused_with_the_node_and_the_reason() {
    // An operator outside the set.
    let (mut nodes, inits) = flatten_gemm();
    nodes.insert(0, node("Loop", "the_loop", &["x"], &["z"]));
    let (_d, path) = write_model(nodes, inits.clone(), 17);
    let e = open_err(&path);
    assert!(e.contains("`the_loop`") && e.contains("`Loop`") && e.contains("Supported: Conv, Gemm"), "{e}");
    // An opset outside 13 to 20.
    let (nodes, inits) = flatten_gemm();
    let (_d, path) = write_model(nodes, inits, 9);
    assert!(open_err(&path).contains("opset 9 is not supported"));
    // External data that leaves the model's folder.
    let (nodes, mut inits) = flatten_gemm();
    inits[0].float_data.clear();
    inits[0].data_location = 1;
    inits[0].external_data = vec![StringStringEntryProto { key: "location".into(), value: "../secret.bin".into() }];
    let (_d, path) = write_model(nodes, inits, 17);
    let e = open_err(&path);
    assert!(e.contains("`fc.weight`") && e.contains("outside the model's folder"), "{e}");
    // A weight whose data is shorter than its shape.
    let (nodes, mut inits) = flatten_gemm();
    inits[0].float_data.truncate(5);
    let (_d, path) = write_model(nodes, inits, 17);
    let e = open_err(&path);
    assert!(e.contains("it has 5 values for shape [2, 16] (32 expected)"), "{e}");
    // A node reading a value no earlier node computes.
    let (mut nodes, inits) = flatten_gemm();
    nodes.swap(0, 1);
    let (_d, path) = write_model(nodes, inits, 17);
    assert!(open_err(&path).contains("which no earlier node computes"));
    // Not protobuf at all.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.onnx");
    std::fs::write(&path, b"\xff\xff\xff\xff not a model").unwrap();
    assert!(open_err(&path).contains("not an ONNX model"));
}

#[test]
fn external_data_in_the_folder_loads() {
    let (nodes, mut inits) = flatten_gemm();
    inits[0].float_data.clear();
    inits[0].data_location = 1;
    inits[0].external_data = vec![
        StringStringEntryProto { key: "location".into(), value: "weights.bin".into() },
        StringStringEntryProto { key: "offset".into(), value: "4".into() },
    ];
    let (dir, path) = write_model(nodes, inits, 17);
    let mut bytes = vec![0u8; 4];
    bytes.extend((0..32).flat_map(|_| 0.25f32.to_le_bytes()));
    std::fs::write(dir.path().join("weights.bin"), bytes).unwrap();
    let net = Network::load(&path, None, &Device::Cpu).unwrap();
    let x = candle_core::Tensor::ones((1, 1, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(vec4(&net.logits(&x, BnMode::Running).unwrap()), vec![4.0; 2]);
}
