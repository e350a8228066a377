//! Adam's update in place, in two passes over memory: the moments, then the parameter.
//! The same update through candle's ops takes a dozen passes and as many allocations per
//! tensor, a visible part of a small network's training step.
//!
//! The moments live in one tensor `mv` of shape [2, ...]: m first, v second. Elements where
//! the optional mask is 0 are frozen: moments and parameter keep their values.

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor};
use rayon::prelude::*;

use super::f32_data;
use super::prepared::params_changed;

/// Elements per parallel task: these passes are memory-bound, so only large tensors split.
const PER_TASK: usize = 64 * 1024;

fn data_mut<'a>(s: &'a mut CpuStorage, l: &Layout) -> Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("adam kernels take contiguous f32 tensors"),
    }
}

/// One in-place pass: `dst` updated from `src`, skipping elements where `mask` is 0.
trait Pass {
    const NAME: &'static str;
    fn run(&self, dst: &mut [f32], src: &[f32], mask: Option<&[f32]>) -> Result<()>;
}

/// A pass as candle's in-place op, without (op2) and with (op3) a mask.
struct InPlace<P>(P);

impl<P: Pass> InplaceOp2 for InPlace<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        self.0.run(data_mut(s1, l1)?, &f32_data(s2, l2)?, None)
    }
}

impl<P: Pass> InplaceOp3 for InPlace<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        self.0.run(data_mut(s1, l1)?, &f32_data(s2, l2)?, Some(&f32_data(s3, l3)?))
    }
}

/// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g², as PyTorch computes them in f32.
struct Moments {
    beta1: f32,
    beta2: f32,
}

impl Pass for Moments {
    const NAME: &'static str = "fe-adam-moments";

    fn run(&self, mv: &mut [f32], g: &[f32], mask: Option<&[f32]>) -> Result<()> {
        let n = g.len();
        if mv.len() != 2 * n || mask.is_some_and(|k| k.len() != n) {
            candle_core::bail!("adam moments: {} moment elements for {n} gradient elements", mv.len())
        }
        let (m, v) = mv.split_at_mut(n);
        let (b1, b2) = (self.beta1, self.beta2);
        m.par_chunks_mut(PER_TASK).zip(v.par_chunks_mut(PER_TASK)).enumerate().for_each(|(i, (m, v))| {
            let at = i * PER_TASK;
            let (g, k) = (&g[at..at + m.len()], mask.map(|k| &k[at..at + m.len()]));
            for j in 0..m.len() {
                if k.is_some_and(|k| k[j] == 0.0) {
                    continue;
                }
                m[j] += (g[j] - m[j]) * (1.0 - b1);
                v[j] = v[j] * b2 + (1.0 - b2) * g[j] * g[j];
            }
        });
        Ok(())
    }
}

/// p -= step_size m / (sqrt(v) / bias2_sqrt + eps) (PyTorch's order of operations).
struct Apply {
    step_size: f32,
    bias2_sqrt: f32,
    eps: f32,
}

impl Pass for Apply {
    const NAME: &'static str = "fe-adam-apply";

    fn run(&self, p: &mut [f32], mv: &[f32], mask: Option<&[f32]>) -> Result<()> {
        let n = p.len();
        if mv.len() != 2 * n || mask.is_some_and(|k| k.len() != n) {
            candle_core::bail!("adam update: {} moment elements for {n} parameters", mv.len())
        }
        let (m, v) = mv.split_at(n);
        p.par_chunks_mut(PER_TASK).enumerate().for_each(|(i, p)| {
            let at = i * PER_TASK;
            let (m, v, k) = (&m[at..at + p.len()], &v[at..at + p.len()], mask.map(|k| &k[at..at + p.len()]));
            for j in 0..p.len() {
                if k.is_some_and(|k| k[j] == 0.0) {
                    continue;
                }
                p[j] -= self.step_size * m[j] / (v[j].sqrt() / self.bias2_sqrt + self.eps);
            }
        });
        Ok(())
    }
}

/// Adam's hyper-parameters for one step of one tensor.
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    pub beta1: f64,
    pub beta2: f64,
    /// lr / (1 - beta1^t)
    pub step_size: f64,
    /// sqrt(1 - beta2^t)
    pub bias2_sqrt: f64,
    pub eps: f64,
}

/// Updates `param` and its moments `mv` ([2, ...param shape], m then v) in place from the
/// gradient `grad`; elements where `mask` is 0 keep their values. All three are contiguous
/// CPU f32 tensors the caller owns alone (nothing else may share their storage).
#[allow(clippy::disallowed_methods)] // the change is announced below
pub fn adam_update(param: &Tensor, mv: &Tensor, grad: &Tensor, mask: Option<&Tensor>, s: AdamStep) -> Result<()> {
    let grad = grad.contiguous()?;
    let moments = InPlace(Moments { beta1: s.beta1 as f32, beta2: s.beta2 as f32 });
    let apply = InPlace(Apply { step_size: s.step_size as f32, bias2_sqrt: s.bias2_sqrt as f32, eps: s.eps as f32 });
    let updated = match mask {
        None => mv.inplace_op2(&grad, &moments).and_then(|()| param.inplace_op2(mv, &apply)),
        Some(mask) => {
            let mask = mask.contiguous()?;
            mv.inplace_op3(&grad, &mask, &moments).and_then(|()| param.inplace_op3(mv, &mask, &apply))
        }
    };
    params_changed();
    updated
}
