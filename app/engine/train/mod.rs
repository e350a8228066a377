//! Training (METHOD.md section 8): Adam on cross-entropy, seeded data order, checkpoints
//! every k epochs with their optimiser state, resumable.

pub mod adam;

use std::path::{Path, PathBuf};

use candle_core::{Tensor, Var};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use adam::{Adam, AdamConfig};

use crate::engine::attack::AttackConfig;
use crate::engine::card::{ModelCard, Normalize, TrainingInfo};
use crate::engine::checkpoint;
use crate::engine::data::Dataset;
use crate::engine::error::{EngineError, Result};
use crate::engine::eval::{EvalConfig, evaluate};
use crate::engine::model::{BnMode, ForwardCtx, Network};
use crate::engine::progress::Ctrl;

/// The trainable variables of a network (weights, biases, batch-norm affine parameters),
/// named by their state_dict keys, in module order.
pub fn trainable_vars(net: &Network) -> Vec<(String, Var)> {
    net.params.trainable().map(|p| (p.key.clone(), p.var.clone())).collect()
}

/// One optimisation step on a batch: forward in training mode (batch statistics, running
/// statistics updated, dropout drawn from `rng`), mean cross-entropy, backward, Adam.
pub fn train_step(net: &Network, opt: &mut Adam, x: &Tensor, y: &Tensor, rng: &mut ChaCha8Rng) -> Result<f32> {
    let mut ctx = ForwardCtx { bn: BnMode::Train, dropout_rng: Some(rng), ..ForwardCtx::default() };
    let logits = net.forward(x, &mut ctx)?;
    let loss = candle_nn::loss::cross_entropy(&logits, y)?;
    let grads = loss.backward()?;
    opt.step(&grads)?;
    Ok(loss.to_scalar::<f32>()?)
}

/// Epochs between checkpoints (and between re-characterisations of the selective arm).
pub const DEFAULT_EVERY: usize = 1;

/// Training images per optimisation step.
pub const DEFAULT_BATCH: usize = 100;

fn default_batch() -> usize {
    DEFAULT_BATCH
}
fn default_lr() -> f64 {
    adam::DEFAULT_LR
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The epoch to stop after (counting from the start of training, not of this run).
    pub epochs: usize,
    /// Save a checkpoint every `every` epochs (and after the last).
    pub every: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Evaluate on the test set after each epoch with this attack (None: clean only).
    #[serde(default)]
    pub test_attack: Option<AttackConfig>,
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.every == 0 || self.batch == 0 {
            return Err(EngineError::config("epochs, the checkpoint interval and the batch size must be at least 1"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(EngineError::config(format!("the learning rate must be > 0, found {}", self.lr)));
        }
        self.test_attack.as_ref().map_or(Ok(()), AttackConfig::validate)
    }
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_clean_accuracy: Option<f64>,
    pub test_adv_accuracy: Option<f64>,
    /// Fraction of filterable weights frozen (selective training), else 0.
    #[serde(default)]
    pub frozen_fraction: f64,
}

/// The sample order of an epoch: a permutation seeded by (seed, epoch), so a resumed run
/// and a control arm see exactly the same batches.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    order
}

/// A network being trained with its optimiser.
pub struct Trainer<'a> {
    pub net: &'a Network,
    pub opt: Adam,
    pub epoch: usize,
    pub cfg: TrainConfig,
}

impl<'a> Trainer<'a> {
    pub fn new(net: &'a Network, cfg: TrainConfig) -> Result<Self> {
        cfg.validate()?;
        let epoch = net.card.training.as_ref().map_or(0, |t| t.epoch);
        let opt = Adam::new(trainable_vars(net), AdamConfig { lr: cfg.lr, ..AdamConfig::default() })?;
        Ok(Self { net, opt, epoch, cfg })
    }

    /// Continues from a checkpoint's saved optimiser state, if it has one.
    pub fn resume_optimiser(&mut self, checkpoint_path: &Path) -> Result<bool> {
        let path = optimiser_path(checkpoint_path);
        if !path.is_file() {
            return Ok(false);
        }
        let state = checkpoint::load(&path, &self.net.device)?;
        self.opt.load_state(&state).map_err(|e| EngineError::checkpoint(&path, e.to_string()))?;
        Ok(true)
    }

    /// Trains one epoch over `data` in the seeded order; returns (mean loss, accuracy).
    pub fn epoch(&mut self, data: &Dataset, norm: &Normalize, ctrl: Ctrl) -> Result<(f64, f64)> {
        let next = self.epoch + 1;
        let order = epoch_order(data.len(), self.cfg.seed, next);
        let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed.wrapping_add(next as u64));
        let (mut loss_sum, mut correct) = (0f64, 0usize);
        ctrl.progress.start(&format!("epoch {next}"), data.len());
        for chunk in order.chunks(self.cfg.batch) {
            ctrl.check()?;
            let batch = data.select(chunk);
            let (x, y) = batch.batch(0..chunk.len(), norm, &self.net.device)?;
            let mut ctx = ForwardCtx { bn: BnMode::Train, dropout_rng: Some(&mut rng), ..ForwardCtx::default() };
            let logits = self.net.forward(&x, &mut ctx)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            let grads = loss.backward()?;
            self.opt.step(&grads)?;
            let pred: Vec<u32> = logits.argmax(1)?.to_vec1()?;
            correct += pred.iter().zip(&batch.labels).filter(|(p, l)| p == l).count();
            loss_sum += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            ctrl.progress.advance(chunk.len());
        }
        self.epoch = next;
        Ok((loss_sum / data.len() as f64, correct as f64 / data.len() as f64))
    }

    /// Test accuracies after an epoch.
    pub fn test(&self, test: &Dataset, norm: &Normalize, ctrl: Ctrl) -> Result<(f64, Option<f64>)> {
        let cfg = EvalConfig { batch: 200, bn: BnMode::Running, attack: self.cfg.test_attack.clone() };
        let r = evaluate(self.net, test, norm, &cfg, ctrl)?;
        Ok((r.clean_accuracy, r.adversarial_accuracy))
    }

    /// Saves optimiser state, card (with the epoch) and weights as `checkpoint-epoch-NNN`.
    /// The weights come last, so that a run killed while saving never leaves a checkpoint
    /// without its card (it would not open) or its optimiser state (a resume would differ).
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io("create", dir, e))?;
        let path = dir.join(format!("checkpoint-epoch-{:03}.safetensors", self.epoch));
        let mut card: ModelCard = self.net.card.clone();
        card.training = Some(TrainingInfo { epoch: self.epoch, seed: Some(self.cfg.seed), note: None });
        let state = self.opt.state()?;
        checkpoint::save_safetensors(&optimiser_path(&path), state.iter().map(|(k, t)| (k.as_str(), t)))?;
        card.save(&ModelCard::beside(&path))?;
        checkpoint::save_safetensors(&path, self.net.tensors())?;
        Ok(path)
    }
}

/// Where a checkpoint's optimiser state lives: `name.optim.safetensors`.
pub fn optimiser_path(checkpoint: &Path) -> PathBuf {
    let stem = checkpoint.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    checkpoint.with_file_name(format!("{stem}.optim.safetensors"))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainResult {
    pub config: TrainConfig,
    pub start_epoch: usize,
    pub logs: Vec<EpochLog>,
    pub checkpoints: Vec<PathBuf>,
    pub cancelled: bool,
}

/// Trains up to `cfg.epochs`, checkpointing into `out`. Cancelling stops between batches;
/// the epochs finished (and their checkpoints) are kept.
pub fn train(
    trainer: &mut Trainer,
    data: &Dataset,
    test: Option<&Dataset>,
    norm: &Normalize,
    out: &Path,
    ctrl: Ctrl,
    on_epoch: &dyn Fn(&EpochLog),
) -> Result<TrainResult> {
    let start_epoch = trainer.epoch;
    let mut logs = Vec::new();
    let mut checkpoints = Vec::new();
    let mut cancelled = false;
    if trainer.epoch >= trainer.cfg.epochs {
        return Err(EngineError::config(format!(
            "the checkpoint is already at epoch {}; ask for more epochs than that",
            trainer.epoch
        )));
    }
    while trainer.epoch < trainer.cfg.epochs {
        let (loss, acc) = match trainer.epoch(data, norm, ctrl) {
            Ok(v) => v,
            Err(EngineError::Cancelled) => {
                cancelled = true;
                break;
            }
            Err(e) => return Err(e),
        };
        let (tc, ta) = match test {
            Some(t) => match trainer.test(t, norm, ctrl) {
                Ok((c, a)) => (Some(c), a),
                Err(EngineError::Cancelled) => (None, None),
                Err(e) => return Err(e),
            },
            None => (None, None),
        };
        let log = EpochLog {
            epoch: trainer.epoch,
            train_loss: loss,
            train_accuracy: acc,
            test_clean_accuracy: tc,
            test_adv_accuracy: ta,
            frozen_fraction: 0.0,
        };
        on_epoch(&log);
        logs.push(log);
        if trainer.epoch.is_multiple_of(trainer.cfg.every) || trainer.epoch == trainer.cfg.epochs {
            checkpoints.push(trainer.save(out)?);
        }
        if ctrl.stop.is_stopped() {
            cancelled = true;
            break;
        }
    }
    Ok(TrainResult { config: trainer.cfg.clone(), start_epoch, logs, checkpoints, cancelled })
}
