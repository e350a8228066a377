//! `x @ w^T` whose backward skips the weight gradient when it is not wanted.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::{f32_data, matmul};

struct Forward(bool);

fn dims2(l: &Layout) -> Result<(usize, usize)> {
    match l.dims() {
        &[a, b] => Ok((a, b)),
        other => candle_core::bail!("linear expects 2-d tensors, got {other:?}"),
    }
}

impl CustomOp2 for Forward {
    fn name(&self) -> &'static str {
        "fe-linear"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let ((n, i), (o, i2)) = (dims2(l1)?, dims2(l2)?);
        if i != i2 {
            candle_core::bail!("linear: input has {i} features, the weight takes {i2}")
        }
        let (x, w) = (f32_data(s1, l1)?, f32_data(s2, l2)?);
        let mut y = vec![0f32; n * o];
        matmul(n, o, i, &mut y, false, &x, (i, 1), &w, (1, i), true);
        Ok((CpuStorage::F32(y), Shape::from((n, o))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = grad.matmul(w)?;
        let dw = if self.0 { Some(grad.t()?.matmul(x)?) } else { None };
        Ok((Some(dx.detach()), dw.map(|t| t.detach())))
    }
}

/// `x` [N, in] times `w` [out, in] transposed; the weight gradient is computed only when
/// `weight_grad` is set.
pub fn linear(x: &Tensor, w: &Tensor, weight_grad: bool) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, Forward(weight_grad))
}
