//! Max pooling with padding and ceil mode; the gradient goes to the first maximum of each
//! window (PyTorch's rule). The forward pass keeps the index of each window's maximum for
//! the backward pass.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::f32_data;
use crate::engine::model::ops::{Axis, Pool2d};

#[derive(Clone, Copy)]
struct Geo {
    p: Pool2d,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

/// The input rows (or columns) window `o` covers, clipped to the image.
#[inline]
fn span(a: Axis, o: usize, len: usize) -> (usize, usize) {
    let start = (o * a.stride) as isize - a.padding as isize;
    let lo = start.max(0) as usize;
    let hi = ((start + a.kernel as isize).max(0) as usize).min(len);
    (lo, hi)
}

/// A later candidate takes the place when larger, or when NaN (PyTorch's rule); written
/// without branches so the compiler can vectorise the loops.
#[inline(always)]
fn pick(best: (f32, u32), cand: (f32, u32)) -> (f32, u32) {
    let take = (cand.0 > best.0) | cand.0.is_nan();
    (if take { cand.0 } else { best.0 }, if take { cand.1 } else { best.1 })
}

impl Geo {
    fn new(p: Pool2d, dims: &[usize]) -> Result<(usize, Self)> {
        let &[n, c, h, w] = dims else { candle_core::bail!("max_pool2d expects a 4-d input, got {dims:?}") };
        let Some((oh, ow)) = p.output(h, w) else {
            candle_core::bail!("pooling window {}x{} does not fit the {h}x{w} input", p.h.kernel, p.w.kernel)
        };
        Ok((n * c, Self { p, h, w, oh, ow }))
    }

    /// Maxima and their indices for one plane; `cols` holds each output column's input
    /// span (the same for every plane).
    fn plane(&self, cols: &[(usize, usize)], x: &[f32], out: &mut [f32], idx: &mut [u32]) {
        let (a, b) = (self.p.h, self.p.w);
        if a.kernel == 2 && a.stride == 2 && b.kernel == 2 && b.stride == 2 && a.padding == 0 && b.padding == 0 {
            return self.plane_2x2(x, out, idx);
        }
        for oy in 0..self.oh {
            let (y0, y1) = span(a, oy, self.h);
            for (ox, &(x0, x1)) in cols.iter().enumerate() {
                let mut best = (f32::NEG_INFINITY, u32::MAX);
                if y0 < y1 && x0 < x1 {
                    // The window's first element, then every later one by PyTorch's rule.
                    best = (x[y0 * self.w + x0], (y0 * self.w + x0) as u32);
                    for y in y0..y1 {
                        for (xx, &v) in x[y * self.w + x0..y * self.w + x1].iter().enumerate() {
                            best = pick(best, (v, (y * self.w + x0 + xx) as u32));
                        }
                    }
                }
                out[oy * self.ow + ox] = best.0;
                idx[oy * self.ow + ox] = best.1;
            }
        }
    }

    /// The common 2x2, stride-2, unpadded case (the window always lies inside the image),
    /// written without branches so the compiler can vectorise it.
    fn plane_2x2(&self, x: &[f32], out: &mut [f32], idx: &mut [u32]) {
        let w = self.w;
        for oy in 0..self.oh {
            let (y0, y1) = (2 * oy * w, (2 * oy + 1) * w);
            let (r0, r1) = (&x[y0..y0 + 2 * self.ow], &x[y1..y1 + 2 * self.ow]);
            let (o, ix) = (&mut out[oy * self.ow..(oy + 1) * self.ow], &mut idx[oy * self.ow..(oy + 1) * self.ow]);
            for ox in 0..self.ow {
                let c = 2 * ox;
                let mut best = (r0[c], (y0 + c) as u32);
                best = pick(best, (r0[c + 1], (y0 + c + 1) as u32));
                best = pick(best, (r1[c], (y1 + c) as u32));
                best = pick(best, (r1[c + 1], (y1 + c + 1) as u32));
                o[ox] = best.0;
                ix[ox] = best.1;
            }
        }
    }
}

/// The op keeps the forward pass's argmax indices (per plane) for its backward pass.
struct MaxPool {
    p: Pool2d,
    indices: Mutex<Option<Vec<u32>>>,
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "fe-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (planes, g) = Geo::new(self.p, l.dims())?;
        let x = f32_data(s, l)?;
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        let mut y = vec![0f32; planes * ohw];
        let mut idx = vec![0u32; planes * ohw];
        let per = super::min_planes(hw);
        let cols: Vec<(usize, usize)> = (0..g.ow).map(|ox| span(g.p.w, ox, g.w)).collect();
        y.par_chunks_mut(ohw * per).zip(idx.par_chunks_mut(ohw * per)).enumerate().for_each(|(t, (out, ix))| {
            for (j, (o, i)) in out.chunks_mut(ohw).zip(ix.chunks_mut(ohw)).enumerate() {
                let plane = t * per + j;
                g.plane(&cols, &x[plane * hw..(plane + 1) * hw], o, i);
            }
        });
        if let Ok(mut slot) = self.indices.lock() {
            *slot = Some(idx);
        }
        let d = l.dims();
        Ok((CpuStorage::F32(y), Shape::from((d[0], d[1], g.oh, g.ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let indices = self.indices.lock().ok().and_then(|s| s.clone());
        let Some(indices) = indices else { candle_core::bail!("max_pool2d backward without its forward pass") };
        let back = MaxPoolBackward { p: self.p, input: arg.dims().to_vec(), indices };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&back)?))
    }
}

/// Scatters each output gradient to its window's maximum.
struct MaxPoolBackward {
    p: Pool2d,
    input: Vec<usize>,
    indices: Vec<u32>,
}

impl CustomOp1 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "fe-max-pool2d-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (planes, g) = Geo::new(self.p, &self.input)?;
        let dy = f32_data(s, l)?;
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        if dy.len() != planes * ohw || self.indices.len() != planes * ohw {
            candle_core::bail!("max_pool2d backward: gradient of the wrong size")
        }
        let mut dx = vec![0f32; planes * hw];
        let per = super::min_planes(hw);
        dx.par_chunks_mut(hw * per).enumerate().for_each(|(t, block)| {
            for (k, out) in block.chunks_mut(hw).enumerate() {
                let i = t * per + k;
                let grads = &dy[i * ohw..(i + 1) * ohw];
                for (&j, &gv) in self.indices[i * ohw..(i + 1) * ohw].iter().zip(grads) {
                    if let Some(o) = out.get_mut(j as usize) {
                        *o += gv;
                    }
                }
            }
        });
        Ok((CpuStorage::F32(dx), Shape::from(self.input.clone())))
    }
}

pub fn max_pool2d(x: &Tensor, p: &Pool2d) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool { p: *p, indices: Mutex::new(None) })
}
