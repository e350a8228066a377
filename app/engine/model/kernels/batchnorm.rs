//! Batch norm with batch statistics (training, or the papers' evaluation mode) in one
//! pass each way, with the analytic backward pass.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::act::{relu_grad, relu_of};
use super::affine::affine;
use super::{Grads, apply3, f32_data};

/// Per-channel batch statistics of the last forward pass: (mean, biased variance).
pub type Stats = (Vec<f32>, Vec<f32>);

struct BatchNorm {
    eps: f64,
    /// ReLU applied to the output in the same pass (its gradient in the backward one).
    relu: bool,
    /// Gradients for weight and bias are wanted.
    param_grads: bool,
    /// Shared with the caller, who reads the statistics after the forward pass.
    stats: Arc<Mutex<Option<Stats>>>,
}

fn dims(l: &Layout) -> Result<(usize, usize, usize)> {
    let d = l.dims();
    if d.len() < 2 {
        candle_core::bail!("batch norm expects (N, C, ...) input, got {d:?}")
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

/// Lanes of the float64 running sums: one running sum is a chain of dependent additions
/// the compiler may not reorder (BN's sums took 6 % of a ResNet-18 training step); eight
/// independent ones vectorise.
const LANES: usize = 8;

/// The sums over paired elements of `a` and `b` of the K values `f` gives, in float64 lanes.
#[inline(always)]
fn lane_sums<const K: usize>(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> [f64; K]) -> [f64; K] {
    let mut acc = [[0f64; LANES]; K];
    let mut add = |l: usize, x: f32, y: f32| {
        let r = f(x as f64, y as f64);
        for k in 0..K {
            acc[k][l] += r[k];
        }
    };
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            add(l, x[l], y[l]);
        }
    }
    for (l, (&x, &y)) in ra.iter().zip(rb).enumerate() {
        add(l, x, y);
    }
    acc.map(|lanes| lanes.iter().sum())
}

/// Mean and biased variance per channel, two passes in float64.
fn channel_stats(x: &[f32], n: usize, c: usize, p: usize) -> Stats {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = || (0..n).map(|i| &x[(i * c + ch) * p..][..p]);
            let count = (n * p) as f64;
            let mean = planes().map(|v| lane_sums(v, v, |v, _| [v])[0]).sum::<f64>() / count;
            let var = planes().map(|v| lane_sums(v, v, |v, _| [(v - mean) * (v - mean)])[0]).sum::<f64>() / count;
            (mean as f32, var as f32)
        })
        .unzip()
}

impl CustomOp3 for BatchNorm {
    fn name(&self) -> &'static str {
        "fe-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, p) = dims(l1)?;
        let (x, w, b) = (f32_data(s1, l1)?, f32_data(s2, l2)?, f32_data(s3, l3)?);
        let (mean, var) = channel_stats(&x, n, c, p);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(p.max(1)).zip(x.par_chunks(p.max(1))).with_min_len(super::min_planes(p)).enumerate().for_each(
            |(i, (out, inp))| {
                let ch = i % c;
                let inv_std = 1.0 / (var[ch] as f64 + self.eps).sqrt() as f32;
                let alpha = w[ch] * inv_std;
                let beta = b[ch] - mean[ch] * alpha;
                for (o, &v) in out.iter_mut().zip(inp) {
                    let z = affine(v, alpha, beta);
                    *o = if self.relu { relu_of(z) } else { z };
                }
            },
        );
        if let Ok(mut s) = self.stats.lock() {
            *s = Some((mean, var));
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some((mean, var)) = self.stats.lock().ok().and_then(|s| s.clone()) else {
            candle_core::bail!("batch norm backward without its forward pass")
        };
        let back = Backward { mean, var, w: w.to_vec1()?, eps: self.eps, relu: self.relu, sums: Mutex::new(None) };
        let dx = x.contiguous()?.apply_op3_no_bwd(&grad.contiguous()?, &res.contiguous()?, &back)?;
        if !self.param_grads {
            return Ok((Some(dx), None, None));
        }
        let Some((dw, db)) = back.sums.lock().ok().and_then(|mut s| s.take()) else {
            candle_core::bail!("batch norm backward left no parameter gradients")
        };
        let c = dw.len();
        Ok((Some(dx), Some(Tensor::from_vec(dw, c, x.device())?), Some(Tensor::from_vec(db, c, x.device())?)))
    }
}

/// The input gradient from (x, dy, y), reading them in place (y only for the ReLU's
/// gradient, taken first); leaves the weight and bias gradients, per channel
/// sum(dy * x_hat) and sum(dy), in `sums`.
struct Backward {
    mean: Vec<f32>,
    var: Vec<f32>,
    w: Vec<f32>,
    eps: f64,
    relu: bool,
    sums: Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

impl CustomOp3 for Backward {
    fn name(&self) -> &'static str {
        "fe-batch-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, p) = dims(l1)?;
        let (xs, gs, ys) = (f32_data(s1, l1)?, f32_data(s2, l2)?, f32_data(s3, l3)?);
        if gs.len() != xs.len() || ys.len() != xs.len() {
            candle_core::bail!("batch norm backward: gradient of the wrong size")
        }
        // The ReLU's gradient is taken first, element by element: dy where the output is
        // positive (a separate pass and copy took a third of this op).
        let relu = self.relu;
        let grad = move |g: f32, y: f32| if relu { relu_grad(g, y) } else { g };
        let (mean, var, ws) = (&self.mean, &self.var, &self.w);
        let count = (n * p) as f64;
        // Per channel: sum(dy) and sum(dy * (x - mean)), in float64.
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let m = mean[ch] as f64;
                let (mut sg, mut sgx) = (0f64, 0f64);
                let mut masked = vec![0f32; p];
                for i in 0..n {
                    let at = (i * c + ch) * p..(i * c + ch + 1) * p;
                    for ((o, &g), &y) in masked.iter_mut().zip(&gs[at.clone()]).zip(&ys[at.clone()]) {
                        *o = grad(g, y);
                    }
                    let [a, b] = lane_sums(&masked, &xs[at], |g, v| [g, g * (v - m)]);
                    sg += a;
                    sgx += b;
                }
                (sg, sgx)
            })
            .collect();
        // dx = w / std * (dy - sum(dy) / count - x_hat * sum(dy * x_hat) / count), as
        // a * dy + b * (x - mean) + c with per-channel float64 coefficients rounded once.
        let inv_stds: Vec<f64> = var.iter().map(|&v| 1.0 / (v as f64 + self.eps).sqrt()).collect();
        let coefficients: Vec<[f32; 4]> = (0..c)
            .map(|ch| {
                let ((sg, sgx), inv_std) = (sums[ch], inv_stds[ch]);
                let a = ws[ch] as f64 * inv_std;
                [a as f32, (-a * inv_std * inv_std * sgx / count) as f32, (-a * sg / count) as f32, mean[ch]]
            })
            .collect();
        let mut dx = vec![0f32; xs.len()];
        dx.par_chunks_mut(p.max(1)).with_min_len(super::min_planes(p)).enumerate().for_each(|(i, out)| {
            let [a, b, c0, m] = coefficients[i % c];
            let at = i * p..(i + 1) * p;
            for ((o, (&g, &y)), &x) in out.iter_mut().zip(gs[at.clone()].iter().zip(&ys[at.clone()])).zip(&xs[at]) {
                *o = a * grad(g, y) + b * (x - m) + c0;
            }
        });
        if let Ok(mut slot) = self.sums.lock() {
            *slot = Some(sums.iter().zip(&inv_stds).map(|(s, inv_std)| ((s.1 * inv_std) as f32, s.0 as f32)).unzip());
        }
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Normalises `x` with its own batch statistics, then scales by `w` and shifts by `b`,
/// then (when `relu`) applies ReLU in the same pass. Returns the output and the statistics
/// (for updating running averages).
pub fn batch_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64, grads: Grads, relu: bool) -> Result<(Tensor, Stats)> {
    let stats = Arc::new(Mutex::new(None));
    let op = BatchNorm { eps, relu, param_grads: grads.weights(), stats: stats.clone() };
    let y = apply3(&x.contiguous()?, &w.contiguous()?, &b.contiguous()?, op, grads)?;
    let stats = stats.lock().ok().and_then(|s| s.clone());
    let Some(stats) = stats else { candle_core::bail!("batch norm ran without statistics") };
    Ok((y, stats))
}
