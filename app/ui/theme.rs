//! Every colour the app paints, in one place.

use egui::Color32;

use crate::render::colormap::CLASS_COLOURS;

pub const CLEAN: Color32 = Color32::from_rgb(31, 119, 180);
pub const ADVERSARIAL: Color32 = Color32::from_rgb(255, 127, 14);
pub const RETAINED: Color32 = Color32::from_rgb(120, 120, 120);
pub const THRESHOLD: Color32 = Color32::from_rgb(148, 103, 189);
pub const MEAN_LINE: Color32 = Color32::from_rgb(170, 170, 170);
pub const REGULAR: Color32 = Color32::from_rgb(31, 119, 180);
pub const SELECTIVE: Color32 = Color32::from_rgb(44, 160, 44);
pub const BAR: Color32 = Color32::from_rgb(110, 140, 180);
pub const ERROR: Color32 = Color32::from_rgb(200, 40, 40);
pub const NOTE: Color32 = Color32::from_rgb(160, 110, 20);
pub const GOOD: Color32 = Color32::from_rgb(40, 140, 60);
pub const FLIPPED: Color32 = Color32::from_rgb(220, 30, 30);
/// The heatmap's background (gaps between kernels, outside the grid) and the shade of
/// removed weights.
pub const HEATMAP_BACKGROUND: Color32 = Color32::from_rgb(40, 40, 46);
pub const HEATMAP_SHADE: Color32 = Color32::from_rgb(20, 20, 24);

/// Fragile, robust, antifragile.
pub fn class_colour(class: usize) -> Color32 {
    let [r, g, b] = CLASS_COLOURS[class.min(2)];
    Color32::from_rgb(r, g, b)
}

pub fn rgb_f32(c: Color32) -> [f32; 3] {
    [c.r() as f32 / 255.0, c.g() as f32 / 255.0, c.b() as f32 / 255.0]
}

pub fn rgb_u8(c: Color32) -> [u8; 3] {
    [c.r(), c.g(), c.b()]
}

/// Series colours of exported figures, by palette index.
pub const SERIES: [Color32; 6] = [CLEAN, ADVERSARIAL, RETAINED, THRESHOLD, SELECTIVE, MEAN_LINE];
