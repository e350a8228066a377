//! Selective backpropagation against its control (METHOD.md section 8): from one checkpoint,
//! train two copies with the same seed and data order; the selective arm updates only the
//! weights characterised robust or antifragile on adversarial accuracy.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::filter::FilterKind;
use super::masks::{FilterSet, Masker};
use super::scores::Class;
use super::sweep::{self, Scope, SweepConfig, SweepResult};
use crate::engine::card::Normalize;
use crate::engine::data::Dataset;
use crate::engine::error::{EngineError, Result};
use crate::engine::model::Network;
use crate::engine::progress::Ctrl;
use crate::engine::train::{EpochLog, TrainConfig, Trainer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Freeze each weight characterised fragile (its nearest pulse step, METHOD.md section 6).
    #[default]
    PerWeight,
    /// Freeze whole layers characterised fragile (mean S_adv over h1, h2, h3 below -tau).
    PerLayer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectiveConfig {
    /// `epochs` is the epoch to stop after; `every` is the re-characterisation interval.
    pub train: TrainConfig,
    pub selection: Selection,
    /// The local sweep that characterises (its filters are set by the selection).
    pub sweep: SweepConfig,
}

/// A re-characterisation of the selective arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Characterisation {
    pub epoch: usize,
    pub frozen_fraction: f64,
    /// Per layer: fraction of its weights frozen.
    pub frozen_per_layer: Vec<(String, f64)>,
    pub sweep: SweepResult,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectiveResult {
    pub config: SelectiveConfig,
    pub checkpoint: PathBuf,
    pub start_epoch: usize,
    pub regular: Vec<EpochLog>,
    pub selective: Vec<EpochLog>,
    pub characterisations: Vec<Characterisation>,
    pub cancelled: bool,
}

/// Per filterable weight key, the 0/1 mask of weights allowed to train.
fn trainable_masks(net: &Network, result: &SweepResult, selection: Selection) -> Result<Vec<(String, Vec<f32>)>> {
    let mut masker = Masker::new(net);
    let mut out = Vec::new();
    for layer in net.params.filterable() {
        let key = format!("{}.weight", layer.name);
        let set = FilterSet { name: layer.name.clone(), keys: vec![key.clone()] };
        let values = masker.values(&set)?;
        let mask: Vec<f32> = match selection {
            Selection::PerWeight => {
                let rec = result
                    .record(&layer.name, FilterKind::H3)
                    .ok_or_else(|| EngineError::model(format!("no h3 sweep of `{}`", layer.name)))?;
                let classes = rec.weight_classes(&values, true).ok_or_else(|| EngineError::Cancelled)?;
                classes.iter().map(|c| if *c == Class::Fragile { 0.0 } else { 1.0 }).collect()
            }
            Selection::PerLayer => {
                let class = result
                    .layer_classes
                    .iter()
                    .find(|c| c.layer == layer.name)
                    .map(|c| c.class)
                    .ok_or(EngineError::Cancelled)?;
                vec![if class == Class::Fragile { 0.0 } else { 1.0 }; values.len()]
            }
        };
        out.push((key, mask));
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    checkpoint: &Path,
    train_data: &Dataset,
    test: &Dataset,
    char_data: &Dataset,
    norm: &Normalize,
    cfg: &SelectiveConfig,
    out: &Path,
    device: &Device,
    ctrl: Ctrl,
    on_epoch: &dyn Fn(&str, &EpochLog),
) -> Result<SelectiveResult> {
    cfg.train.validate()?;
    let mut sweep_cfg = cfg.sweep.clone();
    sweep_cfg.scope = Scope::Local;
    sweep_cfg.filters = match cfg.selection {
        Selection::PerWeight => vec![FilterKind::H3],
        Selection::PerLayer => FilterKind::PAPER.to_vec(),
    };
    let regular_net = Network::load(checkpoint, None, device)?;
    let selective_net = Network::load(checkpoint, None, device)?;
    let mut regular = Trainer::new(&regular_net, cfg.train.clone())?;
    let mut selective = Trainer::new(&selective_net, cfg.train.clone())?;
    regular.resume_optimiser(checkpoint)?;
    selective.resume_optimiser(checkpoint)?;
    let start_epoch = regular.epoch;
    if start_epoch >= cfg.train.epochs {
        return Err(EngineError::config(format!(
            "the checkpoint is at epoch {start_epoch}; ask for more epochs than that"
        )));
    }
    let mut result = SelectiveResult {
        config: cfg.clone(),
        checkpoint: checkpoint.to_path_buf(),
        start_epoch,
        regular: Vec::new(),
        selective: Vec::new(),
        characterisations: Vec::new(),
        cancelled: false,
    };
    let mut frozen_fraction = 0.0;
    let outcome: Result<()> = (|| {
        while selective.epoch < cfg.train.epochs {
            if (selective.epoch - start_epoch).is_multiple_of(cfg.train.every) {
                let sweep = sweep::run(&selective_net, char_data, norm, &sweep_cfg, ctrl, &|_| {})?;
                if sweep.cancelled {
                    return Err(EngineError::Cancelled);
                }
                let masks = trainable_masks(&selective_net, &sweep, cfg.selection)?;
                let (mut frozen, mut total) = (0usize, 0usize);
                let mut per_layer = Vec::new();
                for (key, mask) in &masks {
                    let f = mask.iter().filter(|m| **m == 0.0).count();
                    frozen += f;
                    total += mask.len();
                    per_layer.push((key.trim_end_matches(".weight").to_string(), f as f64 / mask.len() as f64));
                    let shape = selective_net.params.get(key).expect("filterable").var.shape().clone();
                    let t = Tensor::from_slice(mask, shape, device)?;
                    selective.opt.set_mask(key, Some(t))?;
                }
                frozen_fraction = frozen as f64 / total.max(1) as f64;
                result.characterisations.push(Characterisation {
                    epoch: selective.epoch,
                    frozen_fraction,
                    frozen_per_layer: per_layer,
                    sweep,
                });
            }
            for (name, trainer, logs) in
                [("regular", &mut regular, &mut result.regular), ("selective", &mut selective, &mut result.selective)]
            {
                let (loss, acc) = trainer.epoch(train_data, norm, ctrl)?;
                let (c, a) = trainer.test(test, norm, ctrl)?;
                let log = EpochLog {
                    epoch: trainer.epoch,
                    train_loss: loss,
                    train_accuracy: acc,
                    test_clean_accuracy: Some(c),
                    test_adv_accuracy: a,
                    frozen_fraction: if name == "selective" { frozen_fraction } else { 0.0 },
                };
                on_epoch(name, &log);
                logs.push(log);
            }
        }
        Ok(())
    })();
    match outcome {
        Ok(()) => {}
        Err(EngineError::Cancelled) => result.cancelled = true,
        Err(e) => return Err(e),
    }
    regular.save(&out.join("regular"))?;
    selective.save(&out.join("selective"))?;
    Ok(result)
}
