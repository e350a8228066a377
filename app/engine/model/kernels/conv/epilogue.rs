//! What may follow a convolution inside its op: batch norm with running statistics
//! (`x * alpha[c] + beta[c]`) and ReLU, applied to each chunk of the output while it is
//! still in cache. Apart, each is a pass over the activations and a fresh tensor.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape};

use super::super::act::{relu_grad, relu_of};
use super::super::affine::affine;
use super::super::pool::{ScaleBackward, unpool};
use super::super::{f32_data, map_images, per_position};
use crate::engine::model::ops::Pool2d;

#[derive(Debug, Clone)]
pub struct Epilogue {
    pub alpha: Vec<f32>,
    pub beta: Vec<f32>,
    pub relu: bool,
}

impl Epilogue {
    /// ReLU alone: scale 1 and shift 0 leave every value as it is (ReLU then maps -0 and
    /// +0 alike to +0).
    pub fn relu(channels: usize) -> Self {
        Self { alpha: vec![1.0; channels], beta: vec![0.0; channels], relu: true }
    }

    /// In place on whole images `y` [images, channels, p], with the roundings of the
    /// separate ops (`channel_affine`, then `relu`).
    pub(super) fn apply(&self, y: &mut [f32], p: usize) {
        let c = self.alpha.len();
        for (i, plane) in y.chunks_mut(p).enumerate() {
            self.apply_run(plane, i % c, p);
        }
    }

    /// In place on `run`, values of consecutive channels from `first` on, `per_channel`
    /// values each.
    #[inline(always)]
    pub(super) fn apply_run(&self, run: &mut [f32], first: usize, per_channel: usize) {
        for (part, c) in run.chunks_mut(per_channel).zip(first..) {
            let (alpha, beta) = (self.alpha[c], self.beta[c]);
            for v in part {
                let z = affine(*v, alpha, beta);
                *v = if self.relu { relu_of(z) } else { z };
            }
        }
    }

    pub(super) fn check(&self, channels: usize) -> Result<()> {
        if self.alpha.len() != channels || self.beta.len() != channels {
            candle_core::bail!("conv epilogue: {channels} channels but {} scales", self.alpha.len())
        }
        Ok(())
    }
}

/// The gradient at the convolution's output from the gradient at the epilogue's output
/// `y`: ReLU's (kept where `y` > 0) then the scale's, with the separate ops' roundings.
pub(super) struct EpilogueBackward(pub Epilogue);

impl CustomOp2 for EpilogueBackward {
    fn name(&self) -> &'static str {
        "fe-conv-epilogue-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (g, y) = (f32_data(s1, l1)?, f32_data(s2, l2)?);
        let dims = l1.dims();
        let (c, p) = (dims[1], dims[2..].iter().product::<usize>().max(1));
        self.0.check(c)?;
        Ok((CpuStorage::F32(Through::new(&self.0, &y, p).all(&g)), l1.shape().clone()))
    }
}

/// One element of the epilogue's backward pass: ReLU's gradient (`g` kept where the
/// output `y` is positive), then the scale `alpha`'s, with the separate ops' roundings.
#[inline(always)]
fn backward_at(relu: bool, g: f32, y: f32, alpha: f32) -> f32 {
    let kept = if relu { relu_grad(g, y) } else { g };
    // The separate scale op is the affine pass with beta 0.
    affine(kept, alpha, 0.0)
}

/// The epilogue's backward pass: over all images at once ([`EpilogueBackward`]), or image
/// by image as the input gradient's products read the output gradient
/// (`direct::backward_input`), one pass less over the gradient.
pub(super) struct Through<'a> {
    /// The epilogue's output [n, c, p].
    pub y: &'a [f32],
    /// Each channel's scale repeated over its positions: one image's pattern.
    scale: Vec<f32>,
    relu: bool,
}

impl<'a> Through<'a> {
    pub fn new(e: &Epilogue, y: &'a [f32], p: usize) -> Self {
        Self { y, scale: per_position(&e.alpha, p), relu: e.relu }
    }

    /// One image's gradient at the convolution's output from `g` and `y`, that image's
    /// gradient at the epilogue's output and the epilogue's output.
    #[inline]
    pub fn image(&self, g: &[f32], y: &[f32], out: &mut [f32]) {
        // One loop per case, chosen outside it: with `relu` tested inside, the loop compiled
        // to scalar code (7 % of a narrow ResNet's APGD-CE profile, PERFORMANCE.md item 41).
        match self.relu {
            true => image_backward::<true>(&self.scale, g, y, out),
            false => image_backward::<false>(&self.scale, g, y, out),
        }
    }

    /// The gradient at the convolution's output for all images from `g`, the gradient at
    /// the epilogue's output [n, c, p], in parallel.
    fn all(&self, g: &[f32]) -> Vec<f32> {
        match self.relu {
            true => all_backward::<true>(&self.scale, g, self.y),
            false => all_backward::<false>(&self.scale, g, self.y),
        }
    }
}

fn image_backward<const RELU: bool>(scale: &[f32], g: &[f32], y: &[f32], out: &mut [f32]) {
    for (((o, &g), &y), &a) in out.iter_mut().zip(g).zip(y).zip(scale) {
        *o = backward_at(RELU, g, y, a);
    }
}

fn all_backward<const RELU: bool>(scale: &[f32], g: &[f32], y: &[f32]) -> Vec<f32> {
    map_images(g, y, scale, |a, g, y| backward_at(RELU, g, y, a))
}

/// The gradient at the convolution's output from the gradient at the output of the
/// max-pool after it: the pool's backward pass and the epilogue's in one (see `unpool`).
pub(super) struct PoolBackward {
    pub p: Pool2d,
    /// The convolution's output dims.
    pub input: Vec<usize>,
    pub indices: Vec<u32>,
    pub then: Option<Epilogue>,
}

impl CustomOp2 for PoolBackward {
    fn name(&self) -> &'static str {
        "fe-conv-pool-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (g, pooled) = (f32_data(s1, l1)?, f32_data(s2, l2)?);
        let then = self.then.as_ref().map(|e| ScaleBackward { alpha: &e.alpha, relu: e.relu, pooled: &pooled });
        let dz = unpool(self.p, &self.input, &self.indices, &g, then)?;
        Ok((CpuStorage::F32(dz), Shape::from(self.input.clone())))
    }
}
