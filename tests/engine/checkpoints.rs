//! Checkpoint formats and the errors bad files give.

use crate::common;

use std::path::Path;

use candle_core::{Device, Tensor};
use common::*;
use fragility_explorer::engine::card::ModelCard;
use fragility_explorer::engine::checkpoint::{self, StateDict};
use fragility_explorer::engine::model::{BnMode, CardOrigin, Network};

fn reference() -> std::collections::HashMap<String, Tensor> {
    load_tensors(&fixtures().join("models/seq_cnn.safetensors"))
}

fn load(name: &str) -> StateDict {
    let path = fixtures().join("checkpoints").join(name);
    checkpoint::load(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn load_err(path: &Path) -> String {
    checkpoint::load(path, &Device::Cpu).expect_err("the load should fail").to_string()
}

fn assert_same(sd: &StateDict, want: &std::collections::HashMap<String, Tensor>, tol: f32, what: &str) {
    assert_eq!(sd.len(), want.len(), "{what}: keys {:?}", sd.keys().collect::<Vec<_>>());
    for (k, t) in want {
        let got = sd.get(k).unwrap_or_else(|| panic!("{what}: lacks {k}"));
        assert_eq!(got.dims(), t.dims(), "{what}: {k}");
        if t.dtype() == candle_core::DType::F32 {
            let d =
                (got - t).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(d <= tol, "{what}: {k} differs by {d}");
        } else {
            assert_eq!(
                got.to_dtype(candle_core::DType::I64).unwrap().flatten_all().unwrap().to_vec1::<i64>().unwrap(),
                t.to_dtype(candle_core::DType::I64).unwrap().flatten_all().unwrap().to_vec1::<i64>().unwrap(),
                "{what}: {k}"
            );
        }
    }
}

#[test]
fn pth_variants_load_the_same_weights() {
    let want = reference();
    for name in
        ["plain.pth", "nested.pth", "nested_state_dict.pth", "nested_model.pth", "dataparallel.pth", "noncontig.pth"]
    {
        assert_same(&load(name), &want, 0.0, name);
    }
    // Half precision keeps about three decimal digits.
    assert_same(&load("fp16.pth"), &want, 2e-3, "fp16.pth");
}

#[test]
fn pruning_masks_are_folded_into_weights() {
    let want = load_tensors(&fixtures().join("checkpoints/pruned_expected.safetensors"));
    let sd = load("pruned.pth");
    assert!(sd.keys().all(|k| !k.ends_with("_orig") && !k.ends_with("_mask")));
    assert_same(&sd, &want, 0.0, "pruned.pth");
}

#[test]
fn legacy_and_unsafe_pickles_are_refused_with_a_reason() {
    let e = load_err(&fixtures().join("checkpoints/legacy.pth"));
    assert!(e.contains("legacy") && e.contains("torch.save"), "{e}");
    let e = load_err(&fixtures().join("checkpoints/evil.pth"));
    assert!(e.contains("`argparse.Namespace`") && e.contains("never runs pickled code"), "{e}");
    assert!(e.ends_with("evil.pth"), "the path goes last: {e}");
}

#[test]
fn safetensors_whose_header_length_starts_like_a_pickle_load() {
    // A header of 128 bytes: the file's first byte is 0x80, as a pickle's is.
    let mut header = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#.to_vec();
    header.resize(0x80, b' ');
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend(1.5f32.to_le_bytes());
    let (_d, p) = temp_with("w.safetensors", &bytes);
    assert_eq!(bytes[0], 0x80);
    let sd = checkpoint::load(&p, &Device::Cpu).unwrap();
    assert_eq!(sd.get("w").unwrap().to_vec1::<f32>().unwrap(), [1.5]);
}

fn temp_with(name: &str, bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    (dir, p)
}

#[test]
fn broken_files_give_clear_errors() {
    let plain = std::fs::read(fixtures().join("checkpoints/plain.pth")).unwrap();
    let (_d, p) = temp_with("cut.pth", &plain[..plain.len() / 2]);
    let e = load_err(&p);
    assert!(e.contains("zip archive"), "{e}");

    let (_d, p) = temp_with("empty.pth", b"");
    assert!(load_err(&p).contains("empty"));

    let (_d, p) = temp_with("text.pth", b"hello, this is not a model");
    let e = load_err(&p);
    assert!(e.contains("not a checkpoint"), "{e}");

    // A safetensors header that promises 4,000 bytes of data where there are 16.
    let header = br#"{"w":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 16]);
    let (_d, p) = temp_with("lies.safetensors", &bytes);
    let e = load_err(&p);
    assert!(e.contains("invalid safetensors file"), "{e}");

    let st = std::fs::read(fixtures().join("models/seq_cnn.safetensors")).unwrap();
    let (_d, p) = temp_with("cut.safetensors", &st[..st.len() - 100]);
    assert!(load_err(&p).contains("invalid safetensors file"));
}

fn seq_cnn_card() -> ModelCard {
    ModelCard::load(&fixtures().join("models/seq_cnn.json")).unwrap()
}

fn build(pairs: Vec<(String, Tensor)>) -> Result<Network, String> {
    Network::build(StateDict::from_pairs(pairs), Some((seq_cnn_card(), CardOrigin::Given)), &Device::Cpu)
        .map_err(|e| e.to_string())
}

fn seq_pairs() -> Vec<(String, Tensor)> {
    let mut v: Vec<_> = reference().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn missing_and_misshapen_keys_name_the_key_and_shapes() {
    let pairs: Vec<_> = seq_pairs().into_iter().filter(|(k, _)| k != "classifier.3.weight").collect();
    let e = build(pairs.clone()).unwrap_err();
    assert!(e.contains("lacks `classifier.3.weight`"), "{e}");
    // Without a card the guess must name the same missing weight, not call its bias unused.
    let e = Network::build(StateDict::from_pairs(pairs), None, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("lacks `classifier.3.weight`") && e.contains("`classifier.3.bias`"), "{e}");

    let pairs: Vec<_> = seq_pairs()
        .into_iter()
        .map(|(k, t)| {
            if k == "features.1.running_var" { (k, Tensor::ones(5, t.dtype(), &Device::Cpu).unwrap()) } else { (k, t) }
        })
        .collect();
    let e = build(pairs).unwrap_err();
    assert!(e.contains("`features.1.running_var` has shape [5]") && e.contains("expects [4]"), "{e}");

    let pairs: Vec<_> = seq_pairs()
        .into_iter()
        .map(|(k, t)| {
            if k == "classifier.1.weight" {
                (k, Tensor::zeros((16, 30), t.dtype(), &Device::Cpu).unwrap())
            } else {
                (k, t)
            }
        })
        .collect();
    let e = build(pairs).unwrap_err();
    assert!(e.contains("`classifier.1.weight` has shape [16, 30]") && e.contains("gives 24"), "{e}");

    let mut pairs = seq_pairs();
    pairs.push(("extra.weight".into(), Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap()));
    let e = build(pairs).unwrap_err();
    assert!(e.contains("does not use: `extra.weight`"), "{e}");
}

#[test]
fn nan_weights_load_with_a_warning() {
    let pairs: Vec<_> = seq_pairs()
        .into_iter()
        .map(|(k, t)| {
            if k == "features.0.weight" {
                let mut v = vec4(&t);
                v[3] = f32::NAN;
                (k, Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap())
            } else {
                (k, t)
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nan.safetensors");
    checkpoint::save_safetensors(&p, pairs.iter().map(|(k, t)| (k.as_str(), t))).unwrap();
    let sd = checkpoint::load(&p, &Device::Cpu).unwrap();
    assert_eq!(sd.warnings, vec!["features.0.weight holds 1 NaN or infinite values".to_string()]);
}

#[test]
fn cards_with_unknown_layer_types_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("m.safetensors");
    std::fs::copy(fixtures().join("models/seq_cnn.safetensors"), &ckpt).unwrap();
    let text = std::fs::read_to_string(fixtures().join("models/seq_cnn.json"))
        .unwrap()
        .replace("\"avgpool2d\"", "\"avgpool3d\"");
    std::fs::write(dir.path().join("m.json"), text).unwrap();
    let e = Network::load(&ckpt, None, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("unknown variant `avgpool3d`") && e.contains("m.json"), "{e}");
}

#[test]
fn saved_safetensors_reload_to_the_same_network() {
    let src = fixtures().join("checkpoints/plain.pth");
    let card = fixtures().join("models/seq_cnn.json");
    let net = Network::load(&src, Some(&card), &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.safetensors");
    net.save(&out).unwrap();
    let again = Network::load(&out, None, &Device::Cpu).unwrap();
    assert_eq!(again.card, net.card);
    assert!(matches!(again.card_origin, CardOrigin::File(_)));
    let x = load_tensors(&fixtures().join("models/seq_cnn.io.safetensors")).remove("input").unwrap();
    let (a, b) = (net.logits(&x, BnMode::Running).unwrap(), again.logits(&x, BnMode::Running).unwrap());
    assert_eq!(vec4(&a), vec4(&b));
}

#[test]
fn unrecognised_checkpoints_explain_how_to_write_a_card() {
    let pairs = vec![(
        "encoder.block.weight".to_string(),
        Tensor::zeros((4, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap(),
    )];
    let e = Network::build(StateDict::from_pairs(pairs), None, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("encoder.block.weight [4, 4, 4]") && e.contains("\"architecture\": \"sequential\""), "{e}");
}

/// A weight stored as an integer type is refused with the type the file holds (int8 and
/// int32 used to be called I64), naming the tensor.
#[test]
fn an_integer_weight_is_refused_with_its_true_type() {
    use safetensors::tensor::{Dtype, TensorView};
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analysis");
    let tensors = candle_core::safetensors::load(fixtures.join("tiny_cnn.safetensors"), &Device::Cpu).unwrap();
    let key = tensors.keys().filter(|k| k.ends_with(".weight")).min().unwrap().clone();
    for (dtype, name, width) in [(Dtype::I8, "int8", 1), (Dtype::I32, "int32", 4), (Dtype::I16, "int16", 2)] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(fixtures.join("tiny_cnn.json"), dir.path().join("tiny_cnn.json")).unwrap();
        let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (k, t) in &tensors {
            let shape = t.dims().to_vec();
            if t.dtype() == candle_core::DType::I64 {
                let values = t.flatten_all().unwrap().to_vec1::<i64>().unwrap();
                owned.push((k.clone(), Dtype::I64, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()));
                continue;
            }
            let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            if *k == key {
                // Whole numbers, little-endian, in the integer type's width.
                let bytes = values.iter().flat_map(|v| (v.round() as i64).to_le_bytes()[..width].to_vec()).collect();
                owned.push((k.clone(), dtype, shape, bytes));
            } else {
                owned.push((k.clone(), Dtype::F32, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()));
            }
        }
        let views: Vec<(String, TensorView<'_>)> =
            owned.iter().map(|(k, d, s, b)| (k.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
        let path = dir.path().join("tiny_cnn.safetensors");
        safetensors::serialize_to_file(views, None, &path).unwrap();
        let e = Network::load(&path, None, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains(&format!("`{key}` is stored as {name}")) && e.contains("floating-point"), "{e}");
    }
}
