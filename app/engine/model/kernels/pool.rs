//! Max pooling with padding and ceil mode; the gradient goes to the first maximum of each
//! window (PyTorch's rule). The forward pass keeps the index of each window's maximum for
//! the backward pass.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::affine::affine;
use super::f32_data;
use crate::engine::model::ops::{Axis, Pool2d};

struct Geo {
    p: Pool2d,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    /// For 3x3 windows at stride 2 on maps whose output rows fit in [`LANES`]: which
    /// window columns read inside the image.
    lanes: Option<Lanes>,
}

/// Output columns handled at once by [`Geo::plane_3x3s2`].
const LANES: usize = 8;

/// Per window tap k (0..3) and output column: the input column it reads and whether that
/// lies inside the image (and the output column inside the map), as an all-ones mask.
struct Lanes {
    col: [[usize; LANES]; 3],
    inside: [[u32; LANES]; 3],
}

impl Lanes {
    fn new(a: Axis, w: usize, ow: usize) -> Option<Self> {
        if a.kernel != 3 || a.stride != 2 || ow > LANES {
            return None;
        }
        let mut l = Self { col: [[0; LANES]; 3], inside: [[0; LANES]; 3] };
        for k in 0..3 {
            for ox in 0..ow {
                let c = (2 * ox + k) as isize - a.padding as isize;
                if c >= 0 && (c as usize) < w {
                    (l.col[k][ox], l.inside[k][ox]) = (c as usize, u32::MAX);
                }
            }
        }
        Some(l)
    }
}

/// One lane set of window maxima: values, plane indices, and whether any element was seen
/// (all-ones masks, so that the lanes compile to vector operations).
#[derive(Clone, Copy)]
struct Best {
    v: [f32; LANES],
    i: [u32; LANES],
    seen: [u32; LANES],
}

/// All ones when `b`.
#[inline(always)]
fn mask(b: bool) -> u32 {
    (b as u32).wrapping_neg()
}

impl Best {
    const NONE: Self = Self { v: [f32::NEG_INFINITY; LANES], i: [u32::MAX; LANES], seen: [0; LANES] };

    /// The scan's rule lane by lane: the first element seen, then a later one when larger
    /// or NaN.
    /// Indices are carried only when `INDICES`.
    #[inline(always)]
    fn take<const INDICES: bool>(&mut self, v: &[f32; LANES], i: &[u32; LANES], inside: &[u32; LANES]) {
        for l in 0..LANES {
            let m = inside[l] & (!self.seen[l] | mask(v[l] > self.v[l]) | mask(v[l].is_nan()));
            self.v[l] = f32::from_bits((v[l].to_bits() & m) | (self.v[l].to_bits() & !m));
            if INDICES {
                self.i[l] = (i[l] & m) | (self.i[l] & !m);
            }
            self.seen[l] |= inside[l];
        }
    }
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
        let lanes = if p.h.kernel == 3 && p.h.stride == 2 { Lanes::new(p.w, w, ow) } else { None };
        Ok((n * c, Self { p, h, w, oh, ow, lanes }))
    }

    /// Maxima and (when `INDICES`) their indices for one plane; `cols` holds each output
    /// column's input span (the same for every plane).
    /// `rows` is scratch for [`Self::plane_3x3s2`], kept across the planes of a task.
    fn plane<const INDICES: bool>(
        &self,
        cols: &[(usize, usize)],
        x: &[f32],
        out: &mut [f32],
        idx: &mut [u32],
        rows: &mut Vec<Best>,
    ) {
        let (a, b) = (self.p.h, self.p.w);
        if a.kernel == 2 && a.stride == 2 && b.kernel == 2 && b.stride == 2 && a.padding == 0 && b.padding == 0 {
            return self.plane_2x2::<INDICES>(x, out, idx);
        }
        if let Some(lanes) = &self.lanes {
            return self.plane_3x3s2::<INDICES>(lanes, x, out, idx, rows);
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
                if INDICES {
                    idx[oy * self.ow + ox] = best.1;
                }
            }
        }
    }

    /// 3x3 windows at stride 2 (a ResNet stem's pool) with output rows of at most
    /// [`LANES`] columns: every input row's window maxima along x as one set of lanes, then
    /// three rows of those per output row, so each step of the scan is a vector operation.
    /// Taking each row's first maximum, then the first row holding the largest, picks the
    /// element a row-by-row scan picks; NaN ends in the last NaN either way.
    fn plane_3x3s2<const INDICES: bool>(
        &self,
        lanes: &Lanes,
        x: &[f32],
        out: &mut [f32],
        idx: &mut [u32],
        rows: &mut Vec<Best>,
    ) {
        let (w, ow, a) = (self.w, self.ow, self.p.h);
        rows.clear();
        rows.resize(self.h, Best::NONE);
        for (y, best) in rows.iter_mut().enumerate() {
            let line = &x[y * w..(y + 1) * w];
            for k in 0..3 {
                let cols = &lanes.col[k];
                best.take::<INDICES>(&cols.map(|c| line[c]), &cols.map(|c| (y * w + c) as u32), &lanes.inside[k]);
            }
        }
        for oy in 0..self.oh {
            let mut best = Best::NONE;
            for k in 0..3 {
                let y = (2 * oy + k) as isize - a.padding as isize;
                if y >= 0 && (y as usize) < self.h {
                    let r = &rows[y as usize];
                    best.take::<INDICES>(&r.v, &r.i, &r.seen);
                }
            }
            out[oy * ow..(oy + 1) * ow].copy_from_slice(&best.v[..ow]);
            if INDICES {
                idx[oy * ow..(oy + 1) * ow].copy_from_slice(&best.i[..ow]);
            }
        }
    }

    /// The common 2x2, stride-2, unpadded case (the window always lies inside the image),
    /// written without branches so the compiler can vectorise it.
    fn plane_2x2<const INDICES: bool>(&self, x: &[f32], out: &mut [f32], idx: &mut [u32]) {
        let w = self.w;
        for oy in 0..self.oh {
            let (y0, y1) = (2 * oy * w, (2 * oy + 1) * w);
            let (r0, r1) = (&x[y0..y0 + 2 * self.ow], &x[y1..y1 + 2 * self.ow]);
            let o = &mut out[oy * self.ow..(oy + 1) * self.ow];
            for ox in 0..self.ow {
                let c = 2 * ox;
                let mut best = (r0[c], (y0 + c) as u32);
                best = pick(best, (r0[c + 1], (y0 + c + 1) as u32));
                best = pick(best, (r1[c], (y1 + c) as u32));
                best = pick(best, (r1[c + 1], (y1 + c + 1) as u32));
                o[ox] = best.0;
                if INDICES {
                    idx[oy * self.ow + ox] = best.1;
                }
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
        let (y, idx, shape) = pool_forward(self.p, l.dims(), &f32_data(s, l)?, true)?;
        if let Ok(mut slot) = self.indices.lock() {
            *slot = idx;
        }
        Ok((CpuStorage::F32(y), shape))
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
        let dx = unpool(self.p, &self.input, &self.indices, &f32_data(s, l)?, None)?;
        Ok((CpuStorage::F32(dx), Shape::from(self.input.clone())))
    }
}

/// Max pooling of whole planes of one size, plane after plane.
pub(super) struct Pooler {
    geo: Geo,
    /// Each output column's input span.
    cols: Vec<(usize, usize)>,
    pub oh: usize,
    pub ow: usize,
}

impl Pooler {
    pub fn new(p: Pool2d, h: usize, w: usize) -> Result<Self> {
        let (_, geo) = Geo::new(p, &[1, 1, h, w])?;
        let cols = (0..geo.ow).map(|ox| span(p.w, ox, w)).collect();
        Ok(Self { oh: geo.oh, ow: geo.ow, geo, cols })
    }

    /// Output values per plane.
    pub fn out_len(&self) -> usize {
        self.oh * self.ow
    }

    /// Pools the planes `x` [planes, h, w] into `out` [planes, oh, ow] and, unless `idx`
    /// is empty, each window's index of its maximum into `idx`. Without indices the scan
    /// is the same, so the values are too.
    pub fn planes(&self, x: &[f32], out: &mut [f32], idx: &mut [u32]) {
        let (hw, ohw) = (self.geo.h * self.geo.w, self.out_len());
        let mut rows = Vec::new();
        for (j, o) in out.chunks_mut(ohw).enumerate() {
            let plane = &x[j * hw..(j + 1) * hw];
            match idx.is_empty() {
                true => self.geo.plane::<false>(&self.cols, plane, o, &mut [], &mut rows),
                false => self.geo.plane::<true>(&self.cols, plane, o, &mut idx[j * ohw..(j + 1) * ohw], &mut rows),
            }
        }
    }
}

/// Max pooling of `x` with dims `dims` [n, c, h, w]: the maxima, when `indices` each
/// window's index of its maximum within its plane (the backward pass's), and the output's
/// shape.
pub(super) fn pool_forward(
    p: Pool2d,
    dims: &[usize],
    x: &[f32],
    indices: bool,
) -> Result<(Vec<f32>, Option<Vec<u32>>, Shape)> {
    let (planes, g) = Geo::new(p, dims)?;
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    if x.len() != planes * hw {
        candle_core::bail!("max_pool2d: {} values for dims {dims:?}", x.len())
    }
    let pooler = Pooler::new(p, g.h, g.w)?;
    let mut y = vec![0f32; planes * ohw];
    let mut idx = vec![0u32; if indices { planes * ohw } else { 0 }];
    let per = super::min_planes(hw);
    let shape = Shape::from((dims[0], dims[1], g.oh, g.ow));
    if indices {
        y.par_chunks_mut(ohw * per)
            .zip(idx.par_chunks_mut(ohw * per))
            .enumerate()
            .for_each(|(t, (out, ix))| pooler.planes(&x[t * per * hw..][..out.len() / ohw * hw], out, ix));
    } else {
        y.par_chunks_mut(ohw * per)
            .enumerate()
            .for_each(|(t, out)| pooler.planes(&x[t * per * hw..][..out.len() / ohw * hw], out, &mut []));
    }
    Ok((y, indices.then_some(idx), shape))
}

/// What follows the pool's input gradient in the same pass: the backward of a per-channel
/// scale `alpha` and, when `relu`, of a ReLU before the pool (see [`unpool`]).
pub(super) struct ScaleBackward<'a> {
    pub alpha: &'a [f32],
    pub relu: bool,
    /// The pool's output, whose signs are ReLU's mask at each window's maximum.
    pub pooled: &'a [f32],
}

/// The gradient at the pool's input [n, c, h, w] (`input`) from the gradient `dy` at its
/// output: each window's gradient added to its maximum, in window order. With `then`,
/// also through ReLU and the scale before the pool, with the roundings of the separate
/// passes: ReLU keeps a sum where the element is positive, which is where the pooled
/// value of every window it is the maximum of is positive; then `v * alpha + 0`.
pub(super) fn unpool(
    p: Pool2d,
    input: &[usize],
    indices: &[u32],
    dy: &[f32],
    then: Option<ScaleBackward>,
) -> Result<Vec<f32>> {
    let (planes, g) = Geo::new(p, input)?;
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    if dy.len() != planes * ohw || indices.len() != planes * ohw {
        candle_core::bail!("max_pool2d backward: gradient of the wrong size")
    }
    if let Some(t) = &then
        && (t.pooled.len() != dy.len() || t.alpha.len() != input[1])
    {
        candle_core::bail!("max_pool2d backward: pooled output or scales of the wrong size")
    }
    let dx = super::build_planes(planes, hw, |i, out| {
        let at = i * ohw..(i + 1) * ohw;
        let kept = |o: usize| then.as_ref().is_none_or(|t| !t.relu || t.pooled[i * ohw + o] > 0.0);
        for (o, (&j, &gv)) in indices[at.clone()].iter().zip(&dy[at]).enumerate() {
            if let Some(v) = out.get_mut(j as usize)
                && kept(o)
            {
                *v += gv;
            }
        }
        if let Some(t) = &then {
            let a = t.alpha[i % input[1]];
            out.iter_mut().for_each(|v| *v = affine(*v, a, 0.0));
        }
    });
    Ok(dx)
}

pub fn max_pool2d(x: &Tensor, p: &Pool2d) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool { p: *p, indices: Mutex::new(None) })
}
