//! `y = x * alpha[c] + beta[c]` per channel (batch norm in evaluation mode) in one pass;
//! the backward pass gives the input's gradient only (for attacks).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::f32_data;

/// One element of `x * alpha + beta`: the two roundings every affine pass (also the
/// convolution's epilogue, forward and backward) shares.
#[inline(always)]
pub(super) fn affine(v: f32, a: f32, b: f32) -> f32 {
    v * a + b
}

struct ChannelAffine {
    alpha: Vec<f32>,
    beta: Vec<f32>,
}

impl ChannelAffine {
    fn apply(&self, x: &[f32], dims: &[usize], with_beta: bool) -> Result<Vec<f32>> {
        let &[_, c, ..] = dims else { candle_core::bail!("channel affine expects (N, C, ...) input, got {dims:?}") };
        if c != self.alpha.len() {
            candle_core::bail!("channel affine: {c} channels but {} scales", self.alpha.len())
        }
        let p: usize = dims[2..].iter().product();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(p.max(1)).zip(x.par_chunks(p.max(1))).with_min_len(super::min_planes(p)).enumerate().for_each(
            |(i, (out, inp))| {
                let ch = i % c;
                let (a, b) = (self.alpha[ch], if with_beta { self.beta[ch] } else { 0.0 });
                for (o, &v) in out.iter_mut().zip(inp) {
                    *o = affine(v, a, b);
                }
            },
        );
        Ok(y)
    }
}

impl CustomOp1 for ChannelAffine {
    fn name(&self) -> &'static str {
        "fe-channel-affine"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s, l)?;
        Ok((CpuStorage::F32(self.apply(&x, l.dims(), true)?), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let back = Scale(ChannelAffine { alpha: self.alpha.clone(), beta: Vec::new() });
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&back)?))
    }
}

/// The input gradient: grad * alpha[c].
struct Scale(ChannelAffine);

impl CustomOp1 for Scale {
    fn name(&self) -> &'static str {
        "fe-channel-scale"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = f32_data(s, l)?;
        Ok((CpuStorage::F32(self.0.apply(&g, l.dims(), false)?), l.shape().clone()))
    }
}

/// `x * alpha + beta` per channel, with a gradient for `x` only.
pub fn channel_affine(x: &Tensor, alpha: &Tensor, beta: &Tensor) -> Result<Tensor> {
    let op = ChannelAffine { alpha: alpha.detach().to_vec1()?, beta: beta.detach().to_vec1()? };
    x.contiguous()?.apply_op1(op)
}
