//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod readme;
pub mod synthetic;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `../shared/data` beside the checkout, or `FRAGILITY_DATA`; None (with a message) when absent.
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("FRAGILITY_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    if dir.join("mnist").is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: real data not found at {} (set FRAGILITY_DATA)", dir.display());
        None
    }
}

pub fn load_tensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn vec4(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Largest |a - b| / max(|b|, floor).
pub fn max_rel_diff(a: &Tensor, b: &Tensor, floor: f32) -> f32 {
    assert_eq!(a.dims(), b.dims());
    vec4(a).iter().zip(vec4(b)).map(|(x, y)| (x - y).abs() / y.abs().max(floor)).fold(0.0, f32::max)
}

pub fn argmax_rows(t: &Tensor) -> Vec<u32> {
    t.argmax(1).unwrap().to_vec1().unwrap()
}

/// The analysis fixture's card with its sizes declared, so that training can start from it.
pub fn training_card(dir: &std::path::Path) -> std::path::PathBuf {
    let card_text = std::fs::read_to_string(fixtures().join("analysis/tiny_cnn.json"))
        .unwrap()
        .replace("\"key\": \"features.0\"", "\"key\": \"features.0\", \"out_channels\": 4, \"kernel\": 3")
        .replace("\"key\": \"features.4\"", "\"key\": \"features.4\", \"out_channels\": 8, \"kernel\": 3")
        .replace("\"key\": \"classifier.0\"", "\"key\": \"classifier.0\", \"out_features\": 16");
    let card = dir.join("tiny.json");
    std::fs::write(&card, card_text).unwrap();
    card
}

/// A folder with the analysis fixture's 60 MNIST images as both splits.
pub fn tiny_mnist() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("analysis");
    for name in ["images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"] {
        std::fs::copy(src.join(format!("t10k-{name}")), dir.path().join(format!("t10k-{name}"))).unwrap();
        std::fs::copy(src.join(format!("t10k-{name}")), dir.path().join(format!("train-{name}"))).unwrap();
    }
    dir
}

/// A fixture model's reference inputs (`models/NAME.io.safetensors`) as 8-bit images with
/// their labels, de-normalised with `net`'s card: a small dataset for any analysis.
pub fn fixture_dataset(
    name: &str,
    net: &fragility_explorer::engine::model::Network,
) -> fragility_explorer::engine::data::Dataset {
    let dir = fixtures().join("models");
    let io = load_tensors(&dir.join(format!("{name}.io.safetensors")));
    let [c, h, w] = net.card.input;
    let norm = net.card.normalize.clone().expect("fixture cards normalise");
    let images = vec4(&io["input"])
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let (m, s) = norm.channel((i / (h * w)) % c);
            ((v * s + m) * 255.0).round().clamp(0.0, 255.0) as u8
        })
        .collect();
    fragility_explorer::engine::data::Dataset {
        name: name.into(),
        known: None,
        source: dir.join(format!("{name}.safetensors")),
        shape: [c, h, w],
        images,
        labels: io["label"].to_vec1::<i64>().unwrap().iter().map(|&l| l as u32).collect(),
        classes: None,
        notes: vec![],
    }
}
