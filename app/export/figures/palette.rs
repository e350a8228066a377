//! The theme's series colours: the Okabe-Ito palette, distinguishable with every common form
//! of colour-blindness. Figures, plots in the GUI and exports all take their series colours
//! from here (class colours stay in `render::colormap::CLASS_COLOURS`).

use crate::engine::analysis::scores::Class;
use crate::render::colormap::CLASS_COLOURS;

/// Okabe & Ito (2008), ordered so the first colours contrast most on a white background.
pub const SERIES: [[u8; 3]; 8] = [
    [0, 114, 178],   // blue
    [213, 94, 0],    // vermillion
    [0, 158, 115],   // bluish green
    [230, 159, 0],   // orange
    [204, 121, 167], // reddish purple
    [86, 180, 233],  // sky blue
    [240, 228, 66],  // yellow
    [0, 0, 0],       // black
];

/// Palette indices with a fixed meaning, so every figure uses the same colour for the same thing.
pub const BLUE: usize = 0;
pub const VERMILLION: usize = 1;
pub const GREEN: usize = 2;
pub const ORANGE: usize = 3;
pub const PURPLE: usize = 4;
pub const SKY: usize = 5;
/// Reference lines (the diagonal of the compression view, a mean).
pub const BLACK: usize = 7;

/// Clean accuracy is blue and adversarial vermillion wherever both appear.
pub const CLEAN: usize = BLUE;
pub const ADVERSARIAL: usize = VERMILLION;

/// Highlighted frames (flipped predictions) and marker lines.
pub const HIGHLIGHT: [u8; 3] = SERIES[VERMILLION];
/// Axes, text and neutral reference lines.
pub const INK: [u8; 3] = [40, 40, 40];
/// Grid lines.
pub const GRID: [u8; 3] = [225, 225, 225];
/// Heatmap cells without a value (gaps between tiled kernels).
pub const EMPTY: [u8; 3] = [245, 245, 245];

/// The colour of series `i`; indices past the palette wrap around.
pub fn series(i: usize) -> [u8; 3] {
    SERIES[i % SERIES.len()]
}

/// The colour of a fragility class, as the app paints it.
pub fn class(c: Class) -> [u8; 3] {
    CLASS_COLOURS[class_index(c)]
}

/// Index of a class into `CLASS_COLOURS` (fragile, robust, antifragile).
pub fn class_index(c: Class) -> usize {
    match c {
        Class::Fragile => 0,
        Class::Robust => 1,
        Class::Antifragile => 2,
    }
}

/// The three classes in `CLASS_COLOURS` order, for legends.
pub const CLASSES: [Class; 3] = [Class::Fragile, Class::Robust, Class::Antifragile];

/// `c` blended towards white by `amount` in [0, 1] (dimmed cells, light fills).
pub fn lighten(c: [u8; 3], amount: f32) -> [u8; 3] {
    c.map(|v| (v as f32 + (255.0 - v as f32) * amount.clamp(0.0, 1.0)).round() as u8)
}
