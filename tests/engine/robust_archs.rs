//! The architectures of robustness research read natively: what the weights cannot show
//! (and the card then says), the zoo's quirks, and the wrapped files they come in. Their
//! numbers against PyTorch are in `reference_models`.

use crate::common;

use candle_core::Device;
use common::*;
use fragility_explorer::engine::card::{Activation, Architecture, ModelCard, Normalize};
use fragility_explorer::engine::checkpoint;
use fragility_explorer::engine::model::{BnMode, CardOrigin, Network, init};

fn model(name: &str) -> std::path::PathBuf {
    fixtures().join(format!("models/{name}.safetensors"))
}

/// The fixture recognised without its card: the note it gives.
fn detected_note(name: &str) -> String {
    let net = Network::build(checkpoint::load(&model(name), &Device::Cpu).unwrap(), None, &Device::Cpu).unwrap();
    match net.card_origin {
        CardOrigin::Detected(note) => note,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn depth_width_and_variant_are_read_from_the_weights() {
    for (name, want) in [
        ("wide_resnet", "WideResNet-16-1"),
        ("dm_wide_resnet", "WideResNet-10-1"),
        ("preact_resnet18", "PreActResNet-18 (CIFAR stem)"),
        ("preact_resnet18_in", "PreActResNet-18 (ImageNet stem)"),
        ("vgg11_bn", "vgg11_bn"),
        ("vgg16", "vgg16"),
        ("vgg13_cifar", "vgg13_bn"),
        ("mobilenet_v2", "mobilenet_v2"),
    ] {
        let note = detected_note(name);
        assert!(note.contains(want), "{name}: {note}");
    }
}

#[test]
fn the_zoo_wrn_unused_sub_block_is_dropped_with_a_note() {
    let net = Network::load(&model("wide_resnet"), None, &Device::Cpu).unwrap();
    assert!(net.warnings.iter().any(|w| w.contains("`sub_block1` ignored")), "{:?}", net.warnings);
    assert!(net.params.layers().iter().all(|l| !l.name.starts_with("sub_block1")));
}

#[test]
fn a_wrapped_zoo_checkpoint_opens_as_it_is() {
    // {"state_dict": {"model.init_conv.weight": ...}, "epoch": 5}
    let wrapped = Network::load(&fixtures().join("checkpoints/wrapped.pt"), None, &Device::Cpu).unwrap();
    assert_eq!(wrapped.card.architecture, Architecture::DmWideResNet);
    let io = load_tensors(&fixtures().join("models/dm_wide_resnet.io.safetensors"));
    let logits = wrapped.logits(&io["input"], BnMode::Running).unwrap();
    assert!(max_rel_diff(&logits, &io["logits"], 1.0) < 1e-4);
}

fn with_card(name: &str, edit: impl FnOnce(&mut ModelCard)) -> Result<Network, String> {
    let mut card = ModelCard::load(&fixtures().join(format!("models/{name}.json"))).unwrap();
    edit(&mut card);
    let state = checkpoint::load(&model(name), &Device::Cpu).unwrap();
    Network::build(state, Some((card, CardOrigin::Given)), &Device::Cpu).map_err(|e| e.to_string())
}

#[test]
fn the_card_sets_what_the_weights_cannot_show() {
    let io = load_tensors(&fixtures().join("models/dm_wide_resnet.io.safetensors"));
    let x = &io["input"];
    let reference = with_card("dm_wide_resnet", |_| {}).unwrap().logits(x, BnMode::Running).unwrap();
    // Another activation or other inner statistics give another function.
    let relu = with_card("dm_wide_resnet", |c| c.activation = Some(Activation::Relu)).unwrap();
    assert!(max_rel_diff(&relu.logits(x, BnMode::Running).unwrap(), &reference, 1.0) > 1e-2);
    let stats =
        with_card("dm_wide_resnet", |c| c.inner_normalize = Some(Normalize { mean: vec![0.5], std: vec![0.5] }));
    assert!(max_rel_diff(&stats.unwrap().logits(x, BnMode::Running).unwrap(), &reference, 1.0) > 1e-2);
    // The MobileNetV2 fixture with the CIFAR stem matches PyTorch only with its card's stem.
    let io = load_tensors(&fixtures().join("models/mobilenet_v2_cifar.io.safetensors"));
    let tv = with_card("mobilenet_v2_cifar", |c| c.stem = None).unwrap();
    assert!(max_rel_diff(&tv.logits(&io["input"], BnMode::Running).unwrap(), &io["logits"], 1.0) > 1e-2);
}

#[test]
fn cards_that_do_not_fit_the_weights_are_refused_with_the_reason() {
    let e = with_card("preact_resnet18", |c| c.stem = Some(fragility_explorer::engine::card::Stem::Torchvision))
        .unwrap_err();
    assert!(e.contains("3x3 kernel"), "{e}");
    let e = with_card("vgg16", |c| c.architecture = Architecture::WideResNet).unwrap_err();
    assert!(e.contains("block1.layer.0.conv1.weight"), "{e}");
    let e = with_card("wide_resnet", |c| c.architecture = Architecture::PreActResNet18).unwrap_err();
    assert!(e.contains("layer1.0.conv1.weight"), "{e}");
    let text = r#"{"architecture": "resnet18", "input": [3, 32, 32], "activation": "silu"}"#;
    let e = ModelCard::parse(text, std::path::Path::new("card.json")).unwrap_err().to_string();
    assert!(e.contains("`activation` only applies to"), "{e}");
}

#[test]
fn a_wide_resnet_with_uneven_groups_is_named_as_such() {
    let mut state = checkpoint::load(&model("wide_resnet"), &Device::Cpu).unwrap();
    let doomed: Vec<String> = state.keys().filter(|k| k.starts_with("block3.layer.1.")).map(str::to_string).collect();
    for k in doomed {
        state.take(&k);
    }
    let e = Network::build(state, None, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("blocks per group [2, 2, 1]"), "{e}");
}

#[test]
fn training_them_from_scratch_is_refused_with_what_can_be() {
    let card = ModelCard::load(&fixtures().join("models/vgg16.json")).unwrap();
    let e = init::initial_state(&card, 10, 0, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("training vgg from scratch is not supported") && e.contains("resnet18"), "{e}");
}
