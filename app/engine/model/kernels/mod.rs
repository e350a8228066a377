//! CPU kernels for the hot operations, as candle custom ops with PyTorch's semantics.
//!
//! candle's own CPU backward for convolutions runs a naive loop and always computes the
//! weight gradient (ENGINE-NOTES.md); these use im2col and the `gemm` crate both ways,
//! run images in parallel, and skip weight gradients when only the input's is wanted
//! (attacks). Other devices use candle's ops. `set_enabled(false)` switches back to the
//! plain candle path, which tests use as the reference.

mod act;
mod adam;
mod affine;
mod batchnorm;
mod conv;
mod linear;
mod pool;
mod prepared;
mod step;
mod transpose;

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::OnceLock;

use candle_core::{CpuStorage, Layout, Result, Tensor};
use rayon::prelude::*;

pub use act::{add_relu, relu};
pub use adam::{AdamStep, adam_update};
pub use affine::channel_affine;
pub use batchnorm::batch_norm;
pub use conv::{Epilogue, Geometry as ConvGeometry, conv2d, conv2d_then};
pub use linear::linear;
pub use pool::max_pool2d;
pub use prepared::params_changed;
pub use step::signed_step;

/// The gradients a forward pass's backward pass will be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Grads {
    /// None (evaluation): the ops record no graph, so each activation is freed as soon as
    /// the next layer has read it instead of living until the logits are dropped.
    None,
    /// The input's only (attacks): layers skip their weights' gradients.
    Input,
    /// Every parameter's (training).
    #[default]
    All,
}

impl Grads {
    /// Whether the parameters' gradients are wanted.
    pub fn weights(self) -> bool {
        self == Grads::All
    }
}

/// Applies a custom op with its backward pass unless no gradient is wanted.
fn apply3(
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    op: impl candle_core::CustomOp3 + Send + Sync + 'static,
    grads: Grads,
) -> Result<Tensor> {
    match grads {
        Grads::None => x.apply_op3_no_bwd(a, b, &op),
        _ => x.apply_op3(a, b, op),
    }
}

thread_local! {
    /// Set while `plain` runs a closure on this thread.
    static PLAIN: Cell<bool> = const { Cell::new(false) };
}

/// Whether the custom kernels run (CPU tensors only). On by default; off inside `plain`, and
/// for the whole process when the environment variable `FRAGILITY_PLAIN_OPS=1` is set at start.
/// Every caller decides on its own thread before a kernel fans work out to rayon, so the
/// choice is per call: two tests on two threads can compare the paths side by side.
pub fn enabled_for(t: &Tensor) -> bool {
    static ENV_PLAIN: OnceLock<bool> = OnceLock::new();
    let env_plain = *ENV_PLAIN.get_or_init(|| std::env::var_os("FRAGILITY_PLAIN_OPS").is_some_and(|v| v == "1"));
    t.device().is_cpu() && !env_plain && !PLAIN.get()
}

/// Runs `f` on candle's plain ops instead of the custom kernels (this thread, this call).
pub fn plain<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PLAIN.set(self.0);
        }
    }
    let _restore = Restore(PLAIN.replace(true));
    f()
}

/// The f32 elements of a contiguous tensor's storage (callers make inputs contiguous).
fn f32_data<'a>(s: &'a CpuStorage, l: &Layout) -> Result<Cow<'a, [f32]>> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(Cow::Borrowed(&data[a..b])),
        None => candle_core::bail!("custom kernels take contiguous tensors"),
    }
}

/// The fewest planes of `plane_len` elements one parallel task should take (about 16k
/// elements), so rayon does not schedule tiny planes one by one.
fn min_planes(plane_len: usize) -> usize {
    (16 * 1024 / plane_len.max(1)).max(1)
}

/// `out[i] = f(pattern[i's index within its image], a[i], b[i])` over tensors of whole
/// images of `pattern.len()` values each, in parallel by blocks of images. By image rather
/// than by channel plane: the planes of 1x1 maps are single values, which rayon would
/// schedule one by one. The output is written once, never zeroed first.
fn map_images(a: &[f32], b: &[f32], pattern: &[f32], f: impl Fn(f32, f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "map_images: inputs of different lengths");
    assert!(a.is_empty() || !pattern.is_empty(), "map_images: values without a pattern");
    let image = pattern.len().max(1);
    let mut out = Vec::with_capacity(a.len());
    let slots = &mut out.spare_capacity_mut()[..a.len()];
    let chunks = slots.par_chunks_mut(image).zip(a.par_chunks(image).zip(b.par_chunks(image)));
    chunks.with_min_len(min_planes(image)).for_each(|(slots, (a, b))| {
        for (((slot, &p), &a), &b) in slots.iter_mut().zip(pattern).zip(a).zip(b) {
            slot.write(f(p, a, b));
        }
    });
    // SAFETY: the chunks of `slots`, `a` and `b` have equal lengths, at most the pattern's,
    // and cover all three, so the zipped loop writes every slot.
    unsafe { out.set_len(a.len()) };
    out
}

/// `planes` planes of `len` values, plane i made by `f(i, plane)` from zeros in a scratch
/// plane (in cache) and copied out, in parallel: the output is written once, where zeroing
/// it as a whole first would be one more pass over memory.
fn build_planes(planes: usize, len: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let total = planes * len;
    let mut out = Vec::with_capacity(total);
    let per = min_planes(len);
    let slots = &mut out.spare_capacity_mut()[..total];
    slots.par_chunks_mut((per * len).max(1)).enumerate().for_each(|(t, block)| {
        let mut plane = vec![0f32; len];
        for (k, slots) in block.chunks_mut(len.max(1)).enumerate() {
            plane.fill(0.0);
            f(t * per + k, &mut plane);
            for (slot, &v) in slots.iter_mut().zip(&plane) {
                slot.write(v);
            }
        }
    });
    // SAFETY: the blocks cover the first `total` slots in chunks of `len`, each as long as
    // `plane`, and the zipped loop writes every slot of each.
    unsafe { out.set_len(total) };
    out
}

/// Per-channel `values` repeated over each channel's `p` positions: one image's pattern.
fn per_position(values: &[f32], p: usize) -> Vec<f32> {
    values.iter().flat_map(|&v| std::iter::repeat_n(v, p)).collect()
}

/// Threads for parallel loops (candle's own setting, which follows RAYON_NUM_THREADS), read
/// once: candle reads /proc/cpuinfo on every call, and the kernels ask several times per op
/// (2 % of a narrow ResNet's APGD profile, on the thread the workers wait for).
fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| candle_core::utils::get_num_threads().max(1))
}

/// `dst[m, n] (+)= lhs[m, k] @ rhs[k, n]` into a row-major `dst`, with explicit row and
/// column strides (in elements) for the operands.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
    parallel: bool,
) {
    gemm_strided(m, n, k, (dst, (n, 1)), accumulate, (lhs, lhs_strides), (rhs, rhs_strides), parallel)
}

/// A matrix operand: its elements and its (row, column) strides.
type Strided<'a, T> = (T, (usize, usize));

/// `dst (+)= lhs @ rhs` for [m, k] and [k, n] operands with any strides.
#[allow(clippy::too_many_arguments)]
fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    (dst, (dst_rs, dst_cs)): Strided<&mut [f32]>,
    accumulate: bool,
    (lhs, (lhs_rs, lhs_cs)): Strided<&[f32]>,
    (rhs, (rhs_rs, rhs_cs)): Strided<&[f32]>,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rs: usize, cs: usize, rows: usize, cols: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(dst.len() > last(dst_rs, dst_cs, m, n), "gemm: destination too short");
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst[i * dst_rs + j * dst_cs] = 0.0;
                }
            }
        }
        return;
    }
    assert!(
        lhs.len() > last(lhs_rs, lhs_cs, m, k) && rhs.len() > last(rhs_rs, rhs_cs, k, n),
        "gemm: operand too short"
    );
    let parallelism =
        if parallel && threads() > 1 { gemm::Parallelism::Rayon(threads()) } else { gemm::Parallelism::None };
    // SAFETY: the asserts above keep every addressed element inside its slice, and dst
    // (borrowed mutably) cannot alias lhs or rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

#[cfg(test)]
mod tests;
