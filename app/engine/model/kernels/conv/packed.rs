//! Convolution products with im2col fused into the packing of a register-tiled product
//! (x86-64 with AVX2 and FMA, where the CPU lacks AVX-512): the path of 3x3 convolutions on
//! 32x32 to 8x8 maps, most of a ResNet-18 attack's time (PERFORMANCE.md item 40).
//!
//! The output [c_out, positions] is computed in tiles of up to `ROWS` output channels by `LANES`
//! positions, each tile's sums held in registers for a block of the reduction. The
//! positions' patches never form a column matrix: each panel of `LANES` positions is
//! gathered from the input straight into the layout the tile reads ([row][lane]), a block
//! of rows at a time, so that it is written once and read from L1. With im2col and the
//! `gemm` crate the same numbers were written as a column matrix, then packed again.
//!
//! Each output is the sum of its products in the rows' order (a block of rows added to the
//! sum of the blocks before it): the im2col product's sums reordered, not approximated.

use std::mem::MaybeUninit;
use std::sync::Arc;

use rayon::prelude::*;

use super::super::transpose::avx512;
use super::{Dims, threads};

/// Output channels per tile (the broadcast operand).
const ROWS: usize = 6;
/// Positions per tile: two AVX vectors.
const LANES: usize = 16;
/// Rows of the reduction per block: a panel's block (16 KiB) stays in L1 and the
/// weights' block for 256 output channels (256 KiB) in L2.
const MAX_BLOCK: usize = 256;

/// Whether this CPU runs the path: AVX2 and FMA without AVX-512. With AVX-512 the `gemm`
/// crate's products ran at twice MKL's speed, and the tiles (AVX2) were not measured there
/// (PERFORMANCE.md item 40).
fn cpu_suits() -> bool {
    avx2_fma() && !avx512()
}

/// Whether the tiles compute this convolution on this CPU: where they can, and where they
/// have at least `MIN_CHANNELS` output channels and a reduction of at least `MIN_DEPTH` rows.
/// Narrower tiles and shallower sums spend more on loads and stores than on products: with
/// them the MNIST CNN's first convolution (1 -> 32 channels, 9 rows; its input gradient 32
/// -> 1) made the MNIST sweep 8 % slower, and ResNet-18's stem (27 rows) lost too (item 40).
pub(super) fn suits(d: &Dims) -> bool {
    cpu_suits() && shape_suits(d) && d.c_out >= MIN_CHANNELS && d.k() >= MIN_DEPTH
}

const MIN_CHANNELS: usize = 8;
const MIN_DEPTH: usize = 32;

/// Whether the shapes fit the tiles: one group, and whole panels in every image (so that
/// no panel spans two images).
fn shape_suits(d: &Dims) -> bool {
    d.g.groups == 1 && d.p() > 0 && d.p().is_multiple_of(LANES)
}

#[cfg(target_arch = "x86_64")]
fn avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_fma() -> bool {
    false
}

/// The output channels of tile `t` of `c_out`: `c_out.div_ceil(ROWS)` tiles of as equal a
/// size as can be. With the last tile taking what is left, 8 channels made a tile of 2 rows:
/// 4 sums in registers, too few to hide the FMAs' latency (2 tiles of 4 have 8 each).
fn tile_channels(c_out: usize, t: usize) -> std::ops::Range<usize> {
    let tiles = c_out.div_ceil(ROWS);
    let (base, wider) = (c_out / tiles, c_out % tiles);
    let start = t * base + t.min(wider);
    start..start + base + usize::from(t < wider)
}

/// The weights [c_out, k] as tiles ([`tile_channels`]), [tile][k][ROWS], a tile's rows past
/// its channels zero.
pub(super) fn pack_weights(d: &Dims, w: &[f32]) -> Vec<f32> {
    let (k, tiles) = (d.k(), d.c_out.div_ceil(ROWS));
    let mut out = vec![0f32; tiles * k * ROWS];
    for (t, tile) in out.chunks_mut(k * ROWS).enumerate() {
        for (r, channel) in tile_channels(d.c_out, t).enumerate() {
            let row = &w[channel * k..][..k];
            for (kk, &v) in row.iter().enumerate() {
                tile[kk * ROWS + r] = v;
            }
        }
    }
    out
}

/// Where a panel's `LANES` positions read one kernel tap in an input plane.
#[derive(Clone, Copy)]
enum Run {
    /// All inside the image, at consecutive offsets from this one.
    Inside(u32),
    /// All on padding.
    Padding,
    /// The lanes in `keep` (bit per lane) inside the image at offsets `base` + lane, the rest
    /// on padding: a row's first or last positions under a tap that reads past the border,
    /// or a panel spanning two rows of an 8-wide map.
    Masked { base: i32, keep: u16 },
    /// Anything else (strided reads): read position by position through the tap table.
    Mixed,
}

impl Run {
    /// How a panel reads one tap, from the tap table's offsets for its lanes (< 0: padding).
    fn of(lanes: &[i32]) -> Self {
        let Some(first) = lanes.iter().position(|&at| at >= 0) else { return Run::Padding };
        let base = lanes[first] - first as i32;
        let mut keep = 0u16;
        for (lane, &at) in lanes.iter().enumerate().filter(|(_, at)| **at >= 0) {
            if at != base + lane as i32 {
                return Run::Mixed;
            }
            keep |= 1 << lane;
        }
        match keep {
            u16::MAX => Run::Inside(base as u32),
            _ => Run::Masked { base, keep },
        }
    }
}

/// What every chunk of a convolution's images shares: its sizes, its tap table, its weights
/// packed for the tiles, and how each panel reads each tap (built from that tap table, so the
/// two cannot disagree).
pub(super) struct Tiles<'a> {
    d: Dims,
    taps: &'a [i32],
    weights: Arc<Vec<f32>>,
    runs: Vec<Run>,
}

impl<'a> Tiles<'a> {
    /// `taps` the geometry's tap table, `weights` from [`pack_weights`]. Checks here, once per
    /// convolution, what the gathers' unchecked loads rely on: every tap reads padding (-1) or
    /// a place inside the input plane.
    pub fn new(d: &Dims, taps: &'a [i32], weights: Arc<Vec<f32>>) -> Self {
        assert!(shape_suits(d), "conv tiles: unsuited shapes {d:?}");
        assert_eq!(taps.len(), d.kh * d.kw * d.p(), "conv tiles: tap table size");
        let hw = (d.h * d.w) as i64;
        assert!(taps.iter().all(|&at| (-1..hw).contains(&(at as i64))), "conv tiles: a tap outside the plane");
        assert_eq!(weights.len(), d.c_out.div_ceil(ROWS) * d.k() * ROWS, "conv tiles: weight size");
        Self { d: *d, taps, weights, runs: runs(d, taps) }
    }
}

/// For each panel of an image and each kernel tap, how the panel reads that tap: [panel][tap].
fn runs(d: &Dims, taps: &[i32]) -> Vec<Run> {
    let (p, nt) = (d.p(), d.kh * d.kw);
    let mut out = Vec::with_capacity(nt * p / LANES);
    for q in 0..p / LANES {
        for t in 0..nt {
            out.push(Run::of(&taps[t * p + q * LANES..][..LANES]));
        }
    }
    out
}

/// The output of images `imgs` into `y` [images, c_out, p], every value written: added to
/// what `y` holds when `accumulate` (the bias, which must then be in every value), else
/// stored without reading it. The tiles over all panels, split among threads when `parallel`.
pub(super) fn chunk(
    tiles: &Tiles,
    x: &[f32],
    imgs: std::ops::Range<usize>,
    accumulate: bool,
    y: &mut [MaybeUninit<f32>],
    parallel: bool,
) {
    let d = &tiles.d;
    let p = d.p();
    assert!(avx2_fma(), "conv tiles: the CPU lacks AVX2 or FMA");
    assert_eq!(y.len(), imgs.len() * d.c_out * p, "conv tiles: output size");
    assert!(x.len() >= imgs.end * d.c_in * d.h * d.w, "conv tiles: input size");
    let panels = imgs.len() * p / LANES;
    let out = Out(y.as_mut_ptr().cast::<f32>());
    let job = |range: std::ops::Range<usize>| {
        let src = Source { tiles, x, first_image: imgs.start };
        // SAFETY: the asserts above and in `Tiles::new` check the CPU, the weights and `y`
        // for every panel's tiles, and jobs own disjoint panels, hence disjoint columns of `y`.
        unsafe { panels_of(&src, range, accumulate, out) }
    };
    let jobs = if parallel { threads().min(panels) } else { 1 };
    if jobs <= 1 {
        return job(0..panels);
    }
    let per = panels.div_ceil(jobs);
    (0..jobs).into_par_iter().for_each(|j| job(j * per..((j + 1) * per).min(panels)));
}

/// The output's pointer, shared by jobs that write disjoint panels.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: jobs write disjoint elements through it (see `chunk`).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// What a panel's rows are gathered from.
struct Source<'a> {
    tiles: &'a Tiles<'a>,
    x: &'a [f32],
    first_image: usize,
}

impl Source<'_> {
    /// Rows `rows` of global panel `panel` (counted from the chunk's first image), [row][lane].
    /// Row r reads channel r / taps at tap r % taps: both are stepped, not divided per row.
    fn gather(&self, panel: usize, rows: std::ops::Range<usize>, out: &mut [f32]) {
        let d = &self.tiles.d;
        let (p, hw, nt) = (d.p(), d.h * d.w, d.kh * d.kw);
        let per_image = p / LANES;
        let (image, q) = (self.first_image + panel / per_image, panel % per_image);
        let x = &self.x[image * d.c_in * hw..][..d.c_in * hw];
        let runs = &self.tiles.runs[q * nt..][..nt];
        let (mut c, mut t) = (rows.start / nt, rows.start % nt);
        let mut plane = &x[c * hw..][..hw];
        for dst in out.chunks_exact_mut(LANES).take(rows.len()) {
            match runs[t] {
                Run::Inside(at) => dst.copy_from_slice(&plane[at as usize..][..LANES]),
                Run::Padding => dst.fill(0.0),
                // SAFETY: `chunk` asserted AVX2; the kept lanes' offsets are taps, which
                // `Tiles::new` checked lie inside the plane.
                Run::Masked { base, keep } => unsafe { masked_copy(plane, base, keep, dst) },
                Run::Mixed => {
                    for (v, &at) in dst.iter_mut().zip(&self.tiles.taps[t * p + q * LANES..][..LANES]) {
                        *v = if at >= 0 { plane[at as usize] } else { 0.0 };
                    }
                }
            }
            t += 1;
            if t == nt && c + 1 < d.c_in {
                (t, c) = (0, c + 1);
                plane = &x[c * hw..][..hw];
            }
        }
    }
}

/// dst[lane] = plane[base + lane] for the lanes in `keep`, 0 for the others.
///
/// # Safety
/// The CPU must have AVX2; `base + lane` must lie inside `plane` for every lane in `keep`
/// (the others are not read: masked loads neither read nor fault on masked lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn masked_copy(plane: &[f32], base: i32, keep: u16, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    assert_eq!(dst.len(), LANES);
    let bits = |from: i32| {
        _mm256_setr_epi32(1 << from, 2 << from, 4 << from, 8 << from, 16 << from, 32 << from, 64 << from, 128 << from)
    };
    let mask = |from: i32| {
        let b = bits(from);
        _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(keep as i32), b), b)
    };
    let at = plane.as_ptr().wrapping_offset(base as isize);
    // SAFETY: only kept lanes are read, each inside `plane` (caller's contract); `dst` holds
    // LANES values.
    unsafe {
        let (lo, hi) = (_mm256_maskload_ps(at, mask(0)), _mm256_maskload_ps(at.wrapping_add(8), mask(8)));
        _mm256_storeu_ps(dst.as_mut_ptr(), lo);
        _mm256_storeu_ps(dst.as_mut_ptr().add(8), hi);
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn masked_copy(_: &[f32], _: i32, _: u16, _: &mut [f32]) {
    unreachable!("conv tiles run on x86-64 only (see `suits`)")
}

/// The tiles of panels `range`, block of rows by block of rows. Compiled for AVX2 and FMA so
/// that the gather's masked loads and the kernels inline into it.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `out` must address the chunk's output [images, c_out, p]
/// sized for these panels, and no other thread may write these panels' columns meanwhile.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn panels_of(src: &Source, range: std::ops::Range<usize>, accumulate: bool, out: Out) {
    let (d, w_tiles) = (&src.tiles.d, src.tiles.weights.as_slice());
    let (k, p, c_out) = (d.k(), d.p(), d.c_out);
    let blocks = k.div_ceil(MAX_BLOCK);
    let block = k.div_ceil(blocks);
    let per_image = p / LANES;
    let tiles: Vec<_> = (0..c_out.div_ceil(ROWS)).map(|t| tile_channels(c_out, t)).collect();
    let mut panel = vec![0f32; block * LANES];
    for k0 in (0..k).step_by(block) {
        let rows = k0..(k0 + block).min(k);
        let add = accumulate || k0 > 0;
        for j in range.clone() {
            src.gather(j, rows.clone(), &mut panel);
            let (image, q) = (j / per_image, j % per_image);
            // SAFETY: within the chunk's output: image < images, columns q * LANES + 16 <= p.
            let base = unsafe { out.0.add(image * c_out * p + q * LANES) };
            for (t, channels) in tiles.iter().enumerate() {
                let a = &w_tiles[(t * k + k0) * ROWS..][..rows.len() * ROWS];
                // SAFETY: `a` and the panel hold rows.len() rows; the tile's channels (at most
                // ROWS, all < c_out) of this image's output lie inside it (caller's contract).
                unsafe { tile(channels.len(), rows.len(), a, &panel, base.add(channels.start * p), p, add) }
            }
        }
    }
}

/// One tile by the kernel for its number of rows.
///
/// # Safety
/// As [`kernel`].
#[cfg(target_arch = "x86_64")]
unsafe fn tile(rows: usize, k: usize, a: &[f32], b: &[f32], c: *mut f32, ldc: usize, add: bool) {
    debug_assert!(a.len() >= k * ROWS && b.len() >= k * LANES);
    // SAFETY: `chunk` asserted AVX2 and FMA; the rest is the caller's contract.
    unsafe {
        match rows {
            6 => kernel::<6>(k, a.as_ptr(), b.as_ptr(), c, ldc, add),
            5 => kernel::<5>(k, a.as_ptr(), b.as_ptr(), c, ldc, add),
            4 => kernel::<4>(k, a.as_ptr(), b.as_ptr(), c, ldc, add),
            3 => kernel::<3>(k, a.as_ptr(), b.as_ptr(), c, ldc, add),
            2 => kernel::<2>(k, a.as_ptr(), b.as_ptr(), c, ldc, add),
            _ => kernel::<1>(k, a.as_ptr(), b.as_ptr(), c, ldc, add),
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn tile(_: usize, _: usize, _: &[f32], _: &[f32], _: *mut f32, _: usize, _: bool) {
    unreachable!("conv tiles run on x86-64 only (see `suits`)")
}

/// c[i * ldc + l] (+)= sum over r < k of a[r * ROWS + i] * b[r * LANES + l], for i < R and
/// l < LANES, each sum in the order of r.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `a` must hold k * ROWS and `b` k * LANES readable values,
/// and rows c + i * ldc (i < R) LANES writable ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel<const R: usize>(k: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, add: bool) {
    use std::arch::x86_64::*;
    let mut sums = [[_mm256_setzero_ps(); 2]; R];
    for r in 0..k {
        // SAFETY (loads): row r < k of each operand (caller's contract).
        let (b0, b1) = unsafe { (_mm256_loadu_ps(b.add(r * LANES)), _mm256_loadu_ps(b.add(r * LANES + 8))) };
        for (i, s) in sums.iter_mut().enumerate() {
            let ai = unsafe { _mm256_broadcast_ss(&*a.add(r * ROWS + i)) };
            s[0] = _mm256_fmadd_ps(ai, b0, s[0]);
            s[1] = _mm256_fmadd_ps(ai, b1, s[1]);
        }
    }
    for (i, s) in sums.iter().enumerate() {
        // SAFETY (loads and stores): row i < R of the tile (caller's contract).
        unsafe {
            let row = c.add(i * ldc);
            let (lo, hi) = if add {
                (_mm256_add_ps(_mm256_loadu_ps(row), s[0]), _mm256_add_ps(_mm256_loadu_ps(row.add(8)), s[1]))
            } else {
                (s[0], s[1])
            };
            _mm256_storeu_ps(row, lo);
            _mm256_storeu_ps(row.add(8), hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Geometry, taps};
    use super::*;

    /// The plain sum, in f64, of one output of the convolution of `x` with `w` plus `b`.
    fn reference(d: &Dims, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let mut y = vec![0f32; d.n * d.c_out * d.p()];
        for (i, out) in y.iter_mut().enumerate() {
            let (n, co, o) = (i / (d.c_out * d.p()), (i / d.p()) % d.c_out, i % d.p());
            let mut sum = b[co] as f64;
            for c in 0..d.c_in {
                for ky in 0..d.kh {
                    for kx in 0..d.kw {
                        let iy = ((o / d.ow) * d.g.stride + ky) as isize - d.g.padding[0] as isize;
                        let ix = ((o % d.ow) * d.g.stride + kx) as isize - d.g.padding[1] as isize;
                        if iy < 0 || ix < 0 || iy as usize >= d.h || ix as usize >= d.w {
                            continue;
                        }
                        let xv = x[((n * d.c_in + c) * d.h + iy as usize) * d.w + ix as usize] as f64;
                        sum += xv * w[((co * d.c_in + c) * d.kh + ky) * d.kw + kx] as f64;
                    }
                }
            }
            *out = sum as f32;
        }
        y
    }

    /// Tiles with missing rows, reductions of several blocks, strided and padded taps (runs
    /// of every kind), several images per chunk, with and without threads.
    #[test]
    fn tiles_compute_the_convolution() {
        if !avx2_fma() {
            eprintln!("skipped: this CPU lacks AVX2 or FMA, which the tiles need");
            return;
        }
        let g = |stride, padding| Geometry { stride, padding, dilation: 1, groups: 1 };
        let cases = [
            ([3, 5, 8, 8], [13, 5, 3, 3], g(1, [1, 1])),
            ([2, 30, 16, 16], [7, 30, 3, 3], g(2, [1, 1])),
            ([4, 3, 4, 4], [6, 3, 1, 1], g(1, [0, 0])),
            ([2, 4, 4, 8], [2, 4, 5, 5], g(1, [2, 2])),
            ([1, 64, 8, 8], [20, 64, 3, 3], g(1, [0, 1])),
        ];
        let values = |len: usize, seed: usize| -> Vec<f32> {
            (0..len).map(|i| (((i * 7919 + seed * 104729) % 2001) as f32 - 1000.0) / 500.0).collect()
        };
        let mut kinds = [false; 4];
        for (case, (xs, ws, geometry)) in cases.into_iter().enumerate() {
            let d = Dims::new(&xs, &ws, geometry).unwrap();
            assert!(shape_suits(&d), "case {case} must fit the tiles");
            for run in runs(&d, &taps(&d)) {
                let kind = match run {
                    Run::Inside(_) => 0,
                    Run::Padding => 1,
                    Run::Masked { .. } => 2,
                    Run::Mixed => 3,
                };
                kinds[kind] = true;
            }
            let (x, w, b) =
                (values(xs.iter().product(), case), values(ws.iter().product(), case + 9), values(ws[0], 3));
            let table = taps(&d);
            let tiles = Tiles::new(&d, &table, Arc::new(pack_weights(&d, &w)));
            // With a bias the output starts from it, as the forward pass does; without one
            // the tiles overwrite whatever it holds.
            for (bias, parallel, per_chunk) in
                [(true, false, 1), (true, true, d.n), (false, false, d.n), (false, true, 1)]
            {
                let b = if bias { b.clone() } else { vec![0.0; d.c_out] };
                let want = reference(&d, &x, &w, &b);
                {
                    let start = |i: usize| if bias { b[(i / d.p()) % d.c_out] } else { f32::NAN };
                    let mut y: Vec<MaybeUninit<f32>> = (0..want.len()).map(|i| MaybeUninit::new(start(i))).collect();
                    for (c, part) in y.chunks_mut(per_chunk * d.c_out * d.p()).enumerate() {
                        let imgs = c * per_chunk..((c + 1) * per_chunk).min(d.n);
                        chunk(&tiles, &x, imgs, bias, part, parallel);
                    }
                    // SAFETY: every value was initialised above (NaN where the tiles must write).
                    let y = unsafe { y.assume_init_ref() };
                    for (i, (got, want)) in y.iter().zip(&want).enumerate() {
                        let tolerance = 1e-4 * (1.0 + want.abs());
                        assert!((got - want).abs() <= tolerance, "case {case} output {i}: {got} vs {want}");
                    }
                }
            }
        }
        assert_eq!(kinds, [true; 4], "the cases read every kind of run (inside, padding, masked, mixed)");
    }
}
