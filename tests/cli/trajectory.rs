//! `trajectory`: each checkpoint's parts are exactly what `sweep`, `sweep --scope global` and
//! `dropout` write for it alone, the summaries are built from them, and kept parts are reused
//! only while the checkpoint, the data and the config stay the same.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

fn run(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_fragility-explorer")).args(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `trajectory` and returns its result and how many parts it said it reused.
fn trajectory(runs: &Path, data: &Path, out: &Path, steps: &str) -> (Value, u64) {
    let o = run(&[
        "trajectory",
        "--checkpoints",
        s(runs),
        "--data",
        s(data),
        "--steps",
        steps,
        "--limit",
        "30",
        "--out",
        s(out),
    ]);
    let r = json(&out.join("trajectory.json"));
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    let reused = r["reused"].as_u64().unwrap();
    let parts = 3 * r["checkpoints"].as_array().unwrap().len();
    assert!(said.contains(&format!("{reused} of {parts} parts reused")), "{said}");
    (r, reused)
}

#[test]
fn each_checkpoint_is_what_the_single_commands_write_and_kept_parts_are_reused() {
    let data = tiny_mnist();
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let card = training_card(dir.path());
    let train = ["train", "--model-card", s(&card), "--data", s(data.path()), "--epochs", "3", "--every", "1"];
    run(&[&train[..], &["--test-limit", "20", "--out", s(&runs)]].concat());
    let out = dir.path().join("trajectory");
    let (r, reused) = trajectory(&runs, data.path(), &out, "3");
    assert_eq!(reused, 0);
    assert_eq!(r["epochs"], serde_json::json!([1, 2, 3]));
    assert_eq!(r["cancelled"], false);

    let entries = r["checkpoints"].as_array().unwrap();
    let mut fragile_sets = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let model = entry["path"].as_str().unwrap();
        let single = dir.path().join(format!("single-{i}"));
        let common = ["--model", model, "--data", s(data.path()), "--limit", "30"];
        for (scope, part) in [("local", "sweep"), ("global", "global")] {
            let folder = single.join(part);
            run(&[&["sweep"][..], &common, &["--scope", scope, "--steps", "3", "--out", s(&folder)]].concat());
            assert_eq!(entry[part], json(&folder.join("sweep.json")), "epoch {}: {part}", entry["epoch"]);
        }
        let folder = single.join("dropout");
        run(&[&["dropout"][..], &common, &["--out", s(&folder)]].concat());
        assert_eq!(entry["dropout"], json(&folder.join("dropout.json")), "epoch {}: dropout", entry["epoch"]);
        let fragile: Vec<u64> =
            entry["dropout"]["fragile"].as_array().unwrap().iter().map(|k| k.as_u64().unwrap()).collect();
        let kernels = entry["dropout"]["accuracy_per_kernel"].as_array().unwrap().len();
        assert_eq!(r["fragile_fraction"][i].as_f64().unwrap(), fragile.len() as f64 / kernels as f64);
        fragile_sets.push(fragile);
    }

    // The summaries are the per-checkpoint numbers, gathered.
    let every: Vec<u64> =
        fragile_sets[0].iter().copied().filter(|k| fragile_sets.iter().all(|f| f.contains(k))).collect();
    assert_eq!(r["consistently_fragile"], serde_json::json!(every));
    for series in r["scores"].as_array().unwrap() {
        let part = if series["layer"] == "global" { "global" } else { "sweep" };
        for (i, entry) in entries.iter().enumerate() {
            let record = entry[part]["records"]
                .as_array()
                .unwrap()
                .iter()
                .find(|rec| rec["layer"] == series["layer"] && rec["filter"] == series["filter"])
                .unwrap();
            for score in ["s_clean", "s_adv", "s_diff"] {
                assert_eq!(series[score][i], record[score], "{} {} {score}", series["layer"], series["filter"]);
            }
        }
    }
    let targeted: Vec<&Value> = r["layer_classes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["class"].as_array().unwrap().iter().all(|k| k == "fragile"))
        .map(|c| &c["layer"])
        .collect();
    assert_eq!(r["consistently_targeted"].as_array().unwrap().iter().collect::<Vec<_>>(), targeted);
    assert_eq!(r["score_change"].as_array().unwrap().len(), 2);

    // Run again: everything is reused and the numbers are the same.
    let (again, reused) = trajectory(&runs, data.path(), &out, "3");
    assert_eq!(reused, 9);
    assert_eq!(again["checkpoints"], r["checkpoints"]);
    // Other sweep options: the sweeps are computed again, the nodal dropouts reused.
    let (_, reused) = trajectory(&runs, data.path(), &out, "5");
    assert_eq!(reused, 3);
    // A checkpoint written again: its parts are computed again, the others' reused.
    let rewritten = runs.join("checkpoint-epoch-002.safetensors");
    std::fs::write(&rewritten, std::fs::read(&rewritten).unwrap()).unwrap();
    let (_, reused) = trajectory(&runs, data.path(), &out, "5");
    assert_eq!(reused, 6);
    assert!(out.join("trajectory-scores.csv").is_file() && out.join("trajectory-kernels.csv").is_file());

    // A kept part damaged or made inconsistent by hand is computed again, never trusted.
    let kept = out.join("checkpoints/checkpoint-epoch-001.safetensors");
    let dropout = kept.join("dropout/dropout.json");
    let mut v = json(&dropout);
    v["d_per_kernel"].as_array_mut().unwrap().pop();
    std::fs::write(&dropout, v.to_string()).unwrap();
    std::fs::write(kept.join("global/sweep.json"), "{ damaged").unwrap();
    let (again, reused) = trajectory(&runs, data.path(), &out, "5");
    assert_eq!(reused, 7);
    assert_eq!(again["checkpoints"][0]["dropout"], r["checkpoints"][0]["dropout"]);
}

#[test]
fn compare_draws_runs_side_by_side_and_names_them() {
    let data = tiny_mnist();
    let dir = tempfile::tempdir().unwrap();
    let card = training_card(dir.path());
    let mut results = Vec::new();
    for (name, seed) in [("cnn-seed0", "0"), ("cnn-seed3", "3")] {
        let runs = dir.path().join(name);
        let train = ["train", "--model-card", s(&card), "--data", s(data.path()), "--epochs", "2", "--every", "1"];
        run(&[&train[..], &["--seed", seed, "--test-limit", "20", "--out", s(&runs)]].concat());
        let out = dir.path().join(format!("{name}-trajectory"));
        trajectory(&runs, data.path(), &out, "3");
        results.push(out);
    }
    let out = dir.path().join("compare");
    // A folder holding trajectory.json is read as the file.
    run(&["compare", s(&results[0]), s(&results[1].join("trajectory.json")), "--out", s(&out)]);
    let index = json(&out.join("compare.json"));
    let runs = index["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["label"], "cnn-seed0 (sequential) on MNIST test (30 of 60)");
    assert_eq!(runs[1]["epochs"], serde_json::json!([1, 2]));
    assert_eq!(runs[0]["parameters"], 6802);
    let figures: Vec<&str> = index["figures"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    for stem in [
        "compare-global-s-adv",
        "compare-fragile-fraction",
        "compare-fragile-vs-size",
        "compare-score-change",
        "compare-run1-scores-s-adv",
        "compare-run2-targeting",
        "compare-run2-kernels",
        "compare-run1-landscape-features.0-h1-adv",
        "compare-run2-compression-global-h1-adv",
    ] {
        assert!(figures.contains(&stem), "{stem} not in {figures:?}");
        for ext in ["png", "svg", "csv", "json"] {
            assert!(out.join(format!("{stem}.{ext}")).is_file(), "{stem}.{ext}");
        }
    }
    // A line per run, with each run's own numbers.
    let csv = std::fs::read_to_string(out.join("compare-fragile-fraction.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 + 2, "{csv}");
    let first = json(&results[0].join("trajectory.json"));
    let expected = format!("cnn-seed0 (sequential) on MNIST test (30 of 60),1,{}", first["fragile_fraction"][0]);
    assert!(csv.lines().any(|l| l == expected), "{csv}");

    // Other results are refused with what compare reads.
    let sweep = dir.path().join("sweep");
    run(&["sweep", "--limit", "10", "--steps", "3", "--layers", "features.0", "--out", s(&sweep)]);
    let o = Command::new(env!("CARGO_BIN_EXE_fragility-explorer"))
        .args(["compare", s(&sweep.join("sweep.json")), "--out", s(&out)])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("compare reads the results of `trajectory`") && err.contains("sweep.json"), "{err}");
}
