//! ReLU with PyTorch's gradient (zero at zero), in one pass each way.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::f32_data;

/// Fewest elements per parallel piece: fewer would cost more in splitting than they save.
/// (Collected, not written into a zeroed vector: zeroing took 5 % of a sweep.)
const BLOCK: usize = 1 << 16;

/// ReLU of one element: every ReLU pass (also the convolution's epilogue) uses this. NaN
/// stays NaN, as in PyTorch and candle's own op: a NaN weight must not vanish on this path.
#[inline(always)]
pub(super) fn relu_of(v: f32) -> f32 {
    if v <= 0.0 { 0.0 } else { v }
}

/// ReLU's gradient for one element, from the gradient `g` and the output `y`.
#[inline(always)]
pub(super) fn relu_grad(g: f32, y: f32) -> f32 {
    if y > 0.0 { g } else { 0.0 }
}

/// ReLU's gradient for a whole tensor: `g` where the output `y` is positive, else 0.
pub(super) fn relu_grads(g: &[f32], y: &[f32]) -> Vec<f32> {
    g.par_iter().zip(y.par_iter()).with_min_len(BLOCK).map(|(&g, &y)| relu_grad(g, y)).collect()
}

struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "fe-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s, l)?;
        let y: Vec<f32> = x.par_iter().with_min_len(BLOCK).map(|&v| relu_of(v)).collect();
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op2_no_bwd(&res.contiguous()?, &ReluBackward)?))
    }
}

/// grad where the output is positive, else 0.
struct ReluBackward;

impl CustomOp2 for ReluBackward {
    fn name(&self) -> &'static str {
        "fe-relu-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (g, y) = (f32_data(s1, l1)?, f32_data(s2, l2)?);
        Ok((CpuStorage::F32(relu_grads(&g, &y)), l1.shape().clone()))
    }
}

pub fn relu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Relu)
}

/// ReLU of a sum (a residual block's end) in one pass; the gradient goes to both terms.
struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "fe-add-relu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        if l1.dims() != l2.dims() {
            candle_core::bail!("add_relu: shapes {:?} and {:?} differ", l1.dims(), l2.dims())
        }
        let (a, b) = (f32_data(s1, l1)?, f32_data(s2, l2)?);
        let y: Vec<f32> = a.par_iter().zip(b.par_iter()).with_min_len(BLOCK).map(|(&a, &b)| relu_of(a + b)).collect();
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, _a: &Tensor, _b: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?.apply_op2_no_bwd(&res.contiguous()?, &ReluBackward)?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// `relu(a + b)` for tensors of one shape.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
}
