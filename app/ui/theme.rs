//! The palette as egui colours: the one place the app turns `render::palette` (every colour of
//! the app and its figures) into `Color32`, under the palette's names. Panels and widgets take
//! their colours from here, so a view and its exported figure agree.

use egui::Color32;

use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::scores::Class;
use crate::render::palette;

/// An sRGB colour of the palette (or a colormap) as egui's.
pub const fn rgb(c: [u8; 3]) -> Color32 {
    Color32::from_rgb(c[0], c[1], c[2])
}

/// A filter's colour, as in every figure.
pub fn filter(f: FilterKind) -> Color32 {
    rgb(palette::series(palette::filter(f)))
}

/// The colour of a fragility class.
pub fn class(c: Class) -> Color32 {
    rgb(palette::class(c))
}

pub const CLEAN: Color32 = rgb(palette::SERIES[palette::CLEAN]);
pub const ADVERSARIAL: Color32 = rgb(palette::SERIES[palette::ADVERSARIAL]);
pub const RETAINED: Color32 = rgb(palette::SERIES[palette::RETAINED]);
pub const REFERENCE: Color32 = rgb(palette::SERIES[palette::REFERENCE]);
pub const THRESHOLD: Color32 = rgb(palette::SERIES[palette::THRESHOLD]);
pub const SCORE_DIFF: Color32 = rgb(palette::SERIES[palette::SCORE_DIFF]);
pub const BARS: Color32 = rgb(palette::SERIES[palette::BARS]);
pub const NULL_KERNEL: Color32 = rgb(palette::SERIES[palette::NULL_KERNEL]);
pub const HIGHLIGHT: Color32 = rgb(palette::HIGHLIGHT);
pub const ERROR: Color32 = rgb(palette::ERROR);
pub const NOTE: Color32 = rgb(palette::NOTE);
pub const GOOD: Color32 = rgb(palette::GOOD);
pub const HEATMAP_BACKGROUND: Color32 = rgb(palette::HEATMAP_BACKGROUND);
pub const HEATMAP_SHADE: Color32 = rgb(palette::HEATMAP_SHADE);
