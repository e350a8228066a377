//! Max pooling with padding and ceil mode; the gradient goes to the first maximum of each
//! window (PyTorch's rule).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::f32_data;
use crate::engine::model::ops::Pool2d;

#[derive(Clone, Copy)]
struct Geo {
    p: Pool2d,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

impl Geo {
    fn new(p: Pool2d, dims: &[usize]) -> Result<(usize, Self)> {
        let &[n, c, h, w] = dims else { candle_core::bail!("max_pool2d expects a 4-d input, got {dims:?}") };
        let Some((oh, ow)) = p.output(h, w) else {
            candle_core::bail!("pooling window {}x{} does not fit the {h}x{w} input", p.h.kernel, p.w.kernel)
        };
        Ok((n * c, Self { p, h, w, oh, ow }))
    }

    /// Index in the plane of the first maximum of window (oy, ox), or None if the window
    /// holds only padding.
    #[inline]
    fn argmax(&self, plane: &[f32], oy: usize, ox: usize) -> Option<usize> {
        let (a, b) = (self.p.h, self.p.w);
        let y0 = (oy * a.stride) as isize - a.padding as isize;
        let x0 = (ox * b.stride) as isize - b.padding as isize;
        let mut best: Option<(usize, f32)> = None;
        for ky in 0..a.kernel as isize {
            let y = y0 + ky;
            if y < 0 || y >= self.h as isize {
                continue;
            }
            for kx in 0..b.kernel as isize {
                let x = x0 + kx;
                if x < 0 || x >= self.w as isize {
                    continue;
                }
                let i = y as usize * self.w + x as usize;
                let v = plane[i];
                // NaN propagates, as in PyTorch.
                if best.is_none_or(|(_, m)| v > m || (v.is_nan() && !m.is_nan())) {
                    best = Some((i, v));
                }
            }
        }
        best.map(|(i, _)| i)
    }
}

struct MaxPool(Pool2d);

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "fe-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (planes, g) = Geo::new(self.0, l.dims())?;
        let x = f32_data(s, l)?;
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        let mut y = vec![0f32; planes * ohw];
        y.par_chunks_mut(ohw).enumerate().for_each(|(i, out)| {
            let plane = &x[i * hw..(i + 1) * hw];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    out[oy * g.ow + ox] = g.argmax(plane, oy, ox).map_or(f32::NEG_INFINITY, |j| plane[j]);
                }
            }
        });
        let d = l.dims();
        Ok((CpuStorage::F32(y), Shape::from((d[0], d[1], g.oh, g.ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &MaxPoolBackward(self.0))?))
    }
}

/// Scatters each output gradient to its window's first maximum (found again from the input).
struct MaxPoolBackward(Pool2d);

impl CustomOp2 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "fe-max-pool2d-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, g) = Geo::new(self.0, l1.dims())?;
        let (x, dy) = (f32_data(s1, l1)?, f32_data(s2, l2)?);
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(hw).enumerate().for_each(|(i, out)| {
            let plane = &x[i * hw..(i + 1) * hw];
            let grads = &dy[i * ohw..(i + 1) * ohw];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    if let Some(j) = g.argmax(plane, oy, ox) {
                        out[j] += grads[oy * g.ow + ox];
                    }
                }
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

pub fn max_pool2d(x: &Tensor, p: &Pool2d) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool(*p))
}
