//! The shared MNIST CNN on the full MNIST test set, against PyTorch's numbers
//! (scripts/reference_mnist.py): 9,905 clean; FGSM eps 0.3: 6,232 with the exact
//! direction, 7,301 with PyTorch's float32 autograd at batch 100.

use crate::common;

use std::process::Command;

use candle_core::Device;
use common::*;
use fragility_explorer::engine::attack::{AttackConfig, GradMode};
use fragility_explorer::engine::data::{self, DataSpec, Subset};
use fragility_explorer::engine::eval::{EvalConfig, evaluate};
use fragility_explorer::engine::model::Network;
use fragility_explorer::engine::progress::{Ctrl, quiet};
use fragility_explorer::engine::setup;

fn eval_json(args: &[&str]) -> serde_json::Value {
    let out =
        Command::new(env!("CARGO_BIN_EXE_fragility-explorer")).arg("eval").args(args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn cli_eval_matches_pytorch_on_the_full_test_set() {
    let Some(shared) = shared_data() else { return };
    let model = shared.join("models/mnist_cnn_small.pth");
    let data = shared.join("mnist");
    let v = eval_json(&["--model", model.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert_eq!(v["n"], 10000);
    assert_eq!(v["correct_clean"], 9905);
    assert_eq!(v["correct_adversarial"], 6232);
    assert_eq!(v["eps"], 0.3);
    assert_eq!(v["attack"], "fgsm");
    assert_eq!(v["grad"], "exact");
    assert!(v["saturated"].as_u64().unwrap() > 9000);
    assert_eq!(v["clean_accuracy"], 0.9905);

    // The same through a safetensors copy written by `convert`.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.safetensors");
    let status = Command::new(env!("CARGO_BIN_EXE_fragility-explorer"))
        .args(["convert", "--model", model.to_str().unwrap(), "--out", copy.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let v = eval_json(&["--model", copy.to_str().unwrap(), "--data", data.to_str().unwrap(), "--attack", "none"]);
    assert_eq!((v["n"].as_u64(), v["correct_clean"].as_u64()), (Some(10000), Some(9905)));
}

#[test]
fn autograd_direction_lands_near_pytorch() {
    let Some(shared) = shared_data() else { return };
    let v = eval_json(&[
        "--model",
        shared.join("models/mnist_cnn_small.pth").to_str().unwrap(),
        "--data",
        shared.join("mnist").to_str().unwrap(),
        "--grad",
        "autograd",
        "--batch",
        "100",
    ]);
    let c = v["correct_adversarial"].as_i64().unwrap();
    assert!((c - 7301).abs() <= 5, "autograd FGSM leaves {c} correct, PyTorch 7,301");
}

#[test]
fn exact_direction_does_not_depend_on_batch_size() {
    let Some(shared) = shared_data() else { return };
    let net = Network::load(&shared.join("models/mnist_cnn_small.pth"), None, &Device::Cpu).unwrap();
    let spec = DataSpec { subset: Subset::First { n: 600 }, ..DataSpec::new(shared.join("mnist")) };
    let data = data::load(&spec).unwrap();
    let norm = setup::normalization(&net, Some(&data)).unwrap();
    let (p, s) = quiet();
    let run = |batch| {
        let cfg = EvalConfig { batch, attack: Some(AttackConfig::fgsm(0.3)), ..EvalConfig::default() };
        evaluate(&net, &data, &norm, &cfg, Ctrl { progress: &p, stop: &s }).unwrap()
    };
    let reference = run(100);
    for batch in [1, 64, 256] {
        let r = run(batch);
        assert_eq!(
            r.outcomes.iter().map(|o| o.adv_pred).collect::<Vec<_>>(),
            reference.outcomes.iter().map(|o| o.adv_pred).collect::<Vec<_>>(),
            "batch {batch}"
        );
    }
    let cfg = EvalConfig {
        attack: Some(AttackConfig { grad: GradMode::Exact, ..AttackConfig::fgsm(0.0) }),
        ..EvalConfig::default()
    };
    let zero = evaluate(&net, &data, &norm, &cfg, Ctrl { progress: &p, stop: &s }).unwrap();
    assert_eq!(zero.correct_adversarial, Some(zero.correct_clean), "eps 0 gives clean accuracy");
}
