//! What the convolution kernels derive from a weight parameter (live-tap rows, the flipped
//! kernel, register tiles), kept between calls through [`prepared`] under the parameter's
//! id and a tag that says what was derived and from which arrangement of the weight.

use std::sync::Arc;

use candle_core::TensorId;

use super::super::prepared::prepared;

/// The parameter a convolution's weight operand comes from, and whether the operand is that
/// parameter flipped (the stride-1 input gradient's forward convolution, `flip_kernel`).
#[derive(Clone, Copy, Debug)]
pub(super) struct WeightSource {
    pub id: TensorId,
    pub flipped: bool,
}

impl WeightSource {
    pub fn flipped(self) -> Self {
        Self { flipped: true, ..self }
    }
}

/// What a kernel derives from a weight operand.
#[derive(Clone, Copy)]
pub(super) enum Derived {
    /// The direct path's live-tap rows (the tag's rest: the live taps).
    LiveTaps,
    /// The kernel flipped for the input gradient (the rest: kh, kw).
    Flipped,
    /// The tiles of `packed` (no rest: one layout per weight shape).
    Tiles,
}

/// `build()`, kept for the parameter `source` (built afresh for tensors that are not one).
pub(super) fn kept(
    source: Option<WeightSource>,
    what: Derived,
    rest: &[usize],
    build: impl FnOnce() -> Vec<f32>,
) -> Arc<Vec<f32>> {
    let Some(source) = source else { return prepared(None, Vec::new(), build) };
    prepared(Some(source.id), [&[what as usize, source.flipped as usize][..], rest].concat(), build)
}
