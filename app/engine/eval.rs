//! Clean and adversarial accuracy over a dataset, batch by batch.

use candle_core::{D, Tensor};
use serde::{Deserialize, Serialize};

use crate::engine::attack::{AttackConfig, AttackStats, attack_until_stopped, checks};
use crate::engine::card::Normalize;
use crate::engine::data::Dataset;
use crate::engine::error::{EngineError, Result};
use crate::engine::model::{BnMode, Network};
use crate::engine::progress::{Ctrl, StopFlag};

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

/// One batch of an evaluation: per image, the clean and adversarial predictions (so whether
/// the attack fooled it), and what the attack saw. Every attack draws from its seed afresh in
/// each batch, so batches are independent: they can be kept, resumed, run on other machines
/// and put together into exactly the single pass (METHOD.md section 8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchEval {
    /// The batch's number: it holds images `index * batch ..`.
    pub index: usize,
    pub outcomes: Vec<Outcome>,
    #[serde(default)]
    pub stats: AttackStats,
    /// Whether the network gave two different outputs for this batch (checked on batch 0).
    #[serde(default)]
    pub randomized: bool,
}

/// How many batches an evaluation of `n` images takes.
pub fn batch_count(n: usize, batch: usize) -> usize {
    n.div_ceil(batch.max(1))
}

/// Evaluates batch `index` of `data`, attacking it if configured.
pub fn evaluate_batch(
    net: &Network,
    data: &Dataset,
    norm: &Normalize,
    cfg: &EvalConfig,
    index: usize,
    stop: &StopFlag,
) -> Result<BatchEval> {
    let start = index * cfg.batch;
    let end = (start + cfg.batch).min(data.len());
    if start >= end {
        return Err(EngineError::config(format!("batch {index} is past the {} images", data.len())));
    }
    let (x, _) = data.batch(start..end, norm, &net.device)?;
    let labels = &data.labels[start..end];
    let mut stats = AttackStats::default();
    let mut randomized = false;
    let (clean_logits, adv) = match &cfg.attack {
        None => (net.logits(&x, cfg.bn)?, None),
        Some(a) => {
            if index == 0 {
                randomized = checks::outputs_vary(net, &x, cfg.bn)?;
            }
            let out = attack_until_stopped(net, &x, labels, norm, cfg.bn, a, stop)?;
            let adv_logits = net.logits(&out.x_adv, cfg.bn)?;
            stats =
                AttackStats { single_step_gain: out.single_step_gain(net, cfg.bn, &adv_logits, labels)?, ..out.stats };
            (out.clean_logits, Some(predictions(&adv_logits)?))
        }
    };
    let outcomes = predictions(&clean_logits)?
        .into_iter()
        .enumerate()
        .map(|(i, (p, c))| {
            let (adv_pred, adv_conf) = adv.as_ref().map(|a| a[i]).unzip();
            Outcome { label: labels[i], clean_pred: p, clean_conf: c, adv_pred, adv_conf }
        })
        .collect();
    Ok(BatchEval { index, outcomes, stats, randomized })
}

/// Evaluates `net` on every sample of `data`, attacking each batch if configured.
pub fn evaluate(net: &Network, data: &Dataset, norm: &Normalize, cfg: &EvalConfig, ctrl: Ctrl) -> Result<EvalReport> {
    let batches = evaluate_batches(net, data, norm, cfg, Vec::new(), &|_| true, ctrl, &mut |_| Ok(()))?;
    assemble(data.len(), cfg, &batches)
}

/// Evaluates the batches `owned` selects that `kept` lacks, calling `done` with all batches so
/// far after each new one (to keep them), and returns them in order.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_batches(
    net: &Network,
    data: &Dataset,
    norm: &Normalize,
    cfg: &EvalConfig,
    mut kept: Vec<BatchEval>,
    owned: &dyn Fn(usize) -> bool,
    ctrl: Ctrl,
    done: &mut dyn FnMut(&[BatchEval]) -> Result<()>,
) -> Result<Vec<BatchEval>> {
    cfg.validate()?;
    net.check_finite()?;
    let count = batch_count(data.len(), cfg.batch);
    kept.retain(|b| b.index < count && owned(b.index));
    kept.sort_by_key(|b| b.index);
    kept.dedup_by_key(|b| b.index);
    let todo: Vec<usize> =
        (0..count).filter(|&i| owned(i) && kept.binary_search_by_key(&i, |b| b.index).is_err()).collect();
    let images = |i: usize| ((i + 1) * cfg.batch).min(data.len()) - i * cfg.batch;
    ctrl.progress.start("evaluating", todo.iter().map(|&i| images(i)).sum());
    for i in todo {
        ctrl.check()?;
        let b = evaluate_batch(net, data, norm, cfg, i, ctrl.stop)?;
        let at = kept.partition_point(|k| k.index < i);
        kept.insert(at, b);
        done(&kept)?;
        ctrl.progress.advance(images(i));
    }
    Ok(kept)
}

/// The report of an evaluation of `n` images from all its batches, each exactly once.
pub fn assemble(n: usize, cfg: &EvalConfig, batches: &[BatchEval]) -> Result<EvalReport> {
    let count = batch_count(n, cfg.batch);
    let mut outcomes = Vec::with_capacity(n);
    let mut stats = AttackStats::default();
    let mut randomized = false;
    for (i, b) in batches.iter().enumerate() {
        if b.index != i {
            let what = if b.index < i { "twice" } else { "missing" };
            return Err(EngineError::config(format!("batch {} of the evaluation is {what}", b.index.min(i))));
        }
        let expected = ((i + 1) * cfg.batch).min(n) - (i * cfg.batch).min(n);
        if b.outcomes.len() != expected || b.outcomes.iter().any(|o| o.adv_pred.is_some() != cfg.attack.is_some()) {
            return Err(EngineError::config(format!(
                "batch {i} holds {} outcomes of another evaluation: {expected} expected",
                b.outcomes.len()
            )));
        }
        outcomes.extend_from_slice(&b.outcomes);
        stats.add(&b.stats);
        randomized |= b.randomized;
    }
    if batches.len() != count {
        return Err(EngineError::config(format!(
            "batches {} to {} of the evaluation are missing",
            batches.len(),
            count.saturating_sub(1)
        )));
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
