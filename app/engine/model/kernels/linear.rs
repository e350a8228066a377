//! `x @ w^T` whose backward skips the weight gradient when it is not wanted.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::{Grads, apply3, f32_data, matmul};

/// (weight gradient wanted, has a bias).
struct Forward(bool, bool);

fn dims2(l: &Layout) -> Result<(usize, usize)> {
    match l.dims() {
        &[a, b] => Ok((a, b)),
        other => candle_core::bail!("linear expects 2-d tensors, got {other:?}"),
    }
}

impl CustomOp3 for Forward {
    fn name(&self) -> &'static str {
        "fe-linear"
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
        let ((n, i), (o, i2)) = (dims2(l1)?, dims2(l2)?);
        if i != i2 {
            candle_core::bail!("linear: input has {i} features, the weight takes {i2}")
        }
        let (x, w, b) = (f32_data(s1, l1)?, f32_data(s2, l2)?, f32_data(s3, l3)?);
        let mut y = vec![0f32; n * o];
        if self.1 {
            for row in y.chunks_mut(o) {
                row.copy_from_slice(&b);
            }
        }
        matmul(n, o, i, &mut y, self.1, &x, (i, 1), &w, (1, i), true);
        Ok((CpuStorage::F32(y), Shape::from((n, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.detach();
        let dx = grad.matmul(&w.detach())?;
        if !self.0 {
            return Ok((Some(dx), None, None));
        }
        let dw = grad.t()?.matmul(&x.detach())?;
        let db = if self.1 { Some(grad.sum(0)?) } else { None };
        Ok((Some(dx), Some(dw), db))
    }
}

/// `x` [N, in] times `w` [out, in] transposed, plus `b` [out], with the gradients `grads`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>, grads: Grads) -> Result<Tensor> {
    let bias = match b {
        Some(b) => b.contiguous()?,
        None => Tensor::zeros(w.dim(0)?, w.dtype(), w.device())?,
    };
    apply3(&x.contiguous()?, &w.contiguous()?, &bias, Forward(grads.weights(), b.is_some()), grads)
}
