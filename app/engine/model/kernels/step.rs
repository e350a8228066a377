//! The FGSM update `x + eps * sign(g)` in one pass (sign(0) = 0, NaN treated as 0).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::f32_data;

struct SignedStep(f32);

impl CustomOp2 for SignedStep {
    fn name(&self) -> &'static str {
        "fe-signed-step"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (f32_data(s1, l1)?, f32_data(s2, l2)?);
        let eps = self.0;
        let y = x
            .iter()
            .zip(g.iter())
            .map(|(&x, &g)| {
                if g > 0.0 {
                    x + eps
                } else if g < 0.0 {
                    x - eps
                } else {
                    x
                }
            })
            .collect();
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
}

/// `x + eps * sign(g)` without a backward pass.
pub fn signed_step(x: &Tensor, g: &Tensor, eps: f32) -> Result<Tensor> {
    x.contiguous()?.apply_op2_no_bwd(&g.contiguous()?, &SignedStep(eps))
}
