//! Sweeps, scores, classes and nodal dropout against an independent PyTorch
//! implementation of docs/METHOD.md (scripts/make_analysis_fixtures.py): counts exact, floats 1e-5.

use crate::common;

use candle_core::Device;
use common::*;
use fragility_explorer::engine::analysis::dropout::{self, DropoutConfig};
use fragility_explorer::engine::analysis::filter::FilterKind;
use fragility_explorer::engine::analysis::masks::{FilterSet, Masker};
use fragility_explorer::engine::analysis::sweep::{self, Scope, SweepConfig, SweepOptions, SweepResult};
use fragility_explorer::engine::attack::AttackConfig;
use fragility_explorer::engine::card::Normalize;
use fragility_explorer::engine::data::{self, DataSpec, Dataset};
use fragility_explorer::engine::model::Network;
use fragility_explorer::engine::progress::{Ctrl, quiet};
use fragility_explorer::engine::setup;
use serde_json::Value;

struct Setup {
    net: Network,
    data: Dataset,
    norm: Normalize,
    reference: Value,
}

fn setup() -> Setup {
    let dir = fixtures().join("analysis");
    let net = Network::load(&dir.join("tiny_cnn.safetensors"), None, &Device::Cpu).unwrap();
    let data = data::load(&DataSpec::new(&dir)).unwrap();
    assert_eq!(data.len(), 60);
    let norm = setup::normalization(&net, Some(&data)).unwrap();
    let reference = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    Setup { net, data, norm, reference }
}

fn run(s: &Setup, cfg: &SweepConfig) -> SweepResult {
    let (p, stop) = quiet();
    sweep::run(&s.net, &s.data, &s.norm, cfg, Ctrl { progress: &p, stop: &stop }, &|_| {}).unwrap()
}

fn config(scope: Scope, steps: usize, filters: &[FilterKind]) -> SweepConfig {
    let options = SweepOptions { steps, ..SweepOptions::default() };
    SweepConfig { options, filters: filters.to_vec(), ..SweepConfig::new(scope, AttackConfig::fgsm(0.3)) }
}

fn close(a: f64, b: &Value, what: &str) {
    let b = b.as_f64().unwrap_or_else(|| panic!("{what}: reference is {b}"));
    assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{what}: {a} vs {b}");
}

fn close_all(a: &[f64], b: &Value, what: &str) {
    let b = b.as_array().unwrap();
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        close(*x, y, &format!("{what}[{i}]"));
    }
}

fn ints(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

fn compare(ours: &SweepResult, reference: &Value, what: &str) {
    let b = &reference["baseline"];
    assert_eq!(ours.baseline.samples, b["samples"].as_u64().unwrap() as usize);
    assert_eq!(ours.baseline.clean_correct, b["clean_correct"].as_u64().unwrap() as usize, "{what} baseline clean");
    assert_eq!(ours.baseline.adv_correct, b["adv_correct"].as_u64().unwrap() as usize, "{what} baseline adv");
    let records = reference["records"].as_array().unwrap();
    assert_eq!(ours.records.len(), records.len(), "{what}: records");
    for (r, x) in ours.records.iter().zip(records) {
        let w = format!("{what} {} {}", r.layer, r.filter);
        assert_eq!(r.layer, x["layer"].as_str().unwrap(), "{w}");
        assert_eq!(r.filter.name(), x["filter"].as_str().unwrap(), "{w}");
        close_all(&r.alphas, &x["alphas"], &format!("{w} alphas"));
        close(r.width, &x["width"], &format!("{w} width"));
        assert_eq!(r.n, x["n"].as_u64().unwrap() as usize, "{w} n");
        assert_eq!(r.removed, ints(&x["removed"]), "{w} removed");
        assert_eq!(r.clean_correct, ints(&x["clean_correct"]), "{w} clean_correct");
        assert_eq!(r.adv_correct, ints(&x["adv_correct"]), "{w} adv_correct");
        close_all(&r.clean_accuracy, &x["clean_accuracy"], &format!("{w} clean_accuracy"));
        close_all(&r.adv_accuracy, &x["adv_accuracy"], &format!("{w} adv_accuracy"));
        close_all(&r.rho, &x["rho"], &format!("{w} rho"));
        close(r.s_clean.unwrap(), &x["s_clean"], &format!("{w} s_clean"));
        close(r.s_adv.unwrap(), &x["s_adv"], &format!("{w} s_adv"));
        close(r.s_diff.unwrap(), &x["s_diff"], &format!("{w} s_diff"));
        let names = |v: &[fragility_explorer::engine::analysis::scores::Class]| {
            v.iter().map(|c| c.name().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(names(&r.step_class_clean), strings(&x["step_class_clean"]), "{w} step_class_clean");
        assert_eq!(names(&r.step_class_adv), strings(&x["step_class_adv"]), "{w} step_class_adv");
    }
}

#[test]
fn local_sweep_scores_and_classes_match_the_reference() {
    let s = setup();
    let ours = run(&s, &config(Scope::Local, 9, &FilterKind::ALL));
    compare(&ours, &s.reference["local"], "local");
    let classes = s.reference["local"]["layer_classes"].as_array().unwrap();
    assert_eq!(ours.layer_classes.len(), classes.len());
    for (c, x) in ours.layer_classes.iter().zip(classes) {
        assert_eq!(c.layer, x["layer"].as_str().unwrap());
        close(c.mean_s_adv, &x["mean_s_adv"], &format!("mean S_adv {}", c.layer));
        assert_eq!(c.class.name(), x["class"].as_str().unwrap());
    }
    // Per-weight classes from the h3 records, one letter per weight.
    let mut masker = Masker::new(&s.net);
    for wc in s.reference["weight_classes"].as_array().unwrap() {
        let layer = wc["layer"].as_str().unwrap();
        let values = masker.values(&FilterSet::layer(&s.net, layer, false).unwrap()).unwrap();
        let rec = ours.record(layer, FilterKind::H3).unwrap();
        for (view, adversarial) in [("clean", false), ("adv", true)] {
            let letters: String =
                rec.weight_classes(&values, adversarial).unwrap().iter().map(|c| &c.name()[..1]).collect();
            assert_eq!(letters, wc[view].as_str().unwrap(), "{layer} {view} weight classes");
        }
    }
}

#[test]
fn global_sweep_matches_the_reference() {
    let s = setup();
    let ours = run(&s, &config(Scope::Global, 9, &FilterKind::ALL));
    compare(&ours, &s.reference["global"], "global");
    assert_eq!(ours.outside_range, Some(s.reference["global"]["outside_range"].as_u64().unwrap() as usize));
}

#[test]
fn transfer_and_bias_sweeps_match_the_reference() {
    let s = setup();
    let mut cfg =
        SweepConfig { layers: vec!["features.4".into()], ..config(Scope::Local, 5, &[FilterKind::H1, FilterKind::H3]) };
    cfg.options.transfer = true;
    compare(&run(&s, &cfg), &s.reference["transfer"], "transfer");
    let mut cfg = SweepConfig { layers: vec!["classifier.0".into()], ..config(Scope::Local, 5, &[FilterKind::H1]) };
    cfg.options.include_biases = true;
    compare(&run(&s, &cfg), &s.reference["biases"], "biases");
}

#[test]
fn nodal_dropout_and_targeting_match_the_reference() {
    let s = setup();
    let (p, stop) = quiet();
    let cfg = DropoutConfig { layer: None, attack: AttackConfig::fgsm(0.3), bn: Default::default(), batch: 100 };
    let ours = dropout::run(&s.net, &s.data, &s.norm, &cfg, Ctrl { progress: &p, stop: &stop }).unwrap();
    let x = &s.reference["dropout"];
    assert_eq!(ours.layer, x["layer"].as_str().unwrap());
    assert_eq!(ours.baseline_correct, x["baseline_correct"].as_u64().unwrap() as usize);
    assert_eq!(ours.correct_per_kernel, ints(&x["correct_per_kernel"]));
    close_all(&ours.accuracy_per_kernel, &x["accuracy_per_kernel"], "A_k");
    close(ours.mean, &x["mean"], "mean");
    assert_eq!(ours.fragile, ints(&x["fragile"]));
    assert_eq!(ours.null, ints(&x["null"]));
    close_all(&ours.d_per_kernel, &x["d_per_kernel"], "d_k");
    close(ours.d_fragile.unwrap(), &x["d_fragile"], "d_F");
    close(ours.d_other.unwrap(), &x["d_other"], "d_N");
    assert_eq!(ours.targeted, x["targeted"].as_bool().unwrap());
}
