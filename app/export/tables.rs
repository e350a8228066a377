//! Results as JSON (with their full config) and CSV tables, written atomically.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::engine::analysis::dropout::DropoutResult;
use crate::engine::analysis::landscape::LandscapeResult;
use crate::engine::analysis::selective::SelectiveResult;
use crate::engine::analysis::sweep::SweepResult;
use crate::engine::analysis::trajectory::TrajectoryResult;
use crate::engine::fsutil::write_atomic;
use crate::engine::train::EpochLog;

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("serialising results")?;
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// A CSV table built in memory, then written in one atomic step.
pub struct Table(csv::Writer<Vec<u8>>);

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("bytes", &self.0.get_ref().len()).finish_non_exhaustive()
    }
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(header).expect("writing to memory");
        Self(w)
    }

    pub fn row<I: IntoIterator<Item = String>>(&mut self, cells: I) {
        self.0.write_record(cells).expect("writing to memory");
    }

    pub fn write(self, path: &Path) -> Result<()> {
        let bytes = self.0.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        write_atomic(path, &bytes)?;
        Ok(())
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// `sweep.json`, `sweep.csv` (one row per step), `scores.csv` and `layers.csv`.
pub fn write_sweep(dir: &Path, r: &SweepResult) -> Result<()> {
    write_json(&dir.join("sweep.json"), r)?;
    let mut steps = Table::new(&[
        "layer",
        "filter",
        "step",
        "alpha",
        "removed",
        "n",
        "rho",
        "clean_correct",
        "adv_correct",
        "clean_accuracy",
        "adv_accuracy",
        "class_clean",
        "class_adv",
    ]);
    let mut scores = Table::new(&["layer", "filter", "s_clean", "s_adv", "s_diff", "complete"]);
    for rec in &r.records {
        for i in 0..rec.clean_correct.len() {
            steps.row([
                rec.layer.clone(),
                rec.filter.to_string(),
                i.to_string(),
                rec.alphas[i].to_string(),
                rec.removed[i].to_string(),
                rec.n.to_string(),
                rec.rho[i].to_string(),
                rec.clean_correct[i].to_string(),
                rec.adv_correct[i].to_string(),
                rec.clean_accuracy[i].to_string(),
                rec.adv_accuracy[i].to_string(),
                rec.step_class_clean[i].name().to_string(),
                rec.step_class_adv[i].name().to_string(),
            ]);
        }
        scores.row([
            rec.layer.clone(),
            rec.filter.to_string(),
            opt(rec.s_clean),
            opt(rec.s_adv),
            opt(rec.s_diff),
            rec.complete().to_string(),
        ]);
    }
    steps.write(&dir.join("sweep.csv"))?;
    scores.write(&dir.join("scores.csv"))?;
    let mut layers = Table::new(&["rank", "layer", "mean_s_adv", "class"]);
    for (i, c) in r.layer_classes.iter().enumerate() {
        layers.row([(i + 1).to_string(), c.layer.clone(), c.mean_s_adv.to_string(), c.class.name().to_string()]);
    }
    layers.write(&dir.join("layers.csv"))
}

/// `dropout.json` and `dropout.csv` (one row per kernel).
pub fn write_dropout(dir: &Path, r: &DropoutResult) -> Result<()> {
    write_json(&dir.join("dropout.json"), r)?;
    let mut t = Table::new(&["kernel", "correct", "accuracy", "fragile", "null", "d"]);
    for k in 0..r.correct_per_kernel.len() {
        t.row([
            k.to_string(),
            r.correct_per_kernel[k].to_string(),
            r.accuracy_per_kernel[k].to_string(),
            r.fragile.contains(&k).to_string(),
            r.null.contains(&k).to_string(),
            r.d_per_kernel[k].to_string(),
        ]);
    }
    t.write(&dir.join("dropout.csv"))
}

pub fn epochs_table(arms: &[(&str, &[EpochLog])]) -> Table {
    let mut t = Table::new(&[
        "arm",
        "epoch",
        "train_loss",
        "train_accuracy",
        "test_clean_accuracy",
        "test_adv_accuracy",
        "frozen_fraction",
    ]);
    for (arm, logs) in arms {
        for l in *logs {
            t.row([
                arm.to_string(),
                l.epoch.to_string(),
                l.train_loss.to_string(),
                l.train_accuracy.to_string(),
                opt(l.test_clean_accuracy),
                opt(l.test_adv_accuracy),
                l.frozen_fraction.to_string(),
            ]);
        }
    }
    t
}

/// `landscape.json` and `landscape.csv` (one row per layer, filter, epoch and step).
pub fn write_landscape(dir: &Path, r: &LandscapeResult) -> Result<()> {
    write_json(&dir.join("landscape.json"), r)?;
    let mut t =
        Table::new(&["layer", "filter", "epoch", "step", "clean_accuracy", "adv_accuracy", "class_clean", "class_adv"]);
    for m in &r.maps {
        for (e, ck) in r.checkpoints.iter().enumerate().take(m.clean_accuracy.len()) {
            for s in 0..m.clean_accuracy[e].len() {
                t.row([
                    m.layer.clone(),
                    m.filter.to_string(),
                    ck.epoch.to_string(),
                    s.to_string(),
                    m.clean_accuracy[e][s].to_string(),
                    m.adv_accuracy[e][s].to_string(),
                    m.class_clean[e][s].name().to_string(),
                    m.class_adv[e][s].name().to_string(),
                ]);
            }
        }
    }
    t.write(&dir.join("landscape.csv"))
}

/// `trajectory.json`, `trajectory-scores.csv` (one row per epoch, layer and filter) and
/// `trajectory-kernels.csv` (one row per epoch and kernel of the nodal dropout).
pub fn write_trajectory(dir: &Path, r: &TrajectoryResult) -> Result<()> {
    write_json(&dir.join(crate::engine::analysis::trajectory::RESULT_FILE), r)?;
    let mut scores = Table::new(&["epoch", "layer", "filter", "s_clean", "s_adv", "s_diff"]);
    for s in &r.scores {
        for (i, epoch) in r.epochs.iter().enumerate() {
            scores.row([
                epoch.to_string(),
                s.layer.clone(),
                s.filter.to_string(),
                opt(s.s_clean[i]),
                opt(s.s_adv[i]),
                opt(s.s_diff[i]),
            ]);
        }
    }
    scores.write(&dir.join("trajectory-scores.csv"))?;
    let mut kernels =
        Table::new(&["epoch", "kernel", "correct", "accuracy", "fragile", "null", "d", "consistently_fragile"]);
    for c in &r.checkpoints {
        let d = &c.dropout;
        for k in 0..d.correct_per_kernel.len() {
            kernels.row([
                c.epoch.to_string(),
                k.to_string(),
                d.correct_per_kernel[k].to_string(),
                d.accuracy_per_kernel[k].to_string(),
                d.fragile.contains(&k).to_string(),
                d.null.contains(&k).to_string(),
                d.d_per_kernel[k].to_string(),
                r.consistently_fragile.contains(&k).to_string(),
            ]);
        }
    }
    kernels.write(&dir.join("trajectory-kernels.csv"))
}

/// `selective.json` and `selective.csv` (both arms, epoch by epoch).
pub fn write_selective(dir: &Path, r: &SelectiveResult) -> Result<()> {
    write_json(&dir.join("selective.json"), r)?;
    epochs_table(&[("regular", &r.regular), ("selective", &r.selective)]).write(&dir.join("selective.csv"))
}
