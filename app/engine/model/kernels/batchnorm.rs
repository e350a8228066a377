//! Batch norm with batch statistics (training, or the papers' evaluation mode) in one
//! pass each way, with the analytic backward pass.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{Grads, apply3, f32_data};

/// Per-channel batch statistics of the last forward pass: (mean, biased variance).
pub type Stats = (Vec<f32>, Vec<f32>);

struct BatchNorm {
    eps: f64,
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

/// Mean and biased variance per channel, two passes in float64.
fn channel_stats(x: &[f32], n: usize, c: usize, p: usize) -> Stats {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = (0..n).map(|i| &x[(i * c + ch) * p..][..p]);
            let count = (n * p) as f64;
            let mean = planes.clone().flatten().map(|&v| v as f64).sum::<f64>() / count;
            let var = planes.flatten().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / count;
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
                    *o = v * alpha + beta;
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
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some((mean, var)) = self.stats.lock().ok().and_then(|s| s.clone()) else {
            candle_core::bail!("batch norm backward without its forward pass")
        };
        let (n, c) = (x.dim(0)?, x.dim(1)?);
        let p = x.elem_count() / (n * c).max(1);
        let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let gs: Vec<f32> = grad.contiguous()?.flatten_all()?.to_vec1()?;
        let ws: Vec<f32> = w.to_vec1()?;
        let count = (n * p) as f64;
        // Per channel: sum(dy) and sum(dy * x_hat), in float64.
        let sums: Vec<(f64, f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let inv_std = 1.0 / (var[ch] as f64 + self.eps).sqrt();
                let (mut sg, mut sgx) = (0f64, 0f64);
                for i in 0..n {
                    let base = (i * c + ch) * p;
                    for (&g, &v) in gs[base..base + p].iter().zip(&xs[base..base + p]) {
                        sg += g as f64;
                        sgx += g as f64 * (v as f64 - mean[ch] as f64) * inv_std;
                    }
                }
                (sg, sgx, inv_std)
            })
            .collect();
        let mut dx = vec![0f32; xs.len()];
        dx.par_chunks_mut(p.max(1)).with_min_len(super::min_planes(p)).enumerate().for_each(|(i, out)| {
            let ch = i % c;
            let (sg, sgx, inv_std) = sums[ch];
            let base = i * p;
            let k = ws[ch] as f64 * inv_std / count;
            for (j, o) in out.iter_mut().enumerate() {
                let x_hat = (xs[base + j] as f64 - mean[ch] as f64) * inv_std;
                *o = (k * (count * gs[base + j] as f64 - sg - x_hat * sgx)) as f32;
            }
        });
        let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
        if !self.param_grads {
            return Ok((Some(dx), None, None));
        }
        let dw = Tensor::from_vec(sums.iter().map(|s| s.1 as f32).collect::<Vec<_>>(), c, x.device())?;
        let db = Tensor::from_vec(sums.iter().map(|s| s.0 as f32).collect::<Vec<_>>(), c, x.device())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// Normalises `x` with its own batch statistics, then scales by `w` and shifts by `b`.
/// Returns the output and the statistics (for updating running averages).
pub fn batch_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64, grads: Grads) -> Result<(Tensor, Stats)> {
    let stats = Arc::new(Mutex::new(None));
    let op = BatchNorm { eps, param_grads: grads.weights(), stats: stats.clone() };
    let y = apply3(&x.contiguous()?, &w.contiguous()?, &b.contiguous()?, op, grads)?;
    let stats = stats.lock().ok().and_then(|s| s.clone());
    let Some(stats) = stats else { candle_core::bail!("batch norm ran without statistics") };
    Ok((y, stats))
}
