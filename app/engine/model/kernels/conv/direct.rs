//! Direct convolution for small output maps (a ResNet's 4x4 to 1x1 stages): one matrix
//! product per (output position, kernel tap) pair whose tap reads inside the image, over
//! a chunk of images at once. im2col would multiply its rows of padding zeros too: at a
//! 1x1 map 8 of a 3x3 kernel's 9 taps read only padding, at 2x2 five of every nine.
//!
//! Per chunk, activations are transposed position-major ([position][channel][image] in the
//! forward pass, [position][image][channel] in the backward ones) so that every product
//! reads and writes unit-stride vectors.

use std::sync::Arc;

use rayon::prelude::*;

use super::super::transpose::{TILE, tile, transpose};
use super::super::{gemm_strided, min_planes, threads};
use super::epilogue::Through;
use super::kept::{Derived, WeightSource, kept};
use super::packed;
use super::{Dims, Epilogue, taps, with_scratch};

/// The three passes of a convolution, which take the direct path up to different map sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pass {
    Forward,
    InputGrad,
    WeightGrad,
}

impl Pass {
    /// Output maps of at most this many positions take the direct path in this pass
    /// (measured, PERFORMANCE.md items 25 and 28): the forward products beat im2col up to
    /// 8x8, the input gradient's up to 7x7, but the weight gradient's, which reduce over
    /// every image, only up to 4x4. Where the tiles of `packed` compute the forward pass,
    /// they beat the direct products on 8x8 maps and under 1x1 kernels; the direct path keeps
    /// the forward pass of 4x4 maps and smaller under larger kernels, whose taps read padding
    /// for a third or more of the positions (item 40).
    fn max_positions(self, d: &Dims) -> usize {
        match self {
            Pass::Forward if packed::suits(d) => match d.kh * d.kw {
                1 => 0,
                _ => 16,
            },
            Pass::Forward => 64,
            Pass::InputGrad => 49,
            Pass::WeightGrad => 16,
        }
    }
}

/// Fewer images per thread make products too narrow to beat one im2col product.
const MIN_IMAGES_PER_THREAD: usize = 8;

/// Whether the direct path computes this convolution's `pass`.
pub(super) fn suits(d: &Dims, pass: Pass) -> bool {
    d.g.groups == 1 && !d.pointwise() && d.p() <= pass.max_positions(d) && d.n >= MIN_IMAGES_PER_THREAD * threads()
}

/// The taps of a geometry that read inside the image for some output position, and every
/// (output position, input offset, live tap index) triple where they do.
struct Pairs {
    live: Vec<usize>,
    list: Vec<(usize, usize, usize)>,
}

impl Pairs {
    fn new(d: &Dims) -> Self {
        let (p, table) = (d.p(), taps(d));
        let (mut live, mut list) = (Vec::new(), Vec::new());
        for t in 0..d.kh * d.kw {
            let row = &table[t * p..(t + 1) * p];
            if row.iter().all(|&q| q < 0) {
                continue;
            }
            for (s, &q) in row.iter().enumerate().filter(|(_, q)| **q >= 0) {
                list.push((s, q as usize, live.len()));
            }
            live.push(t);
        }
        Self { live, list }
    }
}

/// Calls `f(index in a weight row [c_in, kh, kw], index in its live-tap row [live][c_in])`
/// for every live weight of one output channel: the one map between the two layouts,
/// walked by input channel so that the full row is read (or written) in order.
#[inline]
fn for_each_live_weight(ci: usize, nt: usize, live: &[usize], mut f: impl FnMut(usize, usize)) {
    for c in 0..ci {
        for (l, &t) in live.iter().enumerate() {
            f(c * nt + t, l * ci + c);
        }
    }
}

/// The live taps' weights as [c_out][live][c_in], in one sequential pass over `w`
/// [c_out, c_in, kh, kw], kept for the parameter `source` until a parameter changes. Tap l's
/// matrix has unit stride along input channels, the dimension both products run over
/// (forward: W_l as the right operand, read column by column; input gradient: W_l^T as
/// the left one), so gemm reads it in place.
fn gather_weight(d: &Dims, w: &[f32], live: &[usize], source: Option<WeightSource>) -> Arc<Vec<f32>> {
    let (ci, nt, nl) = (d.c_in, d.kh * d.kw, live.len());
    kept(source, Derived::LiveTaps, live, || {
        let mut out = vec![0f32; d.c_out * nl * ci];
        let rows = out.par_chunks_mut(nl * ci).zip(w.par_chunks(ci * nt)).with_min_len(min_planes(nl * ci));
        rows.for_each(|(row, src)| for_each_live_weight(ci, nt, live, |full, tap| row[tap] = src[full]));
        out
    })
}

/// Per-position layouts of a chunk of activations (`len` positions, `n` images, `ch`
/// channels), chosen so that the products' vectors run along unit strides.
#[derive(Clone, Copy)]
enum Order {
    /// [len][n][ch]
    ImageMajor,
    /// [len][ch][n]
    ChannelMajor,
}

/// Images per block of `ChannelMajor` transposes: one tile's rows, and few enough that a
/// block's planes stay in cache from one channel to the next.
const BLOCK: usize = TILE;

/// Maps narrower than a tile whose length divides it: a `ChannelMajor` tile then spans
/// 16 / `len` channels of a full block of images, so that narrow maps move whole tiles too.
fn channels_per_tile(len: usize, images: usize) -> Option<usize> {
    (len < TILE && TILE.is_multiple_of(len) && images == TILE).then(|| TILE / len)
}

/// The rows of such a tile from image `j` and channel `c0` on: in [n, ch, len] one per image
/// (its channels' planes side by side), in `ChannelMajor` one per (channel, position) pair.
fn grouped_rows(j: usize, c0: usize, n: usize, ch: usize, len: usize) -> ([usize; TILE], [usize; TILE]) {
    let planes = std::array::from_fn(|k| ((j + k) * ch + c0) * len);
    let positions = std::array::from_fn(|q| ((q % len) * ch + c0 + q / len) * n + j);
    (planes, positions)
}

/// [n, ch, len] (a chunk of planes) -> `order`: per block of images and channel a
/// transpose of their [images, len] planes (`ChannelMajor`), or per image one of its
/// [ch, len] planes (`ImageMajor`).
fn to_positions(src: &[f32], n: usize, ch: usize, len: usize, order: Order, dst: &mut Vec<f32>) {
    dst.resize(n * ch * len, 0.0);
    match order {
        Order::ChannelMajor => {
            for j in (0..n).step_by(BLOCK) {
                let rows = BLOCK.min(n - j);
                let mut c = 0;
                if let Some(g) = channels_per_tile(len, rows) {
                    for c0 in (0..ch - ch % g).step_by(g) {
                        let (planes, positions) = grouped_rows(j, c0, n, ch, len);
                        tile(src, &planes, dst, &positions);
                    }
                    c = ch - ch % g;
                }
                for c in c..ch {
                    transpose(&src[(j * ch + c) * len..], ch * len, &mut dst[c * n + j..], ch * n, rows, len);
                }
            }
        }
        Order::ImageMajor => {
            for j in 0..n {
                transpose(&src[j * ch * len..], len, &mut dst[j * ch..], n * ch, ch, len);
            }
        }
    }
}

/// `order` -> [n, ch, len], through `then` if given (on each channel's planes while they
/// are in cache, rather than as one more pass over the output).
fn from_positions(
    src: &[f32],
    n: usize,
    ch: usize,
    len: usize,
    order: Order,
    dst: &mut [f32],
    then: Option<&Epilogue>,
) {
    match order {
        Order::ChannelMajor => {
            for j in (0..n).step_by(BLOCK) {
                let images = BLOCK.min(n - j);
                let mut c = 0;
                if let Some(g) = channels_per_tile(len, images) {
                    for c0 in (0..ch - ch % g).step_by(g) {
                        let (planes, positions) = grouped_rows(j, c0, n, ch, len);
                        tile(src, &positions, dst, &planes);
                        if let Some(e) = then {
                            planes.iter().for_each(|&row| e.apply_run(&mut dst[row..row + TILE], c0, len));
                        }
                    }
                    c = ch - ch % g;
                }
                for c in c..ch {
                    let first = (j * ch + c) * len;
                    transpose(&src[c * n + j..], ch * n, &mut dst[first..], ch * len, len, images);
                    if let Some(e) = then {
                        for plane in dst[first..].chunks_mut(ch * len).take(images) {
                            e.apply_run(&mut plane[..len], c, len);
                        }
                    }
                }
            }
        }
        Order::ImageMajor => {
            debug_assert!(then.is_none(), "epilogues follow forward passes only");
            for j in 0..n {
                transpose(&src[j * ch..], n * ch, &mut dst[j * ch * len..], len, len, ch);
            }
        }
    }
}

/// [n, ch, len] -> `ImageMajor` for a whole batch, with the images split across threads:
/// each thread reads its images in order and writes its part of every position's block.
fn to_positions_parallel(src: &[f32], n: usize, ch: usize, len: usize) -> Vec<f32> {
    let per = n.div_ceil(threads()).max(1);
    let mut dst = vec![0f32; n * ch * len];
    let mut parts: Vec<Vec<&mut [f32]>> = Vec::new();
    for block in dst.chunks_mut((n * ch).max(1)) {
        for (t, piece) in block.chunks_mut(per * ch).enumerate() {
            if t == parts.len() {
                parts.push(Vec::with_capacity(len));
            }
            parts[t].push(piece);
        }
    }
    parts.into_par_iter().enumerate().for_each(|(t, mut pieces)| {
        let images = src.chunks(ch * len).skip(t * per).take(per);
        for (j, image) in images.enumerate() {
            for (c, plane) in image.chunks(len).enumerate() {
                for (piece, &v) in pieces.iter_mut().zip(plane) {
                    piece[j * ch + c] = v;
                }
            }
        }
    });
    dst
}

/// Images per chunk: one chunk per thread.
fn chunk_images(d: &Dims) -> usize {
    d.n.div_ceil(threads()).max(1)
}

/// `y` [n, c_out, p] = conv(x, w) + b, followed by `then`.
/// `source` names `w` when it is a parameter (its gathered taps are then kept).
pub(super) fn forward(
    d: &Dims,
    x: &[f32],
    w: &[f32],
    source: Option<WeightSource>,
    b: Option<&[f32]>,
    then: Option<&Epilogue>,
) -> Vec<f32> {
    let (ci, co, p, hw) = (d.c_in, d.c_out, d.p(), d.h * d.w);
    let pairs = Pairs::new(d);
    let wl = gather_weight(d, w, &pairs.live, source);
    let per = chunk_images(d);
    let mut y = vec![0f32; d.n * co * p];
    y.par_chunks_mut(per * co * p).zip(x.par_chunks(per * ci * hw)).for_each(|(y, x)| {
        let nb = x.len() / (ci * hw);
        with_scratch(|xt, acc| {
            to_positions(x, nb, ci, hw, Order::ChannelMajor, xt);
            acc.clear();
            acc.resize(p * co * nb, 0.0);
            if let Some(b) = b {
                for (i, row) in acc.chunks_mut(nb).enumerate() {
                    row.fill(b[i % co]);
                }
            }
            for &(s, q, l) in &pairs.list {
                // Y[s]^T (images x out) += X[q]^T W_l
                gemm_strided(
                    nb,
                    co,
                    ci,
                    (&mut acc[s * co * nb..], (1, nb)),
                    true,
                    (&xt[q * ci * nb..], (1, nb)),
                    (&wl[l * ci..], (1, pairs.live.len() * ci)),
                    false,
                );
            }
            from_positions(acc, nb, co, p, Order::ChannelMajor, y, then);
        });
    });
    y
}

/// [`to_positions`] in `ImageMajor` order of the gradient at the convolution's output, made
/// image by image (in cache) from `g` and `y` through the epilogue's backward pass.
fn to_positions_through(g: &[f32], y: &[f32], through: &Through, n: usize, ch: usize, len: usize, dst: &mut Vec<f32>) {
    dst.resize(n * ch * len, 0.0);
    let mut image = vec![0f32; ch * len];
    for (j, (g, y)) in g.chunks(ch * len).zip(y.chunks(ch * len)).enumerate().take(n) {
        through.image(g, y, &mut image);
        transpose(&image, len, &mut dst[j * ch..], n * ch, ch, len);
    }
}

/// `dx` [n, c_in, h, w] from the output gradient `dy` [n, c_out, p], taken first through
/// the epilogue's backward pass when `through` is given (`dy` is then the gradient at the
/// epilogue's output).
pub(super) fn backward_input(
    d: &Dims,
    dy: &[f32],
    w: &[f32],
    source: Option<WeightSource>,
    through: Option<&Through>,
) -> Vec<f32> {
    let (ci, co, p, hw) = (d.c_in, d.c_out, d.p(), d.h * d.w);
    let pairs = Pairs::new(d);
    let wl = gather_weight(d, w, &pairs.live, source);
    let per = chunk_images(d);
    let mut dx = vec![0f32; d.n * ci * hw];
    dx.par_chunks_mut(per * ci * hw).zip(dy.par_chunks(per * co * p)).enumerate().for_each(|(t, (dx, dy))| {
        let nb = dy.len() / (co * p);
        with_scratch(|gt, acc| {
            match through {
                Some(th) => to_positions_through(dy, &th.y[t * per * co * p..][..dy.len()], th, nb, co, p, gt),
                None => to_positions(dy, nb, co, p, Order::ImageMajor, gt),
            }
            acc.clear();
            acc.resize(hw * nb * ci, 0.0);
            for &(s, q, l) in &pairs.list {
                // dX[:, q] += W_l^T dY[:, s]
                gemm_strided(
                    ci,
                    nb,
                    co,
                    (&mut acc[q * nb * ci..], (1, ci)),
                    true,
                    (&wl[l * ci..], (1, pairs.live.len() * ci)),
                    (&gt[s * nb * co..], (1, co)),
                    false,
                );
            }
            from_positions(acc, nb, ci, hw, Order::ImageMajor, dx, None);
        });
    });
    dx
}

/// `dw` [c_out, c_in, kh, kw] from the input `x` and the output gradient `dy`.
pub(super) fn backward_weight(d: &Dims, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (ci, co, p, hw, n, nt) = (d.c_in, d.c_out, d.p(), d.h * d.w, d.n, d.kh * d.kw);
    let pairs = Pairs::new(d);
    let live = pairs.live.len();
    let (xt, gt) = (to_positions_parallel(x, n, ci, hw), to_positions_parallel(dy, n, co, p));
    // Threads take disjoint bands of output channels: [c_out, live, c_in], tap-major per row.
    let band = co.div_ceil(threads()).max(1);
    let mut dwl = vec![0f32; co * live * ci];
    dwl.par_chunks_mut(band * live * ci).enumerate().for_each(|(i, rows)| {
        let (o0, m) = (i * band, rows.len() / (live * ci));
        for &(s, q, l) in &pairs.list {
            // dW_l[o, c] += sum over images of dY[o, s] X[c, q]
            gemm_strided(
                m,
                ci,
                n,
                (&mut rows[l * ci..], (live * ci, 1)),
                true,
                (&gt[s * n * co + o0..], (1, co)),
                (&xt[q * n * ci..], (ci, 1)),
                false,
            );
        }
    });
    // Back to [c_out, c_in, kh, kw]; dead taps keep their zero gradient.
    let mut dw = vec![0f32; co * ci * nt];
    dw.par_chunks_mut(ci * nt)
        .zip(dwl.par_chunks(live * ci))
        .with_min_len(min_planes(ci * nt))
        .for_each(|(dst, src)| for_each_live_weight(ci, nt, &pairs.live, |full, tap| dst[full] = src[tap]));
    dw
}
