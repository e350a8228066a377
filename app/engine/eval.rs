//! Clean and adversarial accuracy over a dataset, batch by batch.

use candle_core::{D, Tensor};
use serde::{Deserialize, Serialize};

use crate::engine::attack::{AttackConfig, AttackStats, attack_until_stopped, checks};
use crate::engine::card::Normalize;
use crate::engine::data::Dataset;
use crate::engine::error::{EngineError, Result};
use crate::engine::model::{BnMode, Network};
use crate::engine::progress::Ctrl;

/// Images per batch of every evaluation: eval, sweeps, nodal dropout, the app.
pub const DEFAULT_BATCH: usize = 100;
/// Analyses evaluate the first 1,000 test images unless told otherwise.
pub const DEFAULT_EVAL_IMAGES: usize = 1000;

pub(crate) fn default_batch() -> usize {
    DEFAULT_BATCH
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default)]
    pub bn: BnMode,
    /// No attack: clean accuracy only.
    #[serde(default)]
    pub attack: Option<AttackConfig>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { batch: default_batch(), bn: BnMode::Running, attack: None }
    }
}

impl EvalConfig {
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(EngineError::config("the batch size must be at least 1"));
        }
        if self.bn == BnMode::Train {
            return Err(EngineError::config(
                "evaluation never updates batch-norm statistics; use `running` or `batch`",
            ));
        }
        self.attack.as_ref().map_or(Ok(()), AttackConfig::validate)
    }
}

/// What happened to one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub label: u32,
    pub clean_pred: u32,
    /// Softmax probability of the clean prediction.
    pub clean_conf: f32,
    pub adv_pred: Option<u32>,
    pub adv_conf: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub n: usize,
    pub correct_clean: usize,
    pub correct_adversarial: Option<usize>,
    pub clean_accuracy: f64,
    pub adversarial_accuracy: Option<f64>,
    /// Saturation, zero gradients and ensemble stages (attacked runs only).
    pub stats: AttackStats,
    /// Whether the network gave different outputs for the same input twice (attacked runs
    /// only): a randomised defence that fools gradient attacks.
    pub randomized: bool,
    pub outcomes: Vec<Outcome>,
}

/// Predicted class (first maximum, as torch.argmax) and its softmax probability.
pub fn predictions(logits: &Tensor) -> Result<Vec<(u32, f32)>> {
    let pred: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    let probs: Vec<Vec<f32>> = candle_nn::ops::softmax_last_dim(logits)?.to_vec2()?;
    Ok(pred.into_iter().zip(probs).map(|(p, row)| (p, row[p as usize])).collect())
}

/// Evaluates `net` on every sample of `data`, attacking each batch if configured.
pub fn evaluate(net: &Network, data: &Dataset, norm: &Normalize, cfg: &EvalConfig, ctrl: Ctrl) -> Result<EvalReport> {
    cfg.validate()?;
    net.check_finite()?;
    let n = data.len();
    let mut outcomes = Vec::with_capacity(n);
    let mut stats = AttackStats::default();
    let mut randomized = false;
    ctrl.progress.start("evaluating", n);
    let mut start = 0;
    while start < n {
        ctrl.check()?;
        let end = (start + cfg.batch).min(n);
        let (x, _) = data.batch(start..end, norm, &net.device)?;
        let labels = &data.labels[start..end];
        let (clean_logits, adv) = match &cfg.attack {
            None => (net.logits(&x, cfg.bn)?, None),
            Some(a) => {
                if start == 0 {
                    randomized = checks::outputs_vary(net, &x, cfg.bn)?;
                }
                let out = attack_until_stopped(net, &x, labels, norm, cfg.bn, a, ctrl.stop)?;
                stats.add(&out.stats);
                let adv_logits = net.logits(&out.x_adv, cfg.bn)?;
                (out.clean_logits, Some(predictions(&adv_logits)?))
            }
        };
        let clean = predictions(&clean_logits)?;
        for (i, &(p, c)) in clean.iter().enumerate() {
            let (adv_pred, adv_conf) = adv.as_ref().map(|a| a[i]).unzip();
            outcomes.push(Outcome { label: labels[i], clean_pred: p, clean_conf: c, adv_pred, adv_conf });
        }
        ctrl.progress.advance(end - start);
        start = end;
    }
    let correct_clean = outcomes.iter().filter(|o| o.clean_pred == o.label).count();
    let correct_adversarial =
        cfg.attack.as_ref().map(|_| outcomes.iter().filter(|o| o.adv_pred == Some(o.label)).count());
    Ok(EvalReport {
        n,
        correct_clean,
        correct_adversarial,
        clean_accuracy: correct_clean as f64 / n.max(1) as f64,
        adversarial_accuracy: correct_adversarial.map(|c| c as f64 / n.max(1) as f64),
        stats,
        randomized,
        outcomes,
    })
}
