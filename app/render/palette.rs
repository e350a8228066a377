//! Every colour of the app, its exported figures and the heatmap shader, as plain sRGB bytes: the
//! series palette, the colours with a fixed meaning and the class colours. An exported figure
//! therefore looks like the view it came from. `ui::theme` converts them to egui colours (the
//! only place that does); `shaders/heatmap.wgsl` repeats the class colours (a test in
//! `render::heatmap` keeps them equal). The colormaps are in `render::colormap`.

use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::scores::Class;

/// The series palette: Okabe & Ito (2008), distinguishable with every common form of
/// colour-blindness, ordered so the first colours contrast most. Its black is a mid grey here,
/// so that what it draws reads on the app's dark background as on a figure's white one.
pub const SERIES: [[u8; 3]; 8] = [
    [0, 114, 178],   // blue
    [213, 94, 0],    // vermillion
    [0, 158, 115],   // bluish green
    [230, 159, 0],   // orange
    [204, 121, 167], // reddish purple
    [86, 180, 233],  // sky blue
    [240, 228, 66],  // yellow
    [120, 120, 120], // grey (the palette's black)
];

pub const BLUE: usize = 0;
pub const VERMILLION: usize = 1;
pub const GREEN: usize = 2;
pub const ORANGE: usize = 3;
pub const PURPLE: usize = 4;
pub const SKY: usize = 5;
pub const GREY: usize = 7;

// Series with a fixed meaning, the same in every view and figure (indices into `SERIES`).

/// Clean accuracy (and S_clean) is blue and adversarial (S_adv) vermillion wherever both appear.
pub const CLEAN: usize = BLUE;
pub const ADVERSARIAL: usize = VERMILLION;
/// The fraction retained ρ and the diagonal it is compared with.
pub const RETAINED: usize = GREY;
/// Reference lines: a mean, a baseline, the training loss.
pub const REFERENCE: usize = GREY;
/// The current threshold (or eps) marked on a plot.
pub const THRESHOLD: usize = PURPLE;
/// S_diff = S_adv − S_clean.
pub const SCORE_DIFF: usize = PURPLE;
/// Bars without a class of their own: a weight histogram, kernels neither fragile nor null.
pub const BARS: usize = SKY;
/// Null kernels of nodal dropout (A_k at or above the baseline); fragile ones take their class colour.
pub const NULL_KERNEL: usize = ORANGE;
/// Accuracy on the training batches, beside the test accuracies.
pub const TRAINING: usize = GREEN;

/// The colour of series `i`; indices past the palette wrap around.
pub fn series(i: usize) -> [u8; 3] {
    SERIES[i % SERIES.len()]
}

/// A filter's series, the same in every figure and view.
pub fn filter(f: FilterKind) -> usize {
    match f {
        FilterKind::H0 => GREEN,
        FilterKind::H1 => BLUE,
        FilterKind::H2 => VERMILLION,
        FilterKind::H3 => PURPLE,
    }
}

/// Class colours in [`Class::index`] order: fragile, robust, antifragile (also in the shader).
pub const CLASS_COLOURS: [[u8; 3]; 3] = [[214, 39, 40], [150, 150, 150], [44, 160, 44]];

/// The colour of a fragility class.
pub const fn class(c: Class) -> [u8; 3] {
    CLASS_COLOURS[c.index()]
}

/// Highlighted frames and captions: flipped predictions, in the adversarial colour.
pub const HIGHLIGHT: [u8; 3] = SERIES[ADVERSARIAL];
/// A figure's axes, text and frames.
pub const INK: [u8; 3] = [40, 40, 40];
/// A figure's grid lines.
pub const GRID: [u8; 3] = [225, 225, 225];
/// A figure's heatmap cells without a value (gaps between tiled kernels).
pub const EMPTY: [u8; 3] = [245, 245, 245];
/// The app's heatmap: its background (gaps between kernels, outside the grid), and the shade
/// that removed weights are mixed towards.
pub const HEATMAP_BACKGROUND: [u8; 3] = [40, 40, 46];
pub const HEATMAP_SHADE: [u8; 3] = [20, 20, 24];
/// Status text: errors, notes (warnings, explanations) and success.
pub const ERROR: [u8; 3] = [200, 40, 40];
pub const NOTE: [u8; 3] = [160, 110, 20];
pub const GOOD: [u8; 3] = [40, 140, 60];

/// `c` blended towards white by `amount` in [0, 1] (dimmed cells, light fills).
pub fn lighten(c: [u8; 3], amount: f32) -> [u8; 3] {
    c.map(|v| (v as f32 + (255.0 - v as f32) * amount.clamp(0.0, 1.0)).round() as u8)
}

/// `c` as floats in [0, 1], still sRGB (the heatmap shader's uniforms).
pub fn unit(c: [u8; 3]) -> [f32; 3] {
    c.map(|v| v as f32 / 255.0)
}
