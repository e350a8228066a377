//! Activation and pooling functions with PyTorch's forward and backward semantics.
//!
//! candle's own `max_pool2d` backward scales gradients by 1/(k*k) and its pools take
//! no padding (see ENGINE-NOTES.md); these are built from reshapes, gathers and
//! reductions whose candle backward passes are exact.

use candle_core::{D, DType, Result, Tensor};

/// ReLU whose gradient is zero at zero, as PyTorch's (candle's passes it through).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if super::kernels::enabled_for(x) {
        return super::kernels::relu(x);
    }
    let mask = x.gt(0f64)?.to_dtype(x.dtype())?.detach();
    x.mul(&mask)
}

/// `min(max(x, lo), hi)` with PyTorch's hardtanh gradient: 1 strictly between the bounds,
/// else 0 (candle's clamp would halve it at the ends). A missing bound does not clamp.
pub fn hardtanh(x: &Tensor, lo: Option<f64>, hi: Option<f64>) -> Result<Tensor> {
    let mask = |t: Tensor| -> Result<Tensor> { t.to_dtype(x.dtype()).map(|t| t.detach()) };
    let (mut inside, mut fixed): (Option<Tensor>, Option<Tensor>) = (None, None);
    for (bound, lower) in [(lo, true), (hi, false)] {
        let Some(b) = bound else { continue };
        let (keep, clamped) = if lower { (x.gt(b)?, x.le(b)?) } else { (x.lt(b)?, x.ge(b)?) };
        let keep = mask(keep)?;
        inside = Some(match inside {
            Some(i) => i.mul(&keep)?,
            None => keep,
        });
        // Values clamped to 0 add nothing.
        if b != 0.0 {
            let v = (mask(clamped)? * b)?;
            fixed = Some(match fixed {
                Some(f) => f.add(&v)?,
                None => v,
            });
        }
    }
    let y = match inside {
        Some(i) => x.mul(&i)?,
        None => x.clone(),
    };
    match fixed {
        Some(f) => y.add(&f),
        None => Ok(y),
    }
}

/// ReLU6, `min(max(x, 0), 6)`, with PyTorch's gradient.
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    hardtanh(x, Some(0.0), Some(6.0))
}

/// SiLU (swish), `x * sigmoid(x)`; candle's backward is exact.
pub fn silu(x: &Tensor) -> Result<Tensor> {
    x.silu()
}

/// `relu(a + b)`: one pass on the CPU kernels.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if super::kernels::enabled_for(a) {
        return super::kernels::add_relu(a, b);
    }
    relu(&(a + b)?)
}

/// Pooling geometry along one spatial axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Axis {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Axis {
    /// Output length, by PyTorch's rule (`pooling_output_shape`).
    pub fn output(self, input: usize, ceil_mode: bool) -> Option<usize> {
        let span = (input + 2 * self.padding).checked_sub(self.kernel)?;
        let mut out = if ceil_mode { span.div_ceil(self.stride) } else { span / self.stride } + 1;
        if ceil_mode && (out - 1) * self.stride >= input + self.padding {
            out -= 1;
        }
        Some(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2d {
    pub h: Axis,
    pub w: Axis,
    pub ceil_mode: bool,
}

impl Pool2d {
    pub fn square(kernel: usize, stride: usize, padding: usize) -> Self {
        let a = Axis { kernel, stride, padding };
        Self { h: a, w: a, ceil_mode: false }
    }

    pub fn output(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        Some((self.h.output(h, self.ceil_mode)?, self.w.output(w, self.ceil_mode)?))
    }
}

/// Pads spatial dims with `value`: `before` on the leading side, `after` on the trailing side.
pub(crate) fn pad_value(x: &Tensor, dim: usize, before: usize, after: usize, value: f64) -> Result<Tensor> {
    if before == 0 && after == 0 {
        return Ok(x.clone());
    }
    let mut parts = Vec::with_capacity(3);
    let mut shape = x.dims().to_vec();
    if before > 0 {
        shape[dim] = before;
        parts.push(Tensor::full(value as f32, shape.clone(), x.device())?.to_dtype(x.dtype())?);
    }
    parts.push(x.clone());
    if after > 0 {
        shape[dim] = after;
        parts.push(Tensor::full(value as f32, shape, x.device())?.to_dtype(x.dtype())?);
    }
    Tensor::cat(&parts, dim)
}

/// Brings an axis to exactly the padded length the windows cover: `padding` in front,
/// then whatever the last window needs behind (or a cut, when floor mode drops a tail).
fn fit_axis(x: &Tensor, dim: usize, a: Axis, out: usize, value: f64) -> Result<Tensor> {
    let len = x.dim(dim)?;
    let needed = (out - 1) * a.stride + a.kernel; // length covered by the windows
    let x = pad_value(x, dim, a.padding, 0, value)?;
    let have = len + a.padding;
    if needed > have { pad_value(&x, dim, 0, needed - have, value) } else { x.narrow(dim, 0, needed) }
}

/// All pooling windows as a trailing axis: (N, C, OH, OW, KH*KW).
fn windows(x: &Tensor, p: &Pool2d, oh: usize, ow: usize, pad: f64) -> Result<Tensor> {
    let (n, c, _, _) = x.dims4()?;
    let x = fit_axis(x, 2, p.h, oh, pad)?;
    let x = fit_axis(&x, 3, p.w, ow, pad)?;
    let (kh, kw) = (p.h.kernel, p.w.kernel);
    if p.h.kernel == p.h.stride && p.w.kernel == p.w.stride {
        return x.reshape((n, c, oh, kh, ow, kw))?.permute((0, 1, 2, 4, 3, 5))?.contiguous()?.reshape((
            n,
            c,
            oh,
            ow,
            kh * kw,
        ));
    }
    let rows = |off: usize, a: Axis, count: usize| -> Result<Tensor> {
        let idx: Vec<u32> = (0..count).map(|o| (off + o * a.stride) as u32).collect();
        Tensor::from_vec(idx, count, x.device())
    };
    let mut parts = Vec::with_capacity(kh * kw);
    for i in 0..kh {
        let xi = x.index_select(&rows(i, p.h, oh)?, 2)?;
        for j in 0..kw {
            parts.push(xi.index_select(&rows(j, p.w, ow)?, 3)?);
        }
    }
    Tensor::stack(&parts, 4)
}

fn output_or_err(p: &Pool2d, h: usize, w: usize) -> Result<(usize, usize)> {
    p.output(h, w).ok_or_else(|| {
        candle_core::Error::Msg(format!("pooling window {}x{} does not fit the {h}x{w} input", p.h.kernel, p.w.kernel))
    })
}

/// Max pooling; the gradient goes to the first maximum of each window, as in PyTorch.
pub fn max_pool2d(x: &Tensor, p: &Pool2d) -> Result<Tensor> {
    if super::kernels::enabled_for(x) {
        return super::kernels::max_pool2d(x, p);
    }
    let (_, _, h, w) = x.dims4()?;
    let (oh, ow) = output_or_err(p, h, w)?;
    let win = windows(x, p, oh, ow, f64::NEG_INFINITY)?;
    let idx = win.argmax_keepdim(D::Minus1)?.detach();
    win.gather(&idx, D::Minus1)?.squeeze(D::Minus1)
}

/// Average pooling with zero padding counted (PyTorch's `count_include_pad=True`).
pub fn avg_pool2d(x: &Tensor, p: &Pool2d) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (oh, ow) = output_or_err(p, h, w)?;
    let sum = windows(x, p, oh, ow, 0.0)?.sum(D::Minus1)?;
    // A window hanging over the padded edge (ceil mode) divides by its clipped size.
    let extent = |a: Axis, len: usize, o: usize| {
        let start = o * a.stride;
        let end = (start + a.kernel).min(len + 2 * a.padding);
        (end - start) as f32
    };
    let mut div = Vec::with_capacity(oh * ow);
    for i in 0..oh {
        for j in 0..ow {
            div.push(extent(p.h, h, i) * extent(p.w, w, j));
        }
    }
    let div = Tensor::from_vec(div, (1, 1, oh, ow), x.device())?.to_dtype(x.dtype())?;
    sum.broadcast_div(&div)
}

/// Adaptive average pooling with PyTorch's bins: `[floor(i*L/O), ceil((i+1)*L/O))`.
pub fn adaptive_avg_pool2d(x: &Tensor, oh: usize, ow: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if oh == 1 && ow == 1 {
        return x.mean_keepdim(3)?.mean_keepdim(2);
    }
    if h % oh == 0 && w % ow == 0 {
        return avg_pool2d(x, &Pool2d::square(1, 1, 0).with_kernels(h / oh, w / ow));
    }
    let bins = |dim: usize, len: usize, out: usize, t: &Tensor| -> Result<Tensor> {
        let parts = (0..out)
            .map(|i| {
                let start = i * len / out;
                let end = ((i + 1) * len).div_ceil(out);
                t.narrow(dim, start, end - start)?.mean_keepdim(dim)
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, dim)
    };
    let x = bins(2, h, oh, x)?;
    bins(3, w, ow, &x)
}

impl Pool2d {
    fn with_kernels(mut self, kh: usize, kw: usize) -> Self {
        self.h = Axis { kernel: kh, stride: kh, padding: 0 };
        self.w = Axis { kernel: kw, stride: kw, padding: 0 };
        self
    }
}

/// Flattens all but the batch dimension, channel-major like `torch.flatten(x, 1)`.
pub fn flatten(x: &Tensor) -> Result<Tensor> {
    x.flatten_from(1)
}

/// `sign` with sign(0) = 0 (and NaN mapped to 0, so a broken gradient never moves an input).
pub fn sign(x: &Tensor) -> Result<Tensor> {
    let pos = x.gt(0f64)?.to_dtype(DType::F32)?;
    let neg = x.lt(0f64)?.to_dtype(DType::F32)?;
    pos.sub(&neg)?.to_dtype(x.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn grad_of(x: &Var, y: &Tensor) -> Vec<f32> {
        let g = y.sum_all().unwrap().backward().unwrap();
        g.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn max_pool_gradient_is_one_at_the_maximum() {
        let x = Var::from_vec(vec![1f32, 2., 3., 4.], (1, 1, 2, 2), &Device::Cpu).unwrap();
        let y = max_pool2d(x.as_tensor(), &Pool2d::square(2, 2, 0)).unwrap();
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![4.0]);
        assert_eq!(grad_of(&x, &y), vec![0., 0., 0., 1.]);
    }

    #[test]
    fn max_pool_ties_send_the_gradient_to_the_first() {
        let x = Var::from_vec(vec![5f32, 5., 5., 5.], (1, 1, 2, 2), &Device::Cpu).unwrap();
        let y = max_pool2d(x.as_tensor(), &Pool2d::square(2, 2, 0)).unwrap();
        assert_eq!(grad_of(&x, &y), vec![1., 0., 0., 0.]);
    }

    #[test]
    fn overlapping_padded_max_pool_matches_hand_computation() {
        // 3x3 kernel, stride 2, padding 1 over 4x4: outputs at window centres 0 and 2.
        let v: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let x = Var::from_vec(v, (1, 1, 4, 4), &Device::Cpu).unwrap();
        let y = max_pool2d(x.as_tensor(), &Pool2d::square(3, 2, 1)).unwrap();
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![5., 7., 13., 15.]);
        let g = grad_of(&x, &y);
        assert_eq!(g.iter().sum::<f32>(), 4.0);
        assert_eq!((g[5], g[7], g[13], g[15]), (1., 1., 1., 1.));
    }

    #[test]
    fn ceil_mode_output_sizes_follow_pytorch() {
        let a = Axis { kernel: 3, stride: 2, padding: 0 };
        assert_eq!(a.output(15, true), Some(7));
        assert_eq!(a.output(14, true), Some(7));
        assert_eq!(a.output(14, false), Some(6));
        let p = Axis { kernel: 3, stride: 2, padding: 1 };
        assert_eq!(p.output(5, true), Some(3));
    }

    #[test]
    fn relu_gradient_is_zero_at_zero() {
        let x = Var::from_vec(vec![-1f32, 0., 2.], 3, &Device::Cpu).unwrap();
        let y = relu(x.as_tensor()).unwrap();
        assert_eq!(grad_of(&x, &y), vec![0., 0., 1.]);
    }

    #[test]
    fn sign_of_zero_is_zero() {
        let x = Tensor::new(&[-2f32, 0.0, -0.0, 3.0, f32::NAN], &Device::Cpu).unwrap();
        assert_eq!(sign(&x).unwrap().to_vec1::<f32>().unwrap(), vec![-1., 0., 0., 1., 0.]);
    }

    #[test]
    fn adaptive_pool_uneven_bins() {
        let v: Vec<f32> = (0..5).map(|i| i as f32).collect();
        let x = Tensor::from_vec(v, (1, 1, 1, 5), &Device::Cpu).unwrap();
        let y = adaptive_avg_pool2d(&x, 1, 3).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // bins [0,2) [1,4) [3,5)
        assert_eq!(y, vec![0.5, 2.0, 3.5]);
    }
}
