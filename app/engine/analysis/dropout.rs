//! Nodal dropout and adversarial targeting (METHOD.md section 7).

use candle_core::{D, DType, Tensor};
use serde::{Deserialize, Serialize};

use super::evalset::EvalSet;
use super::masks::{FilterSet, Masker, unknown_layer};
use crate::engine::attack::{AttackConfig, attack_until_stopped};
use crate::engine::card::Normalize;
use crate::engine::data::Dataset;
use crate::engine::error::{EngineError, Result};
use crate::engine::model::{BnMode, ForwardCtx, LayerKind, Network, Tap};
use crate::engine::progress::Ctrl;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropoutConfig {
    /// The convolution layer; None means the first.
    #[serde(default)]
    pub layer: Option<String>,
    /// The FGSM attack whose effect on each kernel is measured.
    pub attack: AttackConfig,
    #[serde(default)]
    pub bn: BnMode,
    pub batch: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropoutResult {
    pub layer: String,
    pub samples: usize,
    pub baseline_correct: usize,
    pub baseline_accuracy: f64,
    /// Clean accuracy with output channel k's kernel and bias zeroed.
    pub accuracy_per_kernel: Vec<f64>,
    pub correct_per_kernel: Vec<usize>,
    pub mean: f64,
    /// Kernels whose removal costs more than the average: A_k < mean.
    pub fragile: Vec<usize>,
    /// Kernels whose removal costs nothing: A_k >= baseline.
    pub null: Vec<usize>,
    /// Mean |z_k(x_adv) - z_k(x)| over samples and positions of the raw channel output.
    pub d_per_kernel: Vec<f64>,
    /// Mean d_k over fragile kernels (None when there are none).
    pub d_fragile: Option<f64>,
    /// Mean d_k over the other kernels, null ones included.
    pub d_other: Option<f64>,
    /// The attack targets fragile kernels: d_F > d_N.
    pub targeted: bool,
    pub config: DropoutConfig,
    pub cancelled: bool,
}

impl DropoutResult {
    /// A result read back from a file: one accuracy, count and shift per kernel, and every
    /// kernel it names is one of them. Says what disagrees.
    pub fn check_consistent(&self) -> std::result::Result<(), String> {
        let n = self.accuracy_per_kernel.len();
        for (name, len) in
            [("correct_per_kernel", self.correct_per_kernel.len()), ("d_per_kernel", self.d_per_kernel.len())]
        {
            if len != n {
                return Err(format!("`{name}` has {len} values but `accuracy_per_kernel` has {n}"));
            }
        }
        match self.fragile.iter().chain(&self.null).find(|&&k| k >= n) {
            Some(k) => Err(format!("kernel {k} is named, but there are {n} kernels")),
            None => Ok(()),
        }
    }
}

fn conv_layer(net: &Network, layer: Option<&str>) -> Result<String> {
    match layer {
        None => net
            .params
            .layers()
            .iter()
            .find(|l| l.kind == LayerKind::Conv2d)
            .map(|l| l.name.clone())
            .ok_or_else(|| EngineError::config("the network has no convolution layer for nodal dropout")),
        Some(name) => {
            let info = net.params.layer(name).ok_or_else(|| unknown_layer(net, name))?;
            if info.kind != LayerKind::Conv2d {
                return Err(EngineError::config(format!(
                    "nodal dropout needs a convolution layer; `{name}` is {}",
                    info.kind.name()
                )));
            }
            Ok(name.to_string())
        }
    }
}

fn mean_of(values: &[f64], idx: &[usize]) -> Option<f64> {
    (!idx.is_empty()).then(|| idx.iter().map(|&k| values[k]).sum::<f64>() / idx.len() as f64)
}

/// Per-channel sums of |tap(x_adv) - tap(x)| over a batch and positions, and how many
/// (sample, position) pairs each sum covers.
fn channel_shift(net: &Network, layer: &str, x: &Tensor, x_adv: &Tensor, bn: BnMode) -> Result<(Vec<f64>, usize)> {
    let tapped = |input: &Tensor| -> Result<Tensor> {
        let mut ctx =
            ForwardCtx { bn, tap: Some(Tap { layer: layer.to_string(), output: None }), ..ForwardCtx::default() };
        net.forward(input, &mut ctx)?;
        ctx.tap.and_then(|t| t.output).ok_or_else(|| EngineError::model(format!("layer `{layer}` was not reached")))
    };
    let diff = (tapped(x_adv)? - tapped(x)?)?.abs()?.to_dtype(DType::F64)?;
    let per_channel = diff.transpose(0, 1)?.flatten_from(1)?;
    let positions = per_channel.dim(1)?;
    Ok((per_channel.sum(D::Minus1)?.to_vec1()?, positions))
}

pub fn run(net: &Network, data: &Dataset, norm: &Normalize, cfg: &DropoutConfig, ctrl: Ctrl) -> Result<DropoutResult> {
    cfg.attack.validate()?;
    let layer = conv_layer(net, cfg.layer.as_deref())?;
    let set = EvalSet::new(net, data, norm, cfg.batch.max(1))?;
    let fs = FilterSet {
        name: layer.clone(),
        keys: [format!("{layer}.weight"), format!("{layer}.bias")]
            .into_iter()
            .filter(|k| net.params.get(k).is_some())
            .collect(),
    };
    let kernels = net.params.layer(&layer).expect("checked").shape[0];
    ctrl.progress.start("nodal dropout", kernels + 1);
    let baseline = set.clean_count(net, cfg.bn, ctrl)?;
    ctrl.progress.advance(1);

    // Targeting first: it needs the unfiltered network.
    let mut sums = vec![0f64; kernels];
    let mut positions = 0usize;
    for (x, labels) in &set.batches {
        ctrl.check()?;
        let adv = attack_until_stopped(net, x, labels, norm, cfg.bn, &cfg.attack, ctrl.stop)?.x_adv;
        let (shift, covered) = channel_shift(net, &layer, x, &adv, cfg.bn)?;
        for (s, v) in sums.iter_mut().zip(shift) {
            *s += v;
        }
        positions += covered;
    }
    let d_per_kernel: Vec<f64> = sums.iter().map(|s| s / positions as f64).collect();

    let mut masker = Masker::new(net);
    let values = masker.values(&fs)?;
    let per_kernel_weights = net.params.layer(&layer).expect("checked").shape[1..].iter().product::<usize>();
    let weight_len = kernels * per_kernel_weights;
    let mut correct_per_kernel = Vec::with_capacity(kernels);
    let mut cancelled = false;
    for k in 0..kernels {
        let mut mask = vec![1f32; values.len()];
        mask[k * per_kernel_weights..(k + 1) * per_kernel_weights].fill(0.0);
        if values.len() > weight_len {
            mask[weight_len + k] = 0.0;
        }
        masker.apply(&fs, &mask)?;
        match set.clean_count(net, cfg.bn, ctrl) {
            Ok(c) => correct_per_kernel.push(c),
            Err(EngineError::Cancelled) => {
                cancelled = true;
                break;
            }
            Err(e) => return Err(e),
        }
        ctrl.progress.advance(1);
    }
    masker.restore()?;
    let n = set.n as f64;
    let accuracy_per_kernel: Vec<f64> = correct_per_kernel.iter().map(|&c| c as f64 / n).collect();
    let mean = accuracy_per_kernel.iter().sum::<f64>() / accuracy_per_kernel.len().max(1) as f64;
    let fragile: Vec<usize> = (0..accuracy_per_kernel.len()).filter(|&k| accuracy_per_kernel[k] < mean).collect();
    let null: Vec<usize> = (0..correct_per_kernel.len()).filter(|&k| correct_per_kernel[k] >= baseline).collect();
    let others: Vec<usize> = (0..kernels).filter(|k| !fragile.contains(k)).collect();
    let (d_fragile, d_other) =
        if cancelled { (None, None) } else { (mean_of(&d_per_kernel, &fragile), mean_of(&d_per_kernel, &others)) };
    Ok(DropoutResult {
        layer,
        samples: set.n,
        baseline_correct: baseline,
        baseline_accuracy: baseline as f64 / n,
        accuracy_per_kernel,
        correct_per_kernel,
        mean,
        fragile,
        null,
        d_per_kernel,
        targeted: matches!((d_fragile, d_other), (Some(f), Some(o)) if f > o),
        d_fragile,
        d_other,
        config: cfg.clone(),
        cancelled,
    })
}

/// Kernels that are fragile in every result (e.g. at every training checkpoint).
pub fn fragile_at_every(results: &[DropoutResult]) -> Vec<usize> {
    let Some(first) = results.first() else { return Vec::new() };
    first.fragile.iter().copied().filter(|k| results.iter().all(|r| r.fragile.contains(k))).collect()
}
