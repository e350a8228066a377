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
