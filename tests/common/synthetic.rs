//! Small synthetic results of every analysis, shaped like the engine's, for figure tests.

use std::path::PathBuf;

use fragility_explorer::engine::analysis::dropout::{DropoutConfig, DropoutResult};
use fragility_explorer::engine::analysis::filter::FilterKind;
use fragility_explorer::engine::analysis::landscape::{CheckpointEntry, CombinedMap, LandscapeResult, LayerMaps};
use fragility_explorer::engine::analysis::scores::{Class, step_class};
use fragility_explorer::engine::analysis::selective::{Characterisation, Selection, SelectiveConfig, SelectiveResult};
use fragility_explorer::engine::analysis::sweep::{Baseline, LayerClass, Scope, SweepConfig, SweepRecord, SweepResult};
use fragility_explorer::engine::analysis::trajectory::{
    self, RunIdentity, TrajectoryConfig, TrajectoryEntry, TrajectoryResult,
};
use fragility_explorer::engine::attack::AttackConfig;
use fragility_explorer::engine::model::BnMode;
use fragility_explorer::engine::train::{EpochLog, TrainConfig, TrainResult};

pub const SAMPLES: usize = 200;
pub const STEPS: usize = 9;

fn attack() -> AttackConfig {
    AttackConfig { eps: 0.3, ..Default::default() }
}

fn baseline() -> Baseline {
    Baseline { samples: SAMPLES, clean_correct: 196, adv_correct: 120, clean_accuracy: 0.98, adv_accuracy: 0.6 }
}

/// A complete record whose accuracies fall as the filter removes more weights.
fn record(layer: &str, filter: FilterKind, seed: usize) -> SweepRecord {
    let b = baseline();
    let n = 288;
    let alphas: Vec<f64> = (0..STEPS).map(|i| -0.6 + 1.2 * i as f64 / (STEPS - 1) as f64).collect();
    let removed: Vec<usize> = (0..STEPS).map(|i| n * i / (STEPS - 1)).collect();
    let clean: Vec<usize> = (0..STEPS).map(|i| b.clean_correct - (i * i * (3 + seed)) % 170).collect();
    let adv: Vec<usize> = (0..STEPS).map(|i| (b.adv_correct + 7 * seed).saturating_sub(i * (11 + seed))).collect();
    let acc = |c: &Vec<usize>| c.iter().map(|&k| k as f64 / SAMPLES as f64).collect::<Vec<_>>();
    SweepRecord {
        layer: layer.into(),
        filter,
        alphas,
        width: if filter == FilterKind::H3 { 0.13 } else { 0.0 },
        n,
        rho: removed.iter().map(|&z| 1.0 - z as f64 / n as f64).collect(),
        removed,
        clean_accuracy: acc(&clean),
        adv_accuracy: acc(&adv),
        step_class_clean: clean.iter().map(|&c| step_class(c, b.clean_correct, 0.01)).collect(),
        step_class_adv: adv.iter().map(|&c| step_class(c, b.adv_correct, 0.01)).collect(),
        clean_correct: clean,
        adv_correct: adv,
        s_clean: Some(0.05 * seed as f64 - 0.04),
        s_adv: Some(-0.03 * seed as f64 + 0.02),
        s_diff: Some(-0.08 * seed as f64 + 0.06),
        reused: vec![false; STEPS],
        warnings: Vec::new(),
    }
}

/// Two layers, all four filters, with layer classes.
pub fn sweep() -> SweepResult {
    let mut records = Vec::new();
    for (l, layer) in ["features.0", "classifier.2"].into_iter().enumerate() {
        for (f, filter) in FilterKind::ALL.into_iter().enumerate() {
            records.push(record(layer, filter, l * 4 + f));
        }
    }
    SweepResult {
        config: SweepConfig::new(Scope::Local, attack()),
        baseline: baseline(),
        records,
        layer_classes: vec![
            LayerClass { layer: "classifier.2".into(), mean_s_adv: -0.12, class: Class::Fragile },
            LayerClass { layer: "features.0".into(), mean_s_adv: 0.01, class: Class::Robust },
        ],
        outside_range: None,
        cancelled: false,
    }
}

pub fn dropout() -> DropoutResult {
    let acc: Vec<f64> = (0..16).map(|k| 0.97 + 0.002 * ((k * 7) % 11) as f64).collect();
    let mean = acc.iter().sum::<f64>() / acc.len() as f64;
    let fragile: Vec<usize> = (0..16).filter(|&k| acc[k] < mean).collect();
    let null: Vec<usize> = (0..16).filter(|&k| acc[k] >= 0.985).collect();
    DropoutResult {
        layer: "features.0".into(),
        samples: SAMPLES,
        baseline_correct: 197,
        baseline_accuracy: 0.985,
        correct_per_kernel: acc.iter().map(|a| (a * SAMPLES as f64).round() as usize).collect(),
        accuracy_per_kernel: acc,
        mean,
        d_per_kernel: (0..16).map(|k| 0.1 + 0.03 * ((k * 5) % 7) as f64).collect(),
        d_fragile: Some(0.21),
        d_other: Some(0.17),
        targeted: true,
        fragile,
        null,
        config: DropoutConfig { layer: None, attack: attack(), bn: BnMode::Running, batch: 100 },
        cancelled: false,
    }
}

pub fn landscape() -> LandscapeResult {
    let epochs = [1, 2, 4, 8];
    let classes = [Class::Fragile, Class::Robust, Class::Antifragile];
    let grid = |f: &dyn Fn(usize, usize) -> f64| -> Vec<Vec<f64>> {
        (0..epochs.len()).map(|e| (0..STEPS).map(|s| f(e, s)).collect()).collect()
    };
    let clean = grid(&|e, s| 0.95 - 0.08 * s as f64 + 0.01 * e as f64);
    let adv = grid(&|e, s| 0.6 - 0.05 * s as f64 + 0.02 * e as f64);
    let class = |e: usize, s: usize| classes[(e + s) % 3];
    let class_grid = || (0..epochs.len()).map(|e| (0..STEPS).map(|s| class(e, s)).collect()).collect::<Vec<Vec<_>>>();
    let maps = FilterKind::PAPER
        .into_iter()
        .map(|filter| LayerMaps {
            layer: "features.0".into(),
            filter,
            clean_accuracy: clean.clone(),
            adv_accuracy: adv.clone(),
            class_clean: class_grid(),
            class_adv: class_grid(),
        })
        .collect();
    let influential: Vec<Vec<bool>> =
        (0..epochs.len()).map(|e| (0..STEPS).map(|s| (e + s) % 3 == 0).collect()).collect();
    LandscapeResult {
        checkpoints: epochs
            .iter()
            .map(|&e| CheckpointEntry { path: PathBuf::from(format!("epoch-{e}.safetensors")), epoch: e })
            .collect(),
        sweeps: vec![sweep()],
        maps,
        combined: vec![CombinedMap {
            layer: "features.0".into(),
            influential_clean: influential.clone(),
            influential_adv: influential,
        }],
        cancelled: false,
    }
}

fn logs(shift: f64) -> Vec<EpochLog> {
    (1..=6)
        .map(|e| EpochLog {
            epoch: e,
            train_loss: 1.0 / e as f64,
            train_accuracy: 0.9 + 0.015 * e as f64,
            test_clean_accuracy: Some(0.88 + 0.015 * e as f64),
            test_adv_accuracy: Some(0.3 + 0.04 * e as f64 + shift),
            frozen_fraction: if shift > 0.0 { 0.2 } else { 0.0 },
        })
        .collect()
}

fn train_config() -> TrainConfig {
    TrainConfig { epochs: 6, every: 1, seed: 0, batch: 100, lr: 1e-3, test_attack: Some(attack()) }
}

pub fn train() -> TrainResult {
    TrainResult { config: train_config(), start_epoch: 0, logs: logs(0.0), checkpoints: Vec::new(), cancelled: false }
}

pub fn selective() -> SelectiveResult {
    SelectiveResult {
        config: SelectiveConfig {
            train: train_config(),
            selection: Selection::PerWeight,
            sweep: SweepConfig::new(Scope::Local, attack()),
        },
        checkpoint: PathBuf::from("epoch-1.safetensors"),
        start_epoch: 1,
        regular: logs(0.0),
        selective: logs(0.03),
        characterisations: vec![Characterisation {
            epoch: 1,
            frozen_fraction: 0.2,
            frozen_per_layer: vec![("features.0".into(), 0.2)],
            sweep: sweep(),
        }],
        cancelled: false,
    }
}

/// Four checkpoints whose scores and fragile kernels shift from epoch to epoch.
pub fn trajectory() -> TrajectoryResult {
    let entries: Vec<TrajectoryEntry> = [1, 2, 4, 8]
        .into_iter()
        .enumerate()
        .map(|(i, epoch)| {
            let mut sweep = sweep();
            for (r, rec) in sweep.records.iter_mut().enumerate() {
                *rec = record(&rec.layer, rec.filter, r + i);
            }
            let mut global = sweep.clone();
            global.config.scope = Scope::Global;
            global.records = FilterKind::PAPER.iter().map(|&f| record("global", f, i)).collect();
            global.layer_classes.clear();
            let mut dropout = dropout();
            dropout.fragile.retain(|k| k % 4 != i);
            dropout.d_fragile = Some(0.2 - 0.01 * i as f64);
            TrajectoryEntry { path: PathBuf::from(format!("epoch-{epoch}.safetensors")), epoch, sweep, global, dropout }
        })
        .collect();
    let config = TrajectoryConfig::new(entries[0].sweep.config.clone(), entries[0].dropout.config.clone());
    let run = RunIdentity {
        model: "runs/cnn (sequential)".into(),
        parameters: 421_642,
        data: "MNIST test (200 images)".into(),
    };
    trajectory::summarise(config, run, entries, 0, false)
}
