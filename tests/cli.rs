//! The command line as a user meets it: help, the embedded default, clear errors.

mod common;

use std::process::{Command, Output};

use common::*;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fragility-explorer")).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_command_has_help() {
    for cmd in [vec!["--help"], vec!["info", "--help"], vec!["eval", "--help"], vec!["convert", "--help"]] {
        let o = run(&cmd);
        assert!(o.status.success(), "{cmd:?}");
        assert!(String::from_utf8_lossy(&o.stdout).contains("Usage"), "{cmd:?}");
    }
}

#[test]
fn info_lists_the_embedded_model() {
    let o = run(&["info", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["parameters"], 421642);
    let layers = v["layers"].as_array().unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["features.0", "features.3", "classifier.0", "classifier.2"]);
    assert!(layers.iter().all(|l| l["filterable"] == true && l["min"].as_f64() < l["max"].as_f64()));
}

#[test]
fn eval_on_the_embedded_default_reports_json() {
    let o = run(&["eval", "--limit", "200", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in [
        "clean_accuracy",
        "adversarial_accuracy",
        "correct_clean",
        "correct_adversarial",
        "n",
        "eps",
        "attack",
        "grad",
        "saturated",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["n"], 200);
    assert!(v["correct_adversarial"].as_u64() < v["correct_clean"].as_u64());
}

#[test]
fn pgd_is_at_least_as_strong_as_fgsm() {
    let parse = |o: Output| -> serde_json::Value { serde_json::from_slice(&o.stdout).unwrap() };
    let fgsm = parse(run(&["eval", "--limit", "100", "--eps", "0.2", "--json"]));
    let pgd = parse(run(&["eval", "--limit", "100", "--eps", "0.2", "--attack", "pgd", "--pgd-steps", "5", "--json"]));
    assert!(pgd["correct_adversarial"].as_u64() <= fgsm["correct_adversarial"].as_u64(), "{pgd} vs {fgsm}");
}

#[test]
fn wrong_image_size_is_a_clear_error() {
    let Some(shared) = shared_data() else { return };
    let o = run(&["eval", "--data", shared.join("samples/cifar10").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("the dataset's images are 3x32x32 but the model takes 1x28x28"), "{e}");
}

#[test]
fn bad_arguments_and_files_fail_cleanly() {
    let o = run(&["eval", "--limit", "10", "--eps", "-1"]);
    assert!(stderr(&o).contains("eps must be a finite number >= 0"), "{}", stderr(&o));
    let o = run(&["eval", "--model", "/no/such/model.pth"]);
    let e = stderr(&o);
    assert!(e.starts_with("error: cannot read") && e.contains("/no/such/model.pth"), "{e}");
    let evil = fixtures().join("checkpoints/evil.pth");
    let o = run(&["info", "--model", evil.to_str().unwrap()]);
    assert!(stderr(&o).contains("argparse.Namespace"));
}
