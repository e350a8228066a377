//! 2-D convolution by im2col and gemm, forward and both backward passes.

use std::mem::MaybeUninit;
use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::pool::{Pooler, pool_forward};
use super::transpose::transpose;
use super::{Grads, apply3, f32_data, gemm_strided, matmul, threads};
use crate::engine::model::ops::Pool2d;

mod direct;
mod epilogue;
mod kept;
mod packed;

use direct::Pass;
pub use epilogue::Epilogue;
use epilogue::{EpilogueBackward, PoolBackward, Through};
use kept::{Derived, WeightSource, kept};

/// Convolution geometry (PyTorch's `nn.Conv2d` arguments, square stride and dilation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub stride: usize,
    pub padding: [usize; 2],
    pub dilation: usize,
    pub groups: usize,
}

/// Sizes of one convolution call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    g: Geometry,
}

impl Dims {
    fn new(x: &[usize], k: &[usize], g: Geometry) -> Result<Self> {
        let (&[n, c_in, h, w], &[c_out, cig, kh, kw]) = (x, k) else {
            candle_core::bail!("conv2d expects 4-d input and kernel, got {x:?} and {k:?}")
        };
        if cig * g.groups != c_in || c_out % g.groups != 0 {
            candle_core::bail!("conv2d: input {x:?} does not fit kernel {k:?} with {} groups", g.groups)
        }
        let out = |len: usize, k: usize, p: usize| {
            (len + 2 * p).checked_sub(g.dilation * (k - 1) + 1).map(|v| v / g.stride + 1)
        };
        let (Some(oh), Some(ow)) = (out(h, kh, g.padding[0]), out(w, kw, g.padding[1])) else {
            candle_core::bail!("conv2d: kernel {kh}x{kw} does not fit a {h}x{w} input")
        };
        Ok(Self { n, c_in, h, w, c_out, kh, kw, oh, ow, g })
    }
    fn cin_g(&self) -> usize {
        self.c_in / self.g.groups
    }
    fn cout_g(&self) -> usize {
        self.c_out / self.g.groups
    }
    /// Rows of a group's column matrix.
    fn k(&self) -> usize {
        self.cin_g() * self.kh * self.kw
    }
    /// Output positions per image.
    fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// A 1x1, stride-1, unpadded convolution needs no column matrix: the input is one.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.g.stride == 1 && self.g.padding == [0, 0]
    }
    /// Stride 1 without dilation and as many output columns as input ones (a "same"
    /// convolution): each row of patches is the input plane shifted (see `shifted_plane`).
    fn shifts(&self) -> bool {
        self.g.stride == 1 && self.g.dilation == 1 && self.ow == self.w
    }
    /// Whether patches are gathered through the tap table (see `TABLE_BELOW_WIDTH`).
    fn by_table(&self) -> bool {
        !self.pointwise() && !self.shifts() && self.ow < TABLE_BELOW_WIDTH
    }
    /// Input row of output row `o` at kernel row `k`, if inside the image.
    #[inline]
    fn iy(&self, o: usize, k: usize) -> Option<usize> {
        (o * self.g.stride + k * self.g.dilation).checked_sub(self.g.padding[0]).filter(|&v| v < self.h)
    }
}

/// The output columns [lo, hi) whose input column under kernel column `kx` lies inside the
/// image, and the input column the first of them reads (ix = ox * stride + shift).
fn inside_columns(d: &Dims, kx: usize) -> (usize, usize, usize) {
    let s = d.g.stride;
    let shift = (kx * d.g.dilation) as isize - d.g.padding[1] as isize;
    let lo = if shift >= 0 { 0 } else { ((-shift) as usize).div_ceil(s) }.min(d.ow);
    let hi = if (d.w as isize) <= shift { 0 } else { ((d.w as isize - shift) as usize).div_ceil(s) }.clamp(lo, d.ow);
    (lo, hi, (lo as isize * s as isize + shift) as usize)
}

/// For a "same" convolution ([`Dims::shifts`]), kernel tap (ky, kx)'s row of patches is
/// the input plane shifted by one offset: output position o reads input element o + offset
/// wherever it reads the image. Returns the offset and the output rows [lo, hi) whose
/// input row lies inside the image.
fn shifted_plane(d: &Dims, ky: usize, kx: usize) -> Option<(isize, usize, usize)> {
    if !d.shifts() {
        return None;
    }
    let (ph, w) = (d.g.padding[0], d.w as isize);
    let lo = ph.saturating_sub(ky).min(d.oh);
    let hi = (d.h + ph).saturating_sub(ky).clamp(lo, d.oh);
    Some(((ky as isize - ph as isize) * w + kx as isize - d.g.padding[1] as isize, lo, hi))
}

/// The part of a shifted row [lo * ow, hi * ow) whose source o + offset lies in a plane
/// of `len` elements (the ends left out read padding columns), and where its source
/// starts; `None` when no element does.
fn shifted_span(offset: isize, lo: usize, hi: usize, ow: usize, len: usize) -> Option<(std::ops::Range<usize>, usize)> {
    let start = (lo * ow).max((-offset).max(0) as usize);
    let end = (hi * ow).min((len as isize - offset).max(0) as usize);
    (start < end).then(|| (start..end, (start as isize + offset) as usize))
}

/// Zeroes, in output rows `rows` of a shifted row of patches, the columns outside `inside`
/// (those that read padding, where the shifted copy holds a neighbouring row's values).
fn zero_padding_columns(d: &Dims, row: &mut [f32], rows: std::ops::Range<usize>, inside: std::ops::Range<usize>) {
    for oy in rows {
        let line = &mut row[oy * d.ow..(oy + 1) * d.ow];
        line[..inside.start].fill(0.0);
        line[inside.end..].fill(0.0);
    }
}

/// Writes the patches of one group of one image `x` [cin_g, h, w] into a column matrix:
/// row r of the patches goes to `col[r * stride + offset..][..p]`.
fn im2col(d: &Dims, x: &[f32], col: &mut [f32], stride: usize, offset: usize) {
    let (p, hw, s) = (d.p(), d.h * d.w, d.g.stride);
    for c in 0..d.cin_g() {
        let plane = &x[c * hw..(c + 1) * hw];
        for ky in 0..d.kh {
            for kx in 0..d.kw {
                let r = (c * d.kh + ky) * d.kw + kx;
                let row = &mut col[r * stride + offset..][..p];
                let (ox_lo, ox_hi, first) = inside_columns(d, kx);
                if let Some((shift, oy_lo, oy_hi)) = shifted_plane(d, ky, kx) {
                    // One copy for all rows inside the image (row-by-row copies of 32
                    // elements cost more in calls than they move), then the columns and
                    // rows that read padding are zeroed.
                    if let Some((span, from)) = shifted_span(shift, oy_lo, oy_hi, d.ow, hw) {
                        row[span.clone()].copy_from_slice(&plane[from..from + span.len()]);
                    }
                    row[..oy_lo * d.ow].fill(0.0);
                    row[oy_hi * d.ow..].fill(0.0);
                    zero_padding_columns(d, row, oy_lo..oy_hi, ox_lo..ox_hi);
                    continue;
                }
                for oy in 0..d.oh {
                    let out = &mut row[oy * d.ow..(oy + 1) * d.ow];
                    let Some(iy) = d.iy(oy, ky) else {
                        out.fill(0.0);
                        continue;
                    };
                    let line = &plane[iy * d.w..(iy + 1) * d.w];
                    out[..ox_lo].fill(0.0);
                    out[ox_hi..].fill(0.0);
                    if s == 1 {
                        out[ox_lo..ox_hi].copy_from_slice(&line[first..first + (ox_hi - ox_lo)]);
                    } else {
                        for (o, ix) in out[ox_lo..ox_hi].iter_mut().zip((first..).step_by(s)) {
                            *o = line[ix];
                        }
                    }
                }
            }
        }
    }
}

/// Adds a column-matrix gradient back into one group's input gradient `dx` [cin_g, h, w]:
/// row r is read from `col[r * stride + offset..][..p]` (the inverse of `im2col`). The
/// shifted-plane case zeroes the entries of `col` that read padding first, then adds
/// the rows inside the image in one pass.
fn col2im(d: &Dims, col: &mut [f32], stride: usize, offset: usize, dx: &mut [f32]) {
    let (p, hw, s) = (d.p(), d.h * d.w, d.g.stride);
    for c in 0..d.cin_g() {
        let plane = &mut dx[c * hw..(c + 1) * hw];
        for ky in 0..d.kh {
            for kx in 0..d.kw {
                let r = (c * d.kh + ky) * d.kw + kx;
                let row = &mut col[r * stride + offset..][..p];
                let (ox_lo, ox_hi, first) = inside_columns(d, kx);
                if let Some((shift, oy_lo, oy_hi)) = shifted_plane(d, ky, kx) {
                    zero_padding_columns(d, row, oy_lo..oy_hi, ox_lo..ox_hi);
                    if let Some((span, from)) = shifted_span(shift, oy_lo, oy_hi, d.ow, hw) {
                        for (o, v) in plane[from..from + span.len()].iter_mut().zip(&row[span]) {
                            *o += v;
                        }
                    }
                    continue;
                }
                for oy in 0..d.oh {
                    let Some(iy) = d.iy(oy, ky) else { continue };
                    let line = &mut plane[iy * d.w..(iy + 1) * d.w];
                    let src = &row[oy * d.ow + ox_lo..oy * d.ow + ox_hi];
                    if s == 1 {
                        for (o, v) in line[first..first + src.len()].iter_mut().zip(src) {
                            *o += v;
                        }
                    } else {
                        for (v, ix) in src.iter().zip((first..).step_by(s)) {
                            line[ix] += v;
                        }
                    }
                }
            }
        }
    }
}

/// Below this output width, patches are gathered through a table of source offsets: the
/// row-by-row copies of `im2col` cost more in loop overhead than they move.
const TABLE_BELOW_WIDTH: usize = 16;

/// For each kernel tap t and output position o, the offset in an input plane it reads
/// (`taps[t * p + o]`), or -1 where it reads padding.
fn taps(d: &Dims) -> Vec<i32> {
    let mut t = Vec::with_capacity(d.kh * d.kw * d.p());
    for ky in 0..d.kh {
        for kx in 0..d.kw {
            for oy in 0..d.oh {
                for ox in 0..d.ow {
                    let iy = (oy * d.g.stride + ky * d.g.dilation) as isize - d.g.padding[0] as isize;
                    let ix = (ox * d.g.stride + kx * d.g.dilation) as isize - d.g.padding[1] as isize;
                    let inside = iy >= 0 && ix >= 0 && (iy as usize) < d.h && (ix as usize) < d.w;
                    t.push(if inside { (iy as usize * d.w + ix as usize) as i32 } else { -1 });
                }
            }
        }
    }
    t
}

/// `chunk_cols` through the tap table: rows are written contiguously across images.
fn table_cols(d: &Dims, x: &[f32], imgs: &std::ops::Range<usize>, g: usize, taps: &[i32], col: &mut [f32]) {
    let (p, hw, nt) = (d.p(), d.h * d.w, d.kh * d.kw);
    let width = imgs.len() * p;
    for c in 0..d.cin_g() {
        for t in 0..nt {
            let tap = &taps[t * p..(t + 1) * p];
            let row = &mut col[(c * nt + t) * width..][..width];
            for (j, i) in imgs.clone().enumerate() {
                let plane = &x[(i * d.c_in + g * d.cin_g() + c) * hw..][..hw];
                for (o, &ix) in row[j * p..(j + 1) * p].iter_mut().zip(tap) {
                    *o = if ix >= 0 { plane[ix as usize] } else { 0.0 };
                }
            }
        }
    }
}

/// `col2im` for a whole chunk through the tap table; `dx` holds the chunk's images.
fn table_col2im(d: &Dims, col: &[f32], width: usize, images: usize, g: usize, taps: &[i32], dx: &mut [f32]) {
    let (p, hw, nt) = (d.p(), d.h * d.w, d.kh * d.kw);
    for c in 0..d.cin_g() {
        for t in 0..nt {
            let tap = &taps[t * p..(t + 1) * p];
            let row = &col[(c * nt + t) * width..][..width];
            for j in 0..images {
                let plane = &mut dx[(j * d.c_in + g * d.cin_g() + c) * hw..][..hw];
                for (&v, &ix) in row[j * p..(j + 1) * p].iter().zip(tap) {
                    if ix >= 0 {
                        plane[ix as usize] += v;
                    }
                }
            }
        }
    }
}

/// How images are grouped into one matrix product: a chunk's column matrices sit side by
/// side, so late layers with few positions per image still make wide products.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Images per chunk.
    b: usize,
    chunks: usize,
    /// Run chunks in parallel (else each product is parallel inside).
    by_chunk: bool,
}

impl Plan {
    fn new(d: &Dims) -> Self {
        // Aim for products at least 512 columns wide.
        let b = 512usize.div_ceil(d.p().max(1)).clamp(1, d.n.max(1));
        let chunks = d.n.div_ceil(b).max(1);
        Self { b, chunks, by_chunk: chunks >= threads() }
    }
    fn images(&self, c: usize, n: usize) -> std::ops::Range<usize> {
        c * self.b..((c + 1) * self.b).min(n)
    }
}

/// Runs `f(chunk, out)` with each chunk's part of `out` (`per_image` elements per image).
fn for_chunk_slices<T: Send>(plan: Plan, out: &mut [T], per_image: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    let size = (plan.b * per_image).max(1);
    if plan.by_chunk {
        out.par_chunks_mut(size).enumerate().for_each(|(c, o)| f(c, o));
    } else {
        out.chunks_mut(size).enumerate().for_each(|(c, o)| f(c, o));
    }
}

thread_local! {
    /// Scratch matrices reused across calls on each thread: allocating them afresh costs
    /// page faults and zeroing for every image chunk.
    static SCRATCH: std::cell::RefCell<[Vec<f32>; 2]> = const { std::cell::RefCell::new([Vec::new(), Vec::new()]) };
}

/// Runs `f` with two scratch buffers of this thread (their contents are stale). A thread
/// that re-enters while its buffers are in use (work stealing) gets fresh ones.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>, &mut Vec<f32>) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => {
            let [a, b] = &mut *s;
            f(a, b)
        }
        Err(_) => f(&mut Vec::new(), &mut Vec::new()),
    })
}

/// The column matrix [k, bn * p] of group `g` of images `imgs` (column blocks per image).
fn chunk_cols(d: &Dims, x: &[f32], imgs: &std::ops::Range<usize>, g: usize, taps: &[i32], col: &mut Vec<f32>) {
    let (k, p, hw) = (d.k(), d.p(), d.h * d.w);
    let width = imgs.len() * p;
    col.resize(k * width, 0.0);
    if d.by_table() {
        return table_cols(d, x, imgs, g, taps, col);
    }
    for (j, i) in imgs.clone().enumerate() {
        let xg = &x[(i * d.c_in + g * d.cin_g()) * hw..][..d.cin_g() * hw];
        if d.pointwise() {
            for r in 0..k {
                col[r * width + j * p..][..p].copy_from_slice(&xg[r * p..(r + 1) * p]);
            }
        } else {
            im2col(d, xg, col, width, j * p);
        }
    }
}

/// The patches of group `g` of images `imgs` as rows, [bn * p, k]: one output position per
/// row, the transpose of `chunk_cols` but with each row in tap-major order (tap, channel),
/// see [`untap`]. In the weight gradient's product gemm then gathers the output gradient
/// while packing instead of the larger column matrix (that gather took 15 % of a ResNet-18
/// training step on 32x32 images). Each row is copied as whole channel runs from a
/// zero-bordered channel-last copy of the image, `padded` (an element-wise gather through
/// the tap table took 8 % of that step).
fn chunk_patches(
    d: &Dims,
    x: &[f32],
    imgs: &std::ops::Range<usize>,
    g: usize,
    out: &mut Vec<f32>,
    padded: &mut Vec<f32>,
) {
    let (k, p, hw, cig, s, dil) = (d.k(), d.p(), d.h * d.w, d.cin_g(), d.g.stride, d.g.dilation);
    let pw = d.g.padding[1];
    let wp = d.w + 2 * pw;
    out.resize(imgs.len() * p * k, 0.0);
    for (rows, i) in out.chunks_mut(p * k).zip(imgs.clone()) {
        channels_last_padded(d, &x[(i * d.c_in + g * cig) * hw..][..cig * hw], padded);
        for (o, row) in rows.chunks_mut(k).enumerate() {
            let (oy, ox) = (o / d.ow, o % d.ow);
            for (t, run) in row.chunks_mut(cig).enumerate() {
                let (ky, kx) = (t / d.kw, t % d.kw);
                let at = ((oy * s + ky * dil) * wp + ox * s + kx * dil) * cig;
                run.copy_from_slice(&padded[at..at + cig]);
            }
        }
    }
}

/// One image's group `xg` [cig, h, w] as [h + 2 ph, w + 2 pw, cig], zero on the border.
fn channels_last_padded(d: &Dims, xg: &[f32], padded: &mut Vec<f32>) {
    let (cig, [ph, pw]) = (d.cin_g(), d.g.padding);
    let wp = d.w + 2 * pw;
    padded.resize((d.h + 2 * ph) * wp * cig, 0.0);
    padded[..ph * wp * cig].fill(0.0);
    padded[(ph + d.h) * wp * cig..].fill(0.0);
    for iy in 0..d.h {
        let line = &mut padded[(ph + iy) * wp * cig..][..wp * cig];
        line[..pw * cig].fill(0.0);
        line[(pw + d.w) * cig..].fill(0.0);
        transpose(&xg[iy * d.w..], d.h * d.w, &mut line[pw * cig..], cig, cig, d.w);
    }
}

/// Reorders a group's weight gradient from tap-major rows (`chunk_patches`' order, [cg,
/// taps, cig]) to the weight's own [cg, cig, taps].
fn untap(tap_major: &[f32], cig: usize, taps: usize, dwg: &mut [f32]) {
    for (src, dst) in tap_major.chunks(cig * taps).zip(dwg.chunks_mut(cig * taps)) {
        for (t, run) in src.chunks(cig).enumerate() {
            for (c, &v) in run.iter().enumerate() {
                dst[c * taps + t] = v;
            }
        }
    }
}

/// The convolution with its bias and what follows it in the same op.
struct Forward {
    g: Geometry,
    weight_grad: bool,
    has_bias: bool,
    /// Where the weight comes from when it is a parameter: what the kernels derive from it
    /// (gathered taps, tiles) is then kept between calls.
    weight: Option<WeightSource>,
    then: Option<Epilogue>,
    pool: Option<PoolAfter>,
}

/// A max-pool after the convolution and its epilogue, in the same op: its backward pass
/// then needs neither the convolution's output nor a pass of its own (see `unpool`).
struct PoolAfter {
    p: Pool2d,
    /// The forward pass's index of each window's maximum, kept when a backward pass may follow.
    indices: Mutex<Option<Vec<u32>>>,
    keep_indices: bool,
}

impl CustomOp3 for Forward {
    fn name(&self) -> &'static str {
        "fe-conv2d"
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
        let d = Dims::new(l1.dims(), l2.dims(), self.g)?;
        let (x, w, b) = (f32_data(s1, l1)?, f32_data(s2, l2)?, f32_data(s3, l3)?);
        if let Some(then) = &self.then {
            then.check(d.c_out)?;
        }
        let Some(pool) = &self.pool else {
            let y = self.conv_output(&d, &x, &w, &b);
            return Ok((CpuStorage::F32(y), Shape::from((d.n, d.c_out, d.oh, d.ow))));
        };
        let (pooled, indices, shape) = self.pooled_output(&d, &x, &w, &b)?;
        if let Ok(mut slot) = pool.indices.lock() {
            *slot = indices;
        }
        Ok((CpuStorage::F32(pooled), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if let (None, Some(then), false, true) = (&self.pool, &self.then, self.weight_grad, x.track_op())
            && direct::suits(&Dims::new(x.dims(), w.dims(), self.g)?, Pass::InputGrad)
        {
            // The input's gradient only (attacks) on the direct path: the epilogue's backward
            // pass runs inside it, image by image, instead of as a pass of its own.
            let back =
                BackwardInputThrough { g: self.g, input: x.dims().to_vec(), weight: self.weight, then: then.clone() };
            let dx = grad.contiguous()?.apply_op3_no_bwd(&res.contiguous()?, &w.contiguous()?, &back)?;
            return Ok((Some(dx), None, None));
        }
        let grad = match (&self.pool, &self.then) {
            (Some(pool), then) => {
                let indices = pool.indices.lock().ok().and_then(|s| s.clone());
                let Some(indices) = indices else { candle_core::bail!("conv2d backward without its forward pass") };
                let d = Dims::new(x.dims(), w.dims(), self.g)?;
                let back =
                    PoolBackward { p: pool.p, input: vec![d.n, d.c_out, d.oh, d.ow], indices, then: then.clone() };
                grad.contiguous()?.apply_op2_no_bwd(&res.contiguous()?, &back)?
            }
            (None, Some(then)) => {
                grad.contiguous()?.apply_op2_no_bwd(&res.contiguous()?, &EpilogueBackward(then.clone()))?
            }
            (None, None) => grad.contiguous()?,
        };
        // An input that tracks no gradient (the images, when training) needs none.
        let dx = match x.track_op() {
            true => {
                let back = BackwardInput(self.g, x.dims().to_vec(), self.weight);
                Some(grad.apply_op2_no_bwd(&w.contiguous()?, &back)?)
            }
            false => None,
        };
        if !self.weight_grad {
            return Ok((dx, None, None));
        }
        let dw = x.contiguous()?.apply_op2_no_bwd(&grad, &BackwardWeight(self.g, w.dims().to_vec()))?;
        let db = if self.has_bias { Some(grad.apply_op1_no_bwd(&ChannelSums)?) } else { None };
        Ok((dx, Some(dw), db))
    }
}

impl Forward {
    /// The tiles of `packed` for weights `w` and tap table `taps`, where that path computes
    /// this convolution.
    fn tiles<'a>(&self, d: &Dims, w: &[f32], taps: &'a [i32]) -> Option<packed::Tiles<'a>> {
        let weights = || kept(self.weight, Derived::Tiles, &[], || packed::pack_weights(d, w));
        packed::suits(d).then(|| packed::Tiles::new(d, taps, weights()))
    }

    /// The convolution's output [n, c_out, oh, ow] with its bias and epilogue.
    fn conv_output(&self, d: &Dims, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        if direct::suits(d, Pass::Forward) {
            return direct::forward(d, x, w, self.weight, self.has_bias.then_some(b), self.then.as_ref());
        }
        let (plan, taps) = (Plan::new(d), taps(d));
        let tiles = self.tiles(d, w, &taps);
        // Not zeroed first: the chunks write every value (a pass over memory less, 4 % of a
        // narrow ResNet's attack).
        let len = d.n * d.c_out * d.p();
        let mut y = Vec::with_capacity(len);
        for_chunk_slices(plan, &mut y.spare_capacity_mut()[..len], d.c_out * d.p(), |c, y_chunk| {
            self.chunk_output(d, x, w, tiles.as_ref(), b, plan, &taps, c, y_chunk);
        });
        // SAFETY: `chunk_output` initialises all of its chunk, and the chunks cover `len`.
        unsafe { y.set_len(len) };
        y
    }

    /// The pooled output of the convolution and its epilogue, and (when a backward pass may
    /// follow) the pool's indices. On the im2col path each chunk of images is pooled while
    /// its output is in cache: the unpooled output never goes to memory.
    fn pooled_output(&self, d: &Dims, x: &[f32], w: &[f32], b: &[f32]) -> Result<(Vec<f32>, Option<Vec<u32>>, Shape)> {
        let Some(pool) = &self.pool else { candle_core::bail!("conv2d: no pool to apply") };
        let dims = [d.n, d.c_out, d.oh, d.ow];
        if direct::suits(d, Pass::Forward) {
            return pool_forward(pool.p, &dims, &self.conv_output(d, x, w, b), pool.keep_indices);
        }
        let pooler = Pooler::new(pool.p, d.oh, d.ow)?;
        let (plan, taps, p, q) = (Plan::new(d), taps(d), d.p(), pooler.out_len());
        let tiles = self.tiles(d, w, &taps);
        let mut y = vec![0f32; d.n * d.c_out * q];
        let mut idx = vec![0u32; if pool.keep_indices { y.len() } else { 0 }];
        // Per chunk its part of the output and of the indices (none when not kept).
        let size = (plan.b * d.c_out * q).max(1);
        let mut ix_parts: Vec<&mut [u32]> = idx.chunks_mut(size).collect();
        ix_parts.resize_with(plan.chunks, || &mut []);
        let jobs: Vec<(&mut [f32], &mut [u32])> = y.chunks_mut(size).zip(ix_parts).collect();
        let run = |(c, (out, ix)): (usize, (&mut [f32], &mut [u32]))| {
            let len = plan.images(c, d.n).len() * d.c_out * p;
            let mut full = Vec::with_capacity(len);
            self.chunk_output(d, x, w, tiles.as_ref(), b, plan, &taps, c, &mut full.spare_capacity_mut()[..len]);
            // SAFETY: `chunk_output` initialises all of its output.
            unsafe { full.set_len(len) };
            pooler.planes(&full, out, ix);
        };
        if plan.by_chunk {
            jobs.into_par_iter().enumerate().for_each(run);
        } else {
            jobs.into_iter().enumerate().for_each(run);
        }
        Ok((y, pool.keep_indices.then_some(idx), Shape::from((d.n, d.c_out, pooler.oh, pooler.ow))))
    }

    /// Chunk `c`'s output [images, c_out, p] with bias and epilogue, by the tiles of
    /// `packed` when it comes with `tiles` ([`Self::tiles`]), else by im2col and gemm:
    /// every value of `y_chunk` initialised.
    #[allow(clippy::too_many_arguments)]
    fn chunk_output(
        &self,
        d: &Dims,
        x: &[f32],
        w: &[f32],
        tiles: Option<&packed::Tiles<'_>>,
        b: &[f32],
        plan: Plan,
        taps: &[i32],
        c: usize,
        y_chunk: &mut [MaybeUninit<f32>],
    ) {
        let (p, imgs) = (d.p(), plan.images(c, d.n));
        let y_chunk = match tiles {
            Some(tiles) => {
                if self.has_bias {
                    for (i, row) in y_chunk.chunks_mut(p).enumerate() {
                        row.fill(MaybeUninit::new(b[i % d.c_out]));
                    }
                }
                packed::chunk(tiles, x, imgs, self.has_bias, y_chunk, !plan.by_chunk);
                // SAFETY: the tiles computed every value (onto the bias, where there is one).
                unsafe { y_chunk.assume_init_mut() }
            }
            None => {
                y_chunk.fill(MaybeUninit::new(0.0));
                // SAFETY: every value was just written.
                let y_chunk = unsafe { y_chunk.assume_init_mut() };
                self.gemm_chunk(d, x, w, b, plan, taps, imgs, y_chunk);
                y_chunk
            }
        };
        if let Some(then) = &self.then {
            then.apply(y_chunk, p);
        }
    }

    /// The output of images `imgs` [images, c_out, p] with bias, without epilogue, by im2col
    /// and gemm, into `y_chunk`.
    #[allow(clippy::too_many_arguments)]
    fn gemm_chunk(
        &self,
        d: &Dims,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        plan: Plan,
        taps: &[i32],
        imgs: std::ops::Range<usize>,
        y_chunk: &mut [f32],
    ) {
        let (k, p, cg) = (d.k(), d.p(), d.cout_g());
        let width = imgs.len() * p;
        with_scratch(|col, scratch| {
            // A chunk of one image has the output's own layout: gemm writes into it.
            let single = imgs.len() == 1;
            let out = if single {
                &mut y_chunk[..]
            } else {
                scratch.resize(d.c_out * width, 0.0);
                &mut scratch[..]
            };
            for g in 0..d.g.groups {
                chunk_cols(d, x, &imgs, g, taps, col);
                let og = &mut out[g * cg * width..(g + 1) * cg * width];
                if self.has_bias {
                    // Start from the bias and let gemm accumulate onto it.
                    for (ch, row) in og.chunks_mut(width).enumerate() {
                        row.fill(b[g * cg + ch]);
                    }
                }
                let wg = &w[g * cg * k..(g + 1) * cg * k];
                matmul(cg, width, k, og, self.has_bias, wg, (k, 1), col, (width, 1), !plan.by_chunk);
            }
            // The chunk's block is [c_out, bn * p]; the output is [n, c_out, p].
            if !single {
                for j in 0..imgs.len() {
                    for ch in 0..d.c_out {
                        y_chunk[(j * d.c_out + ch) * p..][..p].copy_from_slice(&scratch[ch * width + j * p..][..p]);
                    }
                }
            }
        })
    }
}

/// The output gradient of group `g` of images `imgs` as one [cg, bn * p] matrix: `dy`'s
/// own block for a single image, else gathered into `out`.
fn chunk_grad<'a>(
    d: &Dims,
    dy: &'a [f32],
    imgs: &std::ops::Range<usize>,
    g: usize,
    out: &'a mut Vec<f32>,
) -> &'a [f32] {
    let (p, cg) = (d.p(), d.cout_g());
    if imgs.len() == 1 {
        return &dy[(imgs.start * d.c_out + g * cg) * p..][..cg * p];
    }
    let width = imgs.len() * p;
    out.resize(cg * width, 0.0);
    for (j, i) in imgs.clone().enumerate() {
        for ch in 0..cg {
            out[ch * width + j * p..][..p].copy_from_slice(&dy[(i * d.c_out + g * cg + ch) * p..][..p]);
        }
    }
    out
}

/// dX on the direct path from the gradient at the epilogue's output, the epilogue's output
/// and W: [`BackwardInput`] of [`EpilogueBackward`]'s result, in one op.
struct BackwardInputThrough {
    g: Geometry,
    /// The convolution's input dims.
    input: Vec<usize>,
    /// Where the weight comes from when it is a parameter.
    weight: Option<WeightSource>,
    then: Epilogue,
}

impl CustomOp3 for BackwardInputThrough {
    fn name(&self) -> &'static str {
        "fe-conv2d-backward-input-through"
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
        let d = Dims::new(&self.input, l3.dims(), self.g)?;
        let (g, y, w) = (f32_data(s1, l1)?, f32_data(s2, l2)?, f32_data(s3, l3)?);
        if !direct::suits(&d, Pass::InputGrad) || g.len() != d.n * d.c_out * d.p() || y.len() != g.len() {
            candle_core::bail!("conv2d backward: gradient {:?} does not fit the direct path of {d:?}", l1.dims())
        }
        self.then.check(d.c_out)?;
        let through = Through::new(&self.then, &y, d.p());
        let dx = direct::backward_input(&d, &g, &w, self.weight, Some(&through));
        Ok((CpuStorage::F32(dx), Shape::from(self.input.clone())))
    }
}

/// For a convolution of stride 1 without dilation or groups, dX is the forward convolution
/// of dY with W transposed and flipped ([`flip_kernel`]), padded by (kh - 1 - ph, kw - 1 - pw):
/// one product with a deep sum per output, where the column gradient W^T dY sums over c_out
/// only and then needs col2im to scatter it back (PERFORMANCE.md item 39). Returns that
/// forward convolution's geometry, or `None` where it does not apply.
fn flipped_geometry(d: &Dims) -> Option<Geometry> {
    let g = d.g;
    let padding = [(d.kh - 1).checked_sub(g.padding[0])?, (d.kw - 1).checked_sub(g.padding[1])?];
    let applies = g.stride == 1 && g.dilation == 1 && g.groups == 1 && !d.pointwise();
    applies.then_some(Geometry { stride: 1, padding, dilation: 1, groups: 1 })
}

/// W [c_out, c_in, kh, kw] as [c_in, c_out, kh, kw] with each kernel's taps reversed.
fn flip_kernel(d: &Dims, w: &[f32]) -> Vec<f32> {
    let (ci, co, taps) = (d.c_in, d.c_out, d.kh * d.kw);
    let mut out = vec![0f32; w.len()];
    for (c, rows) in out.chunks_mut(co * taps).enumerate() {
        for (o, row) in rows.chunks_mut(taps).enumerate() {
            let src = &w[(o * ci + c) * taps..][..taps];
            for (v, s) in row.iter_mut().zip(src.iter().rev()) {
                *v = *s;
            }
        }
    }
    out
}

/// dX from dY and W: the column gradient W^T dY, scattered back (col2im). Holds the
/// input's dims and the weight's id when it is a parameter.
struct BackwardInput(Geometry, Vec<usize>, Option<WeightSource>);

impl CustomOp2 for BackwardInput {
    fn name(&self) -> &'static str {
        "fe-conv2d-backward-input"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = Dims::new(&self.1, l2.dims(), self.0)?;
        let (dy, w) = (f32_data(s1, l1)?, f32_data(s2, l2)?);
        if direct::suits(&d, Pass::InputGrad) {
            return Ok((
                CpuStorage::F32(direct::backward_input(&d, &dy, &w, self.2, None)),
                Shape::from(self.1.clone()),
            ));
        }
        if let Some(geometry) = flipped_geometry(&d) {
            let wf = kept(self.2, Derived::Flipped, &[d.kh, d.kw], || flip_kernel(&d, &w));
            let fd = Dims::new(&[d.n, d.c_out, d.oh, d.ow], &[d.c_in, d.c_out, d.kh, d.kw], geometry)?;
            let forward = Forward {
                g: geometry,
                weight_grad: false,
                has_bias: false,
                weight: self.2.map(WeightSource::flipped),
                then: None,
                pool: None,
            };
            return Ok((CpuStorage::F32(forward.conv_output(&fd, &dy, &wf, &[])), Shape::from(self.1.clone())));
        }
        let (k, p, cg, hw) = (d.k(), d.p(), d.cout_g(), d.h * d.w);
        let plan = Plan::new(&d);
        let in_img = d.c_in * hw;
        let taps = taps(&d);
        let mut dx = vec![0f32; d.n * in_img];
        for_chunk_slices(plan, &mut dx, in_img, |c, dx| {
            let imgs = plan.images(c, d.n);
            let width = imgs.len() * p;
            with_scratch(|g_mat, col| {
                col.resize(k * width, 0.0);
                for g in 0..d.g.groups {
                    let dyg = chunk_grad(&d, &dy, &imgs, g, g_mat);
                    let wg = &w[g * cg * k..(g + 1) * cg * k];
                    matmul(k, width, cg, col, false, wg, (1, k), dyg, (width, 1), !plan.by_chunk);
                    if d.by_table() {
                        table_col2im(&d, col, width, imgs.len(), g, &taps, dx);
                        continue;
                    }
                    for j in 0..imgs.len() {
                        let dxg = &mut dx[j * in_img + g * d.cin_g() * hw..][..d.cin_g() * hw];
                        if d.pointwise() {
                            for r in 0..k {
                                dxg[r * p..(r + 1) * p].copy_from_slice(&col[r * width + j * p..][..p]);
                            }
                        } else {
                            col2im(&d, col, width, j * p, dxg);
                        }
                    }
                }
            });
        });
        Ok((CpuStorage::F32(dx), Shape::from(self.1.clone())))
    }
}

/// dW from X and dY: the sum over images of dY col(X)^T.
struct BackwardWeight(Geometry, Vec<usize>);

impl CustomOp2 for BackwardWeight {
    fn name(&self) -> &'static str {
        "fe-conv2d-backward-weight"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = Dims::new(l1.dims(), &self.1, self.0)?;
        let (x, dy) = (f32_data(s1, l1)?, f32_data(s2, l2)?);
        if direct::suits(&d, Pass::WeightGrad) {
            return Ok((CpuStorage::F32(direct::backward_weight(&d, &x, &dy)), Shape::from(self.1.clone())));
        }
        let (k, p, cg) = (d.k(), d.p(), d.cout_g());
        let wlen = d.c_out * k;
        let plan = Plan::new(&d);
        let taps = taps(&d);
        // gemm gathers one operand while packing it: the smaller one. When that is the output
        // gradient, dW^T [k, cg] = patches^T [k, width] dY^T [width, cg] is stored as dW
        // [cg, k] with tap-major rows, reordered at the end. (Patch rows also beat the
        // tap-table gather on maps narrower than 16: the weight gradient took 10-30 % less
        // on 7x7, 8x8 and 14x14 maps.)
        let tap_major = k > cg;
        // Each thread adds its share of the chunks, in order, into its own sums (gemm
        // accumulates); the threads' sums are added at the end. A buffer per chunk, summed
        // on one thread, made this op 6 % slower at 32x32 and 12 % at 16x16.
        let shares = if plan.by_chunk { threads().min(plan.chunks) } else { 1 };
        let per_share = plan.chunks.div_ceil(shares);
        let sums: Vec<Vec<f32>> = (0..shares)
            .into_par_iter()
            .map(|share| {
                let mut sum = vec![0f32; wlen];
                let mut padded = Vec::new();
                for c in share * per_share..((share + 1) * per_share).min(plan.chunks) {
                    let imgs = plan.images(c, d.n);
                    let (width, add) = (imgs.len() * p, c > share * per_share);
                    with_scratch(|cols, g_mat| {
                        for g in 0..d.g.groups {
                            let dyg = chunk_grad(&d, &dy, &imgs, g, g_mat);
                            let sum_g = &mut sum[g * cg * k..(g + 1) * cg * k];
                            let inside = !plan.by_chunk;
                            if tap_major {
                                chunk_patches(&d, &x, &imgs, g, cols, &mut padded);
                                let (patches, dy_t) = ((&cols[..], (1, k)), (dyg, (1, width)));
                                gemm_strided(k, cg, width, (sum_g, (1, k)), add, patches, dy_t, inside);
                            } else {
                                chunk_cols(&d, &x, &imgs, g, &taps, cols);
                                matmul(cg, k, width, sum_g, add, dyg, (width, 1), cols, (1, width), inside);
                            }
                        }
                    });
                }
                sum
            })
            .collect();
        const PIECE: usize = 1 << 14;
        let mut total = vec![0f32; wlen];
        total.par_chunks_mut(PIECE).enumerate().for_each(|(i, out)| {
            for sum in &sums {
                for (o, v) in out.iter_mut().zip(&sum[i * PIECE..]) {
                    *o += v;
                }
            }
        });
        let dw = if tap_major {
            let mut dw = vec![0f32; wlen];
            for (src, dst) in total.chunks(cg * k).zip(dw.chunks_mut(cg * k)) {
                untap(src, d.cin_g(), d.kh * d.kw, dst);
            }
            dw
        } else {
            total
        };
        Ok((CpuStorage::F32(dw), Shape::from(self.1.clone())))
    }
}

/// Per-channel sums of an (N, C, ...) tensor: the bias gradient.
struct ChannelSums;

impl CustomOp1 for ChannelSums {
    fn name(&self) -> &'static str {
        "fe-channel-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l.dims();
        let (n, c) = (dims[0], dims[1]);
        let p: usize = dims[2..].iter().product();
        let g = f32_data(s, l)?;
        let sums: Vec<f32> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let plane = |i: usize| g[(i * c + ch) * p..(i * c + ch + 1) * p].iter().map(|&v| v as f64).sum::<f64>();
                (0..n).map(plane).sum::<f64>() as f32
            })
            .collect();
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }
}

/// Whether a convolution of these shapes takes the direct path in its forward, input-gradient
/// and weight-gradient passes (tests check both paths).
#[cfg(test)]
pub(super) fn direct_passes(x: &[usize], w: &[usize], g: Geometry) -> [bool; 3] {
    [Pass::Forward, Pass::InputGrad, Pass::WeightGrad].map(|p| Dims::new(x, w, g).is_ok_and(|d| direct::suits(&d, p)))
}

/// `x` [N, C, H, W] convolved with `w` [O, C/groups, KH, KW], plus the bias `b` [O], with
/// the gradients `grads`.
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, g: Geometry, grads: Grads) -> Result<Tensor> {
    conv2d_then(x, w, b, g, grads, None, None)
}

/// [`conv2d`] followed by `then` and a max-pool `pool`, in one op.
pub fn conv2d_then(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    g: Geometry,
    grads: Grads,
    then: Option<Epilogue>,
    pool: Option<Pool2d>,
) -> Result<Tensor> {
    let bias = match b {
        Some(b) => b.contiguous()?,
        None => Tensor::zeros(w.dim(0)?, w.dtype(), w.device())?,
    };
    let w = w.contiguous()?;
    let weight = w.is_variable().then(|| WeightSource { id: w.id(), flipped: false });
    let keep_indices = grads != Grads::None;
    let pool = pool.map(|p| PoolAfter { p, indices: Mutex::new(None), keep_indices });
    let op = Forward { g, weight_grad: grads.weights(), has_bias: b.is_some(), weight, then, pool };
    apply3(&x.contiguous()?, &w, &bias, op, grads)
}
