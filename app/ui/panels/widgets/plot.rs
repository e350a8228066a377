//! egui_plot plots that read like the exported figures: round ticks from the figures' own tick
//! logic (`export::figures::ticks`) labelled on every axis, axis titles with units, hover text
//! in those units, and the tick labels and titles exposed to screen readers (egui_plot only
//! paints them).

use std::sync::Arc;

use egui::{Pos2, Rect, Vec2};
use egui_plot::{
    AxisHints, Corner, GridInput, GridMark, HPlacement, HoverPosition, Legend, Plot, PlotResponse, PlotUi,
};

use super::map::expose_text;
use crate::export::figures::ticks;

/// Points between tick labels at least: x labels are wider than y labels are tall.
const X_SPACING: f32 = 72.0;
const Y_SPACING: f32 = 44.0;
/// The thinnest grid spacing egui_plot draws; also how a spacer learns the axis length.
const GRID_MIN: f32 = 8.0;

/// What the ticks of an axis show.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Ticks {
    /// Round numbers (1, 2, 2.5 or 5 times a power of ten apart).
    #[default]
    Numbers,
    /// Whole numbers only (epochs, kernels).
    Integers,
    /// Names of the integer positions 0, 1, ... (bar categories).
    Categories(Vec<String>),
}

/// One axis of a plot: its title (with its unit), its ticks and how plot values read on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub title: String,
    pub ticks: Ticks,
    /// Shown value per plot unit: a right axis of fractions beside a left one in percent has
    /// 0.01.
    pub scale: f64,
    /// Series drawn against this axis, for hover text (only needed on a second y axis).
    pub series: Vec<String>,
}

impl Axis {
    pub fn new(title: impl Into<String>) -> Self {
        Self { title: title.into(), ticks: Ticks::Numbers, scale: 1.0, series: Vec::new() }
    }

    pub fn integers(mut self) -> Self {
        self.ticks = Ticks::Integers;
        self
    }

    pub fn categories(mut self, names: Vec<String>) -> Self {
        self.ticks = Ticks::Categories(names);
        self
    }

    /// A second axis that reads the same plot values times `scale`, for `series`.
    pub fn scaled(mut self, scale: f64, series: &[&str]) -> Self {
        self.scale = scale;
        self.series = series.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The labelled ticks of [lo, hi] on an axis `length` points long, about `spacing` points
    /// apart, and the step between them.
    pub(super) fn major(&self, lo: f64, hi: f64, length: f32, spacing: f32) -> (Vec<f64>, f64) {
        if !lo.is_finite() || !hi.is_finite() || hi <= lo || length.is_nan() || length <= 0.0 {
            return (Vec::new(), 1.0);
        }
        // Ticks are chosen in shown units, so a 0.01-scaled axis gets 0.1, not 0.001, steps.
        let s = if self.scale > 0.0 { self.scale } else { 1.0 };
        // At least two ticks, to know their step: a short axis may need a finer one than its
        // length asks for ([-0.09, 0.09] over three labels' room has only 0 at a step of 0.1).
        let mut target = ((length / spacing).floor() as usize).max(2);
        let mut values = ticks::ticks(lo * s, hi * s, target).0;
        while values.len() < 2 && target < 16 {
            target += 1;
            values = ticks::ticks(lo * s, hi * s, target).0;
        }
        let mut step = match values.as_slice() {
            [a, b, ..] => b - a,
            _ => (hi - lo) * s,
        };
        let mut values: Vec<f64> = values.into_iter().map(|v| v / s).collect();
        if self.ticks != Ticks::Numbers && step.fract().abs() > 1e-9 {
            // Whole numbers only: a step of 0.5 becomes 1, of 2.5 becomes 2.
            step = step.floor().max(1.0);
            let (first, last) = ((lo / step).ceil() as i64, (hi / step).floor() as i64);
            values = (first..=last).map(|k| k as f64 * step).collect();
        }
        if let Ticks::Categories(names) = &self.ticks {
            values.retain(|&v| v >= 0.0 && (v as usize) < names.len());
        }
        (values, step / s)
    }

    /// Major ticks, and for numbers four unlabelled minor ticks between them.
    fn marks(&self, lo: f64, hi: f64, length: f32, spacing: f32) -> Vec<GridMark> {
        let (values, step) = self.major(lo, hi, length, spacing);
        let mut marks: Vec<GridMark> = values.iter().map(|&value| GridMark { value, step_size: step }).collect();
        if self.ticks == Ticks::Numbers && step > 0.0 {
            let minor = step / 5.0;
            let (first, last) = ((lo / minor).ceil() as i64, (hi / minor).floor() as i64);
            if last - first < 1000 {
                marks.extend(
                    (first..=last)
                        .filter(|k| k.rem_euclid(5) != 0)
                        .map(|k| GridMark { value: k as f64 * minor, step_size: minor }),
                );
            }
        }
        marks
    }

    /// The label of a tick `step` apart from the next.
    pub fn label(&self, value: f64, step: f64) -> String {
        match &self.ticks {
            Ticks::Numbers => ticks::label(value * self.scale, ticks::decimals((step * self.scale).abs().max(1e-12))),
            Ticks::Integers => {
                if (value - value.round()).abs() < 1e-6 {
                    format!("{}", value.round() as i64)
                } else {
                    String::new()
                }
            }
            Ticks::Categories(names) => {
                let i = value.round();
                if (value - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            }
        }
    }

    /// A value under the pointer, to about four significant digits.
    fn value(&self, v: f64) -> String {
        match &self.ticks {
            Ticks::Numbers => {
                let v = v * self.scale;
                let digits = if v == 0.0 { 0 } else { (3 - v.abs().log10().floor() as i32).clamp(0, 6) as usize };
                ticks::label(v, digits)
            }
            _ => self.label(v.round(), 1.0),
        }
    }
}

/// How far above the data a plot with its legend in a top corner reaches, as a fraction of the
/// data's span: room for a legend of up to four rows, so that it covers no bar.
const LEGEND_ROOM: f64 = 0.45;

/// The top of the y range for data spanning `lo..hi` with the legend above it.
pub fn top_with_legend_room(lo: f64, hi: f64) -> f64 {
    hi + LEGEND_ROOM * (hi - lo)
}

/// The plots' legend: series in the order they are added, in `corner`.
pub fn legend(corner: Corner) -> Legend {
    Legend::default().follow_insertion_order(true).position(corner)
}

/// A plot with labelled axes: build it with [`FigurePlot::plot`], add bounds, size and items,
/// then [`FigurePlot::show`] it.
#[derive(Debug, Clone)]
pub struct FigurePlot {
    id: String,
    x: Arc<Axis>,
    /// The first on the left, any others on the right.
    y: Vec<Arc<Axis>>,
}

impl FigurePlot {
    pub fn new(id: &str, x: Axis, y: Axis) -> Self {
        Self { id: id.to_string(), x: Arc::new(x), y: vec![Arc::new(y)] }
    }

    /// A second y axis on the right over the same plot values (see [`Axis::scaled`]).
    pub fn right_axis(mut self, axis: Axis) -> Self {
        self.y.push(Arc::new(axis));
        self
    }

    /// The egui_plot builder: ticks, axis titles, legend and hover text.
    pub fn plot<'a>(&self) -> Plot<'a> {
        let hints = |axis: &Arc<Axis>, x: bool, right: bool| {
            let a = Arc::clone(axis);
            let spacing = if x { X_SPACING } else { Y_SPACING };
            let h = if x { AxisHints::new_x() } else { AxisHints::new_y() };
            let h = h
                .label(axis.title.clone())
                .formatter(move |mark, _| a.label(mark.value, mark.step_size))
                // Major ticks are at least `spacing` apart and minor ones at most 0.4 of it:
                // only the major ones are labelled.
                .label_spacing(egui::Rangef::new(0.5 * spacing, 0.9 * spacing));
            if right { h.placement(HPlacement::Right) } else { h }
        };
        let spacer = |axis: &Arc<Axis>, spacing: f32| {
            let a = Arc::clone(axis);
            move |input: GridInput| {
                let (lo, hi) = input.bounds;
                if input.base_step_size.is_nan() || input.base_step_size <= 0.0 {
                    return Vec::new();
                }
                let length = ((hi - lo) / input.base_step_size) as f32 * GRID_MIN;
                a.marks(lo, hi, length, spacing)
            }
        };
        let (x, y) = (Arc::clone(&self.x), self.y.clone());
        let hover = move |pos: &HoverPosition<'_>| {
            let (name, p) = match pos {
                HoverPosition::NearDataPoint { plot_name, position, .. } => (*plot_name, *position),
                HoverPosition::Elsewhere { position } => ("", *position),
            };
            let ya = y.iter().find(|a| a.series.iter().any(|s| s == name)).unwrap_or(&y[0]);
            let text = format!("{}: {}\n{}: {}", x.title, x.value(p.x), ya.title, ya.value(p.y));
            Some(if name.is_empty() { text } else { format!("{name}\n{text}") })
        };
        Plot::new(&self.id)
            .legend(legend(Corner::RightTop))
            .grid_spacing(egui::Rangef::new(GRID_MIN, 300.0))
            .custom_x_axes(vec![hints(&self.x, true, false)])
            .custom_y_axes(self.y.iter().enumerate().map(|(i, a)| hints(a, false, i > 0)).collect())
            .x_grid_spacer(spacer(&self.x, X_SPACING))
            .y_grid_spacer(spacer(&self.y[0], Y_SPACING))
            .label_formatter(hover)
    }

    /// Shows `plot` (from [`FigurePlot::plot`]) and exposes its axes to screen readers.
    pub fn show<'a, R>(
        &self,
        ui: &mut egui::Ui,
        plot: Plot<'a>,
        build: impl FnOnce(&mut PlotUi<'a>) -> R + 'a,
    ) -> PlotResponse<R> {
        let r = plot.show(ui, build);
        self.expose(ui, &r);
        r
    }

    /// Accessible labels where egui_plot painted the tick labels and axis titles.
    fn expose<R>(&self, ui: &egui::Ui, r: &PlotResponse<R>) {
        let t = &r.transform;
        let (frame, b) = (*t.frame(), t.bounds());
        let (min, max) = (b.min(), b.max());
        let id = ui.make_persistent_id(("figure_axes", &self.id));
        let line = ui.text_style_height(&egui::TextStyle::Body);
        let (values, step) = self.x.major(min[0], max[0], frame.width(), X_SPACING);
        for (k, v) in values.into_iter().enumerate() {
            let at = Pos2::new(t.position_from_point_x(v), frame.bottom() + 0.5 * line + 2.0);
            let text = self.x.label(v, step);
            expose_text(ui, id.with(("x", k)), Rect::from_center_size(at, Vec2::new(X_SPACING * 0.8, line)), &text);
        }
        let at = Pos2::new(frame.center().x, frame.bottom() + 1.8 * line + 4.0);
        expose_text(ui, id.with("x title"), Rect::from_center_size(at, Vec2::new(frame.width(), line)), &self.x.title);
        // Every y axis labels the first one's ticks (one grid), each in its own units.
        let (values, step) = self.y[0].major(min[1], max[1], frame.height(), Y_SPACING);
        for (i, axis) in self.y.iter().enumerate() {
            let right = i > 0;
            let side = if right { frame.right() + 24.0 } else { frame.left() - 24.0 };
            for (k, &v) in values.iter().enumerate() {
                let at = Pos2::new(side, t.position_from_point_y(v));
                let text = axis.label(v, step);
                expose_text(ui, id.with(("y", i, k)), Rect::from_center_size(at, Vec2::new(40.0, line)), &text);
            }
            let side = if right { frame.right() + 48.0 + 0.5 * line } else { frame.left() - 48.0 - 0.5 * line };
            let at = Pos2::new(side, frame.center().y);
            expose_text(
                ui,
                id.with(("y title", i)),
                Rect::from_center_size(at, Vec2::new(line, frame.height())),
                &axis.title,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_axes_get_several_round_labels() {
        // The threshold axis of a layer (-0.72 to 0.57 over 600 points) had one label, "0".
        let x = Axis::new("threshold a (weight value)");
        let (values, step) = x.major(-0.716, 0.573, 600.0, X_SPACING);
        let labels: Vec<String> = values.iter().map(|&v| x.label(v, step)).collect();
        assert_eq!(labels, ["-0.6", "-0.4", "-0.2", "0.0", "0.2", "0.4"]);
    }

    #[test]
    fn a_short_axis_still_gets_two_round_ticks() {
        let x = Axis::new("weight value");
        let (values, step) = x.major(-0.0978, 0.0978, 300.0, X_SPACING);
        let labels: Vec<String> = values.iter().map(|&v| x.label(v, step)).collect();
        assert_eq!(labels, ["-0.05", "0.00", "0.05"]);
    }

    #[test]
    fn scaled_axes_integers_and_categories() {
        let rho = Axis::new("fraction retained ρ").scaled(0.01, &["ρ"]);
        let (values, step) = rho.major(0.0, 100.0, 400.0, Y_SPACING);
        let labels: Vec<String> = values.iter().map(|&v| rho.label(v, step)).collect();
        assert_eq!(labels.first().map(String::as_str), Some("0.0"));
        assert_eq!(labels.last().map(String::as_str), Some("1.0"));
        let epochs = Axis::new("epoch").integers();
        let (values, _) = epochs.major(0.8, 2.2, 600.0, X_SPACING);
        assert_eq!(values, vec![1.0, 2.0]);
        let layers = Axis::new("layer").categories(vec!["a".into(), "b".into()]);
        let (values, step) = layers.major(-0.5, 1.5, 600.0, X_SPACING);
        assert_eq!(values.iter().map(|&v| layers.label(v, step)).collect::<Vec<_>>(), ["a", "b"]);
    }
}
