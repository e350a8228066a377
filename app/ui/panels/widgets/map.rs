//! Painted maps (the GPU weight heatmap, the landscape's step-by-epoch maps) framed like the
//! exported figures: ticks and titles on both axes, a colorbar with ticks and a title or a
//! legend of class colours. Painted text is exposed to screen readers, as widgets are.

use egui::epaint::TextShape;
use egui::{Align2, Color32, Id, Mesh, Pos2, Rect, Role, Sense, Stroke, Vec2, WidgetInfo};

use super::plot::Axis;
use crate::engine::analysis::scores::Class;
use crate::render::colormap::Colormap;
use crate::render::heatmap::{SHADE_STRENGTH, STRIPE};
use crate::ui::theme;

/// Room left of a map for its y tick labels and title.
pub const LEFT: f32 = 64.0;
/// Room below a map for its x tick labels and title.
pub const BOTTOM: f32 = 42.0;
/// Tick labels at least this far apart along x and along y.
const X_SPACING: f32 = 44.0;
const Y_SPACING: f32 = 24.0;
const TICK: f32 = 4.0;

/// An accessible label over `rect` for text painted elsewhere (egui_plot's axes).
pub fn expose_text(ui: &egui::Ui, id: Id, rect: Rect, text: &str) {
    if text.is_empty() {
        return;
    }
    let r = ui.interact(rect, id, Sense::hover());
    r.widget_info(|| WidgetInfo::labeled(Role::Label, true, text));
}

fn font(ui: &egui::Ui) -> egui::FontId {
    egui::TextStyle::Body.resolve(ui.style())
}

/// `text` painted at `pos` by `align`, upright or turned a quarter anticlockwise (a y axis
/// title), and exposed to screen readers.
pub fn text(ui: &egui::Ui, id: Id, pos: Pos2, align: Align2, text: &str, turned: bool) {
    let colour = ui.visuals().text_color();
    let galley = ui.painter().layout_no_wrap(text.to_string(), font(ui), colour);
    let size = galley.size();
    let rect = if turned { align.anchor_size(pos, Vec2::new(size.y, size.x)) } else { align.anchor_size(pos, size) };
    if turned {
        // Turned about its top left corner, which lands at the rect's bottom left.
        let shape = TextShape::new(rect.left_bottom(), galley, colour).with_angle(-std::f32::consts::FRAC_PI_2);
        ui.painter().add(shape);
    } else {
        ui.painter().galley(rect.min, galley, colour);
    }
    expose_text(ui, id, rect, text);
}

/// One axis of a map: its title and its ticks as (screen coordinate, label).
#[derive(Debug, Clone, Default)]
pub struct MapAxis {
    pub title: String,
    pub ticks: Vec<(f32, String)>,
}

impl MapAxis {
    /// The ticks `axis` puts on values [lo, hi], placed by `at` (value to screen coordinate).
    pub fn new(axis: &Axis, lo: f64, hi: f64, length: f32, at: impl Fn(f64) -> f32) -> Self {
        Self::spaced(axis, lo, hi, length, X_SPACING, at)
    }

    /// As [`MapAxis::new`] for a vertical axis (labels need less room).
    pub fn vertical(axis: &Axis, lo: f64, hi: f64, length: f32, at: impl Fn(f64) -> f32) -> Self {
        Self::spaced(axis, lo, hi, length, Y_SPACING, at)
    }

    fn spaced(axis: &Axis, lo: f64, hi: f64, length: f32, spacing: f32, at: impl Fn(f64) -> f32) -> Self {
        let (values, step) = axis.major(lo, hi, length, spacing);
        Self { title: axis.title.clone(), ticks: values.into_iter().map(|v| (at(v), axis.label(v, step))).collect() }
    }
}

/// Ticks, tick labels and titles left of and below `rect`.
pub fn axes(ui: &egui::Ui, id: Id, rect: Rect, x: &MapAxis, y: &MapAxis) {
    let stroke = Stroke::new(1.0, ui.visuals().text_color());
    let p = ui.painter();
    for (k, (sx, label)) in x.ticks.iter().enumerate() {
        if *sx < rect.left() - 0.5 || *sx > rect.right() + 0.5 {
            continue;
        }
        p.line_segment([Pos2::new(*sx, rect.bottom()), Pos2::new(*sx, rect.bottom() + TICK)], stroke);
        text(ui, id.with(("x", k)), Pos2::new(*sx, rect.bottom() + TICK + 1.0), Align2::CENTER_TOP, label, false);
    }
    for (k, (sy, label)) in y.ticks.iter().enumerate() {
        if *sy < rect.top() - 0.5 || *sy > rect.bottom() + 0.5 {
            continue;
        }
        p.line_segment([Pos2::new(rect.left() - TICK, *sy), Pos2::new(rect.left(), *sy)], stroke);
        text(ui, id.with(("y", k)), Pos2::new(rect.left() - TICK - 2.0, *sy), Align2::RIGHT_CENTER, label, false);
    }
    text(
        ui,
        id.with("x title"),
        Pos2::new(rect.center().x, rect.bottom() + BOTTOM),
        Align2::CENTER_BOTTOM,
        &x.title,
        false,
    );
    text(ui, id.with("y title"), Pos2::new(rect.left() - LEFT, rect.center().y), Align2::LEFT_CENTER, &y.title, true);
}

/// A colorbar's gradient: 48 cells of `cmap`, the one from `t0` to `t1` (fractions along the
/// bar) drawn in the rectangle `cell(t0, t1)` gives.
fn gradient(ui: &egui::Ui, cmap: Colormap, cell: impl Fn(f32, f32) -> Rect) {
    const STEPS: usize = 48;
    let mut mesh = Mesh::default();
    for i in 0..STEPS {
        let (t0, t1) = (i as f32 / STEPS as f32, (i + 1) as f32 / STEPS as f32);
        mesh.add_colored_rect(cell(t0, t1), theme::rgb(cmap.at((t0 + t1) / 2.0)));
    }
    ui.painter().add(mesh);
}

/// A vertical colorbar at the left of `band`: `cmap` from `range[0]` (bottom) to `range[1]`
/// (top), labelled ticks and `title` (with its unit) turned along it.
pub fn colorbar(ui: &egui::Ui, id: Id, band: Rect, cmap: Colormap, range: [f64; 2], title: &str) {
    let bar = Rect::from_min_size(band.min + Vec2::new(10.0, 0.0), Vec2::new(14.0, band.height()));
    gradient(ui, cmap, |t0, t1| {
        Rect::from_min_max(
            Pos2::new(bar.left(), bar.bottom() - t1 * bar.height() - 0.5),
            Pos2::new(bar.right(), bar.bottom() - t0 * bar.height()),
        )
    });
    let stroke = Stroke::new(1.0, ui.visuals().text_color());
    ui.painter().rect_stroke(
        bar,
        0.0,
        Stroke::new(1.0, ui.visuals().widgets.noninteractive.bg_stroke.color),
        egui::StrokeKind::Outside,
    );
    let [lo, hi] = range;
    let span = if hi > lo { hi - lo } else { 1.0 };
    let ticks = MapAxis::vertical(&Axis::new(title), lo, hi, bar.height(), |v| {
        bar.bottom() - ((v - lo) / span) as f32 * bar.height()
    });
    let mut widest: f32 = 0.0;
    for (k, (sy, label)) in ticks.ticks.iter().enumerate() {
        ui.painter().line_segment([Pos2::new(bar.right(), *sy), Pos2::new(bar.right() + TICK, *sy)], stroke);
        text(ui, id.with(("tick", k)), Pos2::new(bar.right() + TICK + 2.0, *sy), Align2::LEFT_CENTER, label, false);
        widest = widest.max(ui.painter().layout_no_wrap(label.clone(), font(ui), Color32::PLACEHOLDER).size().x);
    }
    let x = bar.right() + TICK + 6.0 + widest;
    text(ui, id.with("title"), Pos2::new(x, bar.center().y), Align2::LEFT_CENTER, title, true);
}

/// A horizontal colorbar filling `rect`'s width: ticks and labels below it, `title` at its
/// left.
pub fn colorbar_horizontal(ui: &egui::Ui, id: Id, rect: Rect, cmap: Colormap, range: [f64; 2], title: &str) {
    let galley = ui.painter().layout_no_wrap(title.to_string(), font(ui), Color32::PLACEHOLDER);
    text(ui, id.with("title"), Pos2::new(rect.left(), rect.top() + 7.0), Align2::LEFT_CENTER, title, false);
    // Room for half an end label on either side of the bar.
    let end = width_of(ui, "-0.00");
    let left = rect.left() + galley.size().x + 6.0 + 0.5 * end;
    let right = (rect.right() - 0.5 * end).max(left + 40.0);
    let bar = Rect::from_min_max(Pos2::new(left, rect.top()), Pos2::new(right, rect.top() + 14.0));
    gradient(ui, cmap, |t0, t1| {
        Rect::from_min_max(
            Pos2::new(bar.left() + t0 * bar.width(), bar.top()),
            Pos2::new(bar.left() + t1 * bar.width() + 0.5, bar.bottom()),
        )
    });
    let stroke = Stroke::new(1.0, ui.visuals().text_color());
    let [lo, hi] = range;
    let span = if hi > lo { hi - lo } else { 1.0 };
    let ticks =
        MapAxis::new(&Axis::new(title), lo, hi, bar.width(), |v| bar.left() + ((v - lo) / span) as f32 * bar.width());
    for (k, (sx, label)) in ticks.ticks.iter().enumerate() {
        ui.painter().line_segment([Pos2::new(*sx, bar.bottom()), Pos2::new(*sx, bar.bottom() + TICK)], stroke);
        text(ui, id.with(("tick", k)), Pos2::new(*sx, bar.bottom() + TICK + 1.0), Align2::CENTER_TOP, label, false);
    }
}

/// How a legend entry's swatch is painted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Swatch {
    Solid(Color32),
    /// `base` shaded as the heatmap shades removed weights: darkened, with diagonal stripes.
    Shaded {
        base: Color32,
        shade: Color32,
    },
}

impl Swatch {
    fn paint(self, ui: &egui::Ui, rect: Rect) {
        let p = ui.painter();
        match self {
            Swatch::Solid(c) => {
                p.rect_filled(rect, 2.0, c);
            }
            Swatch::Shaded { base, shade } => {
                let mix = |t: f32| base.lerp_to_gamma(shade, t);
                p.rect_filled(rect, 0.0, mix(SHADE_STRENGTH));
                // The lighter stripes, a few points apart, as the shader draws them.
                let p = p.with_clip_rect(rect);
                let stroke = Stroke::new(2.0, mix(SHADE_STRENGTH * STRIPE));
                let mut d = -rect.height();
                while d < rect.width() {
                    let a = Pos2::new(rect.left() + d, rect.bottom());
                    p.line_segment([a, a + Vec2::new(rect.height(), -rect.height())], stroke);
                    d += 5.0;
                }
            }
        }
        p.rect_stroke(
            rect,
            2.0,
            Stroke::new(1.0, ui.visuals().widgets.noninteractive.bg_stroke.color),
            egui::StrokeKind::Outside,
        );
    }
}

const SWATCH: f32 = 12.0;
/// From the band's left edge to a legend entry's text.
const ENTRY_INDENT: f32 = 10.0 + SWATCH + 6.0;

fn width_of(ui: &egui::Ui, text: &str) -> f32 {
    ui.painter().layout_no_wrap(text.to_string(), font(ui), Color32::PLACEHOLDER).size().x
}

/// The width of the band [`legend`] needs for `title` and `names`.
pub fn legend_width(ui: &egui::Ui, title: &str, names: &[&str]) -> f32 {
    let entries = names.iter().map(|n| ENTRY_INDENT + width_of(ui, n)).fold(0.0, f32::max);
    entries.max(10.0 + width_of(ui, title)) + 8.0
}

/// The width of the band [`colorbar`] needs for `range`.
pub fn colorbar_width(ui: &egui::Ui, range: [f64; 2]) -> f32 {
    let ticks = MapAxis::vertical(&Axis::new(""), range[0], range[1], 300.0, |_| 0.0);
    let widest = ticks.ticks.iter().map(|(_, l)| width_of(ui, l)).fold(0.0, f32::max);
    10.0 + 14.0 + TICK + 6.0 + widest + ui.text_style_height(&egui::TextStyle::Body) + 8.0
}

/// Legend entries (a swatch and a name) stacked from the top of `band`, under `title`.
pub fn legend(ui: &egui::Ui, id: Id, band: Rect, title: &str, entries: &[(Swatch, &str)]) {
    let line = ui.text_style_height(&egui::TextStyle::Body) + 6.0;
    let mut y = band.top() + 0.5 * line;
    if !title.is_empty() {
        text(ui, id.with("title"), Pos2::new(band.left() + 10.0, y), Align2::LEFT_CENTER, title, false);
        y += line;
    }
    for (k, (swatch, name)) in entries.iter().enumerate() {
        let rect = Rect::from_center_size(Pos2::new(band.left() + 10.0 + 0.5 * SWATCH, y), Vec2::splat(SWATCH));
        swatch.paint(ui, rect);
        text(ui, id.with(("entry", k)), Pos2::new(band.left() + ENTRY_INDENT, y), Align2::LEFT_CENTER, name, false);
        y += line;
    }
}

/// The class colours (fragile, robust, antifragile), in that order.
pub fn class_entries() -> Vec<(Swatch, &'static str)> {
    Class::ALL.iter().map(|&c| (Swatch::Solid(theme::class(c)), c.name())).collect()
}
