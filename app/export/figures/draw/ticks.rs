//! Round-numbered axis ticks and their labels, with one number of decimals per axis. The app's
//! live plots and maps take their ticks from here too (`ui::panels::widgets::plot`), so a view
//! and its exported figure label their axes alike.

use std::ops::Range;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;

/// A linear plotters axis whose grid lines and labels are our own ticks, so every axis of a
/// figure shows round values with one number of decimals ("0.0 0.5 1.0", never "0 0.5 1").
#[derive(Clone)]
pub struct Axis {
    linear: RangedCoordf64,
    ticks: Vec<f64>,
    decimals: usize,
}

impl Axis {
    /// [lo, hi] with about `target` ticks; `target` 0 gives none.
    pub fn new(lo: f64, hi: f64, target: usize) -> Self {
        let (ticks, decimals) = if target == 0 { (Vec::new(), 0) } else { ticks(lo, hi, target) };
        Self { linear: (lo..hi).into(), ticks, decimals }
    }

    /// As `new`, for a quantity counted in whole units (epochs): ticks at least 1 apart.
    pub fn whole(lo: f64, hi: f64, target: usize) -> Self {
        let mut axis = Self::new(lo, hi, target);
        if axis.decimals > 0 {
            axis.ticks = (lo.ceil() as i64..=hi.floor() as i64).map(|k| k as f64).collect();
            axis.decimals = 0;
        }
        axis
    }
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.max_num_points() == 0 { Vec::new() } else { self.ticks.clone() }
    }

    fn range(&self) -> Range<f64> {
        self.linear.range()
    }
}

impl ValueFormatter<f64> for Axis {
    fn format_ext(&self, value: &f64) -> String {
        label(*value, self.decimals)
    }
}

/// A step of 1, 2, 2.5 or 5 times a power of ten, near `raw`.
fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    // The tolerance keeps 0.2 / 0.1 = 2.0000000000000004 a step of 2.
    let f = raw / mag - 1e-9;
    let n = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 2.5 {
        2.5
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    n * mag
}

/// Ticks on the axis [lo, hi]: about `target` round values inside it, and the decimals that
/// show them all exactly.
pub fn ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, usize) {
    if !(lo.is_finite() && hi.is_finite() && hi > lo) {
        return (vec![if lo.is_finite() { lo } else { 0.0 }], 2);
    }
    let step = nice_step((hi - lo) / target.max(1) as f64);
    let (first, last) = ((lo / step - 1e-9).ceil() as i64, (hi / step + 1e-9).floor() as i64);
    // Multiplying the integer index keeps ticks free of accumulated rounding (0.30000000000000004).
    let values = (first..=last).map(|k| k as f64 * step).collect();
    (values, decimals(step))
}

/// The fewest decimals (at most 6) that write `step` exactly.
pub fn decimals(step: f64) -> usize {
    (0..=6).find(|&d| ((step * 10f64.powi(d as i32)).round() - step * 10f64.powi(d as i32)).abs() < 1e-6).unwrap_or(6)
}

/// `v` with `decimals` decimals, never as "-0".
pub fn label(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') { s[1..].to_string() } else { s }
}

/// Indices 0..n thinned to at most `max` evenly stepped ones (1, 2, 5, 10, ... apart).
pub fn index_ticks(n: usize, max: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let mut step = 1;
    for s in [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000] {
        step = s;
        if n.div_ceil(s) <= max.max(1) {
            break;
        }
    }
    (0..n).step_by(step).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        let (t, d) = ticks(0.0, 1.0, 5);
        assert_eq!(t, vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(d, 1);
        let (t, d) = ticks(-0.37, 0.52, 4);
        assert_eq!(t.first().copied(), Some(-0.25));
        assert_eq!(d, 2);
        assert_eq!(label(-0.0001, 2), "0.00");
        assert_eq!(label(0.30000000000000004, 1), "0.3");
    }

    #[test]
    fn index_ticks_thin_out() {
        assert_eq!(index_ticks(5, 10), vec![0, 1, 2, 3, 4]);
        assert_eq!(index_ticks(64, 10), (0..64).step_by(10).collect::<Vec<_>>());
    }
}
