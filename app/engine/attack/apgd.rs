//! APGD (Croce and Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an
//! ensemble of diverse parameter-free attacks"): projected gradient ascent with momentum
//! whose step size halves at checkpoints where the loss stopped rising, restarting from the
//! best point found. Cross-entropy or the difference-of-logits-ratio loss, untargeted or
//! targeted at the top classes in turn (APGD-T); L-infinity or L2. Samples the network already
//! misclassifies are left as they are; each restart (and each target) attacks the samples no
//! earlier one fooled.

use candle_core::{DType, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::GradMode;
use crate::engine::error::{EngineError, Result};
use crate::engine::model::{BnMode, ForwardCtx, Network};
use crate::engine::progress::StopFlag;

/// The loss APGD climbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Cross-entropy.
    Ce,
    /// Difference of logits ratio: -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), invariant to
    /// shifts and scales of the logits (needs at least 3 classes).
    Dlr,
    /// Targeted difference of logits ratio: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2),
    /// climbed towards one target class t at a time (needs at least 4 classes).
    DlrTargeted,
}

/// The threat model: the ball the perturbation stays in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    #[default]
    Linf,
    L2,
}

/// Momentum of the update (alpha in the paper).
const MOMENTUM: f64 = 0.75;
/// A checkpoint halves the step when the loss rose in at most this share of its iterations.
const RHO: f64 = 0.75;
/// Checkpoint lengths as shares of the iterations: the first, the shortest, the decrease.
const FIRST_CHECK: f64 = 0.22;
const MIN_CHECK: f64 = 0.06;
const CHECK_DECREASE: f64 = 0.03;
/// Keeps the DLR loss and the L2 normalisations finite.
const TINY: f64 = 1e-12;

pub struct Apgd<'a> {
    pub net: &'a Network,
    pub bn: BnMode,
    pub loss: Loss,
    pub norm: Norm,
    pub eps: f64,
    pub steps: usize,
    pub restarts: usize,
    /// Targeted loss only: how many target classes, taken in turn from the clean logits'
    /// second highest down.
    pub targets: usize,
    pub seed: u64,
    /// Cross-entropy's gradient: `Exact` in float64 (never lost to rounding), `Autograd` in
    /// float32 as PyTorch computes it (zero where the true class's probability rounds to 1).
    pub grad: GradMode,
    /// Per-channel bounds of the image domain, shaped (1, C, 1, 1), when clamped.
    pub bounds: Option<(Tensor, Tensor)>,
}

/// Per-sample losses, whether each sample is still classified right, and the gradient of the
/// summed loss with respect to `x`.
fn loss_and_grad(
    net: &Network,
    x: &Tensor,
    labels: &[u32],
    targets: &[u32],
    bn: BnMode,
    loss: Loss,
    mode: GradMode,
) -> Result<(Vec<f64>, Vec<bool>, Tensor)> {
    let xv = Var::from_tensor(x)?;
    let mut ctx = ForwardCtx::input_grad(bn);
    let logits = net.forward(xv.as_tensor(), &mut ctx)?;
    let z: Vec<Vec<f32>> = logits.detach().to_dtype(DType::F32)?.to_vec2()?;
    let k = z.first().map_or(0, Vec::len);
    let mut losses = Vec::with_capacity(z.len());
    let mut correct = Vec::with_capacity(z.len());
    let mut cot = Vec::with_capacity(z.len() * k);
    for (i, (row, &y)) in z.iter().zip(labels).enumerate() {
        let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let y = y as usize;
        let top = (0..k).fold(0, |best, j| if row[j] > row[best] { j } else { best });
        correct.push(top == y);
        let (l, c) = match (loss, mode) {
            (Loss::Ce, GradMode::Exact) => cross_entropy(&row, y),
            (Loss::Ce, GradMode::Autograd) => cross_entropy_f32(&row, y),
            (Loss::Dlr, _) => dlr(&row, y),
            (Loss::DlrTargeted, _) => dlr_targeted(&row, y, targets[i] as usize),
        };
        losses.push(l);
        cot.extend(c.iter().map(|&v| v as f32));
    }
    let c = Tensor::from_vec(cot, (z.len(), k), x.device())?;
    Ok((losses, correct, super::backward_to(&xv, &logits, &c)?))
}

/// Cross-entropy of one row and its gradient with respect to the logits.
fn cross_entropy(z: &[f64], y: usize) -> (f64, Vec<f64>) {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
    let lse = max + sum.ln();
    let grad = z.iter().enumerate().map(|(j, v)| (v - lse).exp() - if j == y { 1.0 } else { 0.0 }).collect();
    (lse - z[y], grad)
}

/// Cross-entropy and its gradient as float32 autograd computes them: softmax minus one-hot,
/// each term rounded to float32, so a saturated sample's gradient is exactly zero.
fn cross_entropy_f32(z: &[f64], y: usize) -> (f64, Vec<f64>) {
    let z: Vec<f32> = z.iter().map(|&v| v as f32).collect();
    // PyTorch's log-softmax: (z - max) - log(sum(exp(z - max))), in that order.
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = z.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
    let log_p: Vec<f32> = z.iter().map(|v| (v - max) - log_sum).collect();
    let grad = log_p.iter().enumerate().map(|(j, l)| (l.exp() - if j == y { 1.0 } else { 0.0 }) as f64).collect();
    (-log_p[y] as f64, grad)
}

/// The DLR loss of one row and its gradient with respect to the logits.
fn dlr(z: &[f64], y: usize) -> (f64, Vec<f64>) {
    let mut order: Vec<usize> = (0..z.len()).collect();
    order.sort_by(|&a, &b| z[b].total_cmp(&z[a]));
    let (first, third) = (order[0], order[2]);
    // The best other class: the runner-up when y leads, else the leader.
    let other = if first == y { order[1] } else { first };
    let num = z[y] - z[other];
    let den = z[first] - z[third] + TINY;
    let mut grad = vec![0.0; z.len()];
    grad[y] -= 1.0 / den;
    grad[other] += 1.0 / den;
    grad[first] += num / (den * den);
    grad[third] -= num / (den * den);
    (-num / den, grad)
}

/// The targeted DLR loss of one row towards class `t`, and its gradient.
fn dlr_targeted(z: &[f64], y: usize, t: usize) -> (f64, Vec<f64>) {
    let mut order: Vec<usize> = (0..z.len()).collect();
    order.sort_by(|&a, &b| z[b].total_cmp(&z[a]));
    let (first, third, fourth) = (order[0], order[2], order[3]);
    let num = z[y] - z[t];
    let den = z[first] - 0.5 * (z[third] + z[fourth]) + TINY;
    let mut grad = vec![0.0; z.len()];
    grad[y] -= 1.0 / den;
    grad[t] += 1.0 / den;
    let q = num / (den * den);
    grad[first] += q;
    grad[third] -= 0.5 * q;
    grad[fourth] -= 0.5 * q;
    (-num / den, grad)
}

/// The class of each row with the `rank`-th highest logit (rank 1: the top).
pub(super) fn ranked_class(logits: &Tensor, rank: usize) -> Result<Vec<u32>> {
    let z: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
    Ok(z.iter()
        .map(|row| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            order[rank - 1] as u32
        })
        .collect())
}

impl Apgd<'_> {
    /// The fewest classes the loss works with.
    pub fn min_classes(loss: Loss) -> usize {
        match loss {
            Loss::Ce => 2,
            Loss::Dlr => 3,
            Loss::DlrTargeted => 4,
        }
    }

    /// The target ranks run in turn: none for an untargeted loss, else the second highest
    /// clean logit down, as many as asked and the classes allow.
    fn target_ranks(&self, classes: usize) -> Vec<Option<usize>> {
        match self.loss {
            Loss::DlrTargeted => (2..=(self.targets + 1).min(classes)).map(Some).collect(),
            _ => vec![None],
        }
    }

    /// The adversarial batch, and which samples no restart fooled (the robust ones).
    /// `robust` says which samples are still to fool (those the network classifies right
    /// unattacked, or that an earlier attack left); `classes` is the network's output width.
    pub fn run(
        &self,
        x: &Tensor,
        labels: &[u32],
        mut robust: Vec<bool>,
        classes: usize,
        stop: &StopFlag,
    ) -> Result<(Tensor, Vec<bool>)> {
        let n = labels.len();
        if classes < Self::min_classes(self.loss) {
            return Err(EngineError::config(format!(
                "this APGD loss needs at least {} classes, the network has {classes}",
                Self::min_classes(self.loss)
            )));
        }
        let mut adv = x.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        for rank in self.target_ranks(classes) {
            for _ in 0..self.restarts {
                let left: Vec<u32> = (0..n as u32).filter(|&i| robust[i as usize]).collect();
                if left.is_empty() {
                    return Ok((adv, robust));
                }
                let index = Tensor::new(left.as_slice(), x.device())?;
                let xs = x.index_select(&index, 0)?;
                let ys: Vec<u32> = left.iter().map(|&i| labels[i as usize]).collect();
                let targets = match rank {
                    Some(r) => ranked_class(&self.net.logits(&xs, self.bn)?, r)?,
                    None => Vec::new(),
                };
                let (found, still) = self.single_run(&xs, &ys, &targets, &mut rng, stop)?;
                let fooled: Vec<u32> = (0..left.len() as u32).filter(|&j| !still[j as usize]).collect();
                if fooled.is_empty() {
                    continue;
                }
                let at: Vec<u32> = fooled.iter().map(|&j| left[j as usize]).collect();
                let at_index = Tensor::new(at.as_slice(), x.device())?;
                let rows = found.index_select(&Tensor::new(fooled.as_slice(), x.device())?, 0)?;
                // Those rows of `adv` are still the clean images: adding the perturbation sets them.
                adv = adv.index_add(&at_index, &(rows - x.index_select(&at_index, 0)?)?, 0)?;
                for &i in &at {
                    robust[i as usize] = false;
                }
            }
        }
        Ok((adv, robust))
    }

    /// `z` brought back into the ball around `x` and the image domain.
    fn project(&self, x: &Tensor, z: &Tensor) -> Result<Tensor> {
        let inside = match self.norm {
            Norm::Linf => z.maximum(&(x - self.eps)?)?.minimum(&(x + self.eps)?)?,
            Norm::L2 => {
                let delta = (z - x)?;
                let length = per_sample_l2(&delta)?;
                let scale = (length.clamp(0.0, self.eps)? / (length + TINY)?)?;
                (x + delta.broadcast_mul(&scale)?)?
            }
        };
        Ok(match &self.bounds {
            Some((lo, hi)) => inside.broadcast_maximum(lo)?.broadcast_minimum(hi)?,
            None => inside,
        })
    }

    /// One step of length `eta` (per sample, shaped (N, 1, 1, 1)) along the gradient.
    fn step(&self, x: &Tensor, g: &Tensor, eta: &Tensor) -> Result<Tensor> {
        let direction = match self.norm {
            Norm::Linf => crate::engine::model::ops::sign(g)?,
            Norm::L2 => g.broadcast_div(&(per_sample_l2(g)? + TINY)?)?,
        };
        Ok((x + direction.broadcast_mul(eta)?)?)
    }

    fn random_start(&self, x: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        let count = x.elem_count();
        let noise: Vec<f32> = match self.norm {
            Norm::Linf => (0..count).map(|_| rng.random_range(-1.0f32..=1.0)).collect(),
            Norm::L2 => (0..count).map(|_| rng.sample::<f32, _>(StandardNormal)).collect(),
        };
        let t = Tensor::from_vec(noise, x.shape(), x.device())?;
        let size = match self.norm {
            Norm::Linf => t.abs()?.flatten_from(1)?.max_keepdim(1)?.reshape((x.dim(0)?, 1, 1, 1))?,
            Norm::L2 => (per_sample_l2(&t)? + TINY)?,
        };
        let start = (x + (t.broadcast_div(&size)? * self.eps)?)?;
        self.project(x, &start)
    }

    /// One run from a random start: the best point of each sample (its first misclassified
    /// iterate where there is one, else the highest loss) and which samples stayed right.
    fn single_run(
        &self,
        x: &Tensor,
        y: &[u32],
        targets: &[u32],
        rng: &mut ChaCha8Rng,
        stop: &StopFlag,
    ) -> Result<(Tensor, Vec<bool>)> {
        let n = y.len();
        let steps = self.steps;
        let share = |s: f64| ((s * steps as f64) as usize).max(1);
        let (mut check_len, min_check, decrease) = (share(FIRST_CHECK), share(MIN_CHECK), share(CHECK_DECREASE));

        let mut cur = self.random_start(x, rng)?;
        let (losses, correct, mut grad) = loss_and_grad(self.net, &cur, y, targets, self.bn, self.loss, self.grad)?;
        let mut right = correct;
        let mut adv = cur.clone();
        let (mut best, mut best_grad, mut best_loss) = (cur.clone(), grad.clone(), losses);
        let mut eta = vec![2.0 * self.eps; n];
        let mut prev = cur.clone();
        // The loss before the first iteration counts as 0, as in the reference ensemble
        // (its loss record starts zeroed): at the first checkpoint, a first cross-entropy
        // (never negative) counts as a rise.
        let mut history: Vec<Vec<f64>> = vec![vec![0.0; n]];
        let (mut since_check, mut best_at_check, mut reduced_at_check) = (0, best_loss.clone(), vec![true; n]);

        for i in 0..steps {
            if stop.is_stopped() {
                return Err(EngineError::Cancelled);
            }
            let momentum_from = (&cur - &prev)?;
            prev = cur.clone();
            let a = if i == 0 { 1.0 } else { MOMENTUM };
            let eta_t = Tensor::from_vec(eta.iter().map(|&v| v as f32).collect(), (n, 1, 1, 1), x.device())?;
            let z = self.project(x, &self.step(&cur, &grad, &eta_t)?)?;
            let moved = ((&cur + ((z - &cur)? * a)?)? + (momentum_from * (1.0 - a))?)?;
            cur = self.project(x, &moved)?;

            let (losses, correct, g) = loss_and_grad(self.net, &cur, y, targets, self.bn, self.loss, self.grad)?;
            grad = g;
            let newly: Vec<bool> = (0..n).map(|j| right[j] && !correct[j]).collect();
            adv = choose(&newly, &cur, &adv)?;
            for j in 0..n {
                right[j] &= correct[j];
            }
            let better: Vec<bool> = (0..n).map(|j| losses[j] > best_loss[j]).collect();
            best = choose(&better, &cur, &best)?;
            best_grad = choose(&better, &grad, &best_grad)?;
            for j in 0..n {
                if better[j] {
                    best_loss[j] = losses[j];
                }
            }
            history.push(losses);

            since_check += 1;
            if since_check == check_len {
                // Halve the step where the loss rose in too few of the checkpoint's
                // iterations, or where the last checkpoint kept the step and the best
                // loss has not moved since; go on from the best point.
                let t = history.len() - 1;
                let halve: Vec<bool> = (0..n)
                    .map(|j| {
                        let rises = (0..check_len).filter(|&c| history[t - c][j] > history[t - c - 1][j]).count();
                        let oscillating = rises as f64 <= check_len as f64 * RHO;
                        let stalled = !reduced_at_check[j] && best_at_check[j] >= best_loss[j];
                        oscillating || stalled
                    })
                    .collect();
                for j in 0..n {
                    if halve[j] {
                        eta[j] /= 2.0;
                    }
                }
                cur = choose(&halve, &best, &cur)?;
                grad = choose(&halve, &best_grad, &grad)?;
                reduced_at_check = halve;
                best_at_check = best_loss.clone();
                since_check = 0;
                check_len = check_len.saturating_sub(decrease).max(min_check);
            }
        }
        // Samples never fooled: their highest-loss point.
        let still: Vec<bool> = right.clone();
        let out = choose(&still, &best, &adv)?;
        Ok((out, right))
    }
}

/// Per sample, `a` where `pick` holds, else `b`.
pub(super) fn choose(pick: &[bool], a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if pick.iter().all(|p| !p) {
        return Ok(b.clone());
    }
    let mask: Vec<u8> = pick.iter().map(|&p| p as u8).collect();
    let mut shape = vec![1; a.rank()];
    shape[0] = pick.len();
    let m = Tensor::from_vec(mask, shape, a.device())?.broadcast_as(a.shape())?;
    Ok(m.where_cond(a, b)?)
}

/// The L2 length of each sample, shaped (N, 1, 1, 1).
fn per_sample_l2(t: &Tensor) -> Result<Tensor> {
    let n = t.dim(0)?;
    Ok(t.sqr()?.flatten_from(1)?.sum_keepdim(1)?.sqrt()?.reshape((n, 1, 1, 1))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(f: impl Fn(&[f64]) -> f64, z: &[f64]) -> Vec<f64> {
        (0..z.len())
            .map(|j| {
                let (mut up, mut down) = (z.to_vec(), z.to_vec());
                up[j] += 1e-6;
                down[j] -= 1e-6;
                (f(&up) - f(&down)) / 2e-6
            })
            .collect()
    }

    #[test]
    fn loss_gradients_match_finite_differences() {
        for (z, y) in [(vec![1.0, 3.0, -0.5, 2.0], 1), (vec![0.3, 1.1, 2.5, -1.0, 0.9], 0)] {
            for (name, f) in [("ce", cross_entropy as fn(&[f64], usize) -> (f64, Vec<f64>)), ("dlr", dlr)] {
                let (_, grad) = f(&z, y);
                let want = numeric(|v| f(v, y).0, &z);
                for (g, w) in grad.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-5, "{name} {z:?} y={y}: {grad:?} vs {want:?}");
                }
            }
        }
    }

    #[test]
    fn dlr_is_negative_margin_over_spread() {
        // y leads by 1 over the runner-up; spread between first and third is 3.
        let (l, _) = dlr(&[4.0, 3.0, 1.0, 0.0], 0);
        assert!((l + 1.0 / 3.0).abs() < 1e-9, "{l}");
    }
}
