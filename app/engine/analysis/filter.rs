//! The synaptic filters (METHOD.md section 2) and the thresholds a sweep visits (section 3).

use serde::{Deserialize, Serialize};

use crate::engine::error::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum FilterKind {
    /// Magnitude: removes |w| <= a (classic pruning, for comparison).
    H0,
    /// Step up: removes w <= a, a from the minimum to the maximum.
    H1,
    /// Step down: removes w >= a, a from the maximum to the minimum.
    H2,
    /// Pulse: removes a - width/2 <= w < a + width/2, a from the minimum to the maximum.
    H3,
}

impl FilterKind {
    pub const ALL: [FilterKind; 4] = [Self::H0, Self::H1, Self::H2, Self::H3];
    /// The papers' three filters, the default of every sweep.
    pub const PAPER: [FilterKind; 3] = [Self::H1, Self::H2, Self::H3];

    pub fn name(self) -> &'static str {
        match self {
            Self::H0 => "h0",
            Self::H1 => "h1",
            Self::H2 => "h2",
            Self::H3 => "h3",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::H0 => "h0 magnitude",
            Self::H1 => "h1 step up",
            Self::H2 => "h2 step down",
            Self::H3 => "h3 pulse",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }
}

impl std::fmt::Display for FilterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A filter at one threshold. Comparisons are made in float64 on the signed value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    pub kind: FilterKind,
    pub alpha: f64,
    /// Pulse width (h3 only).
    pub width: f64,
    /// The sweep's range: a pulse window never reaches outside it (for a global sweep,
    /// weights beyond the configured range are never removed by h3).
    pub range: [f64; 2],
}

impl Filter {
    /// `kind` at threshold `alpha` as a sweep of `steps` thresholds over `range` applies it:
    /// h3 with that sweep's [`pulse_width`].
    pub fn in_sweep(kind: FilterKind, alpha: f64, range: [f64; 2], steps: usize) -> Self {
        let width = if kind == FilterKind::H3 { pulse_width(range[0], range[1], steps) } else { 0.0 };
        Self { kind, alpha, width, range }
    }

    #[inline]
    pub fn removes(&self, w: f32) -> bool {
        let w = w as f64;
        match self.kind {
            FilterKind::H0 => w.abs() <= self.alpha,
            FilterKind::H1 => w <= self.alpha,
            FilterKind::H2 => w >= self.alpha,
            FilterKind::H3 => {
                self.alpha - self.width / 2.0 <= w
                    && w < self.alpha + self.width / 2.0
                    && self.range[0] <= w
                    && w <= self.range[1]
            }
        }
    }

    /// The 0/1 keep-mask of `values` and how many it removes.
    pub fn mask(&self, values: &[f32]) -> (Vec<f32>, usize) {
        let mut removed = 0;
        let mask = values
            .iter()
            .map(|&w| {
                if self.removes(w) {
                    removed += 1;
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        (mask, removed)
    }
}

/// Checks the step count: odd and at least 3, as Simpson's rule needs.
pub fn check_steps(steps: usize) -> Result<()> {
    if !(3..=MAX_STEPS).contains(&steps) || steps.is_multiple_of(2) {
        return Err(EngineError::config(format!(
            "the number of thresholds must be odd and at least 3 (Simpson's rule needs it), at most {MAX_STEPS}, found {steps}"
        )));
    }
    Ok(())
}

/// More thresholds than weights in any real layer resolve nothing more, and a sweep would
/// run for days: a typo, refused before work starts.
pub const MAX_STEPS: usize = 10_001;

/// `steps` evenly spaced values from `lo` to `hi` in float64, the ends exact.
pub fn linspace(lo: f64, hi: f64, steps: usize) -> Vec<f64> {
    (0..steps)
        .map(|i| match i {
            0 => lo,
            i if i == steps - 1 => hi,
            i => lo + i as f64 * (hi - lo) / (steps - 1) as f64,
        })
        .collect()
}

/// The pulse width of a sweep of `steps` thresholds over `[lo, hi]` (METHOD.md section 3):
/// `(hi - lo) / steps`, a little narrower than the spacing of the centres.
pub fn pulse_width(lo: f64, hi: f64, steps: usize) -> f64 {
    (hi - lo) / steps.max(1) as f64
}

/// Where h0's thresholds end (METHOD.md section 2): at the largest magnitude of the values
/// in `[lo, hi]` (a layer's), or, for a global sweep over a configured range, at its upper
/// end `max(hi, 0)`.
pub fn h0_end(lo: f64, hi: f64, global: bool) -> f64 {
    if global { hi.max(0.0) } else { lo.abs().max(hi.abs()) }
}

/// The lowest and highest threshold of a sweep of `kind` over `[lo, hi]`: h0 from 0 to
/// `max_abs` ([`h0_end`]), every other filter from `lo` to `hi`.
pub fn threshold_span(kind: FilterKind, lo: f64, hi: f64, max_abs: f64) -> (f64, f64) {
    match kind {
        FilterKind::H0 => (0.0, max_abs),
        _ => (lo, hi),
    }
}

/// The thresholds of a sweep in sweep order, and the pulse width.
///
/// `lo`, `hi` are the range (a layer's extreme values, or the global range); `max_abs`
/// h0's end ([`h0_end`]).
pub fn thresholds(kind: FilterKind, lo: f64, hi: f64, max_abs: f64, steps: usize) -> (Vec<f64>, f64) {
    let (first, last) = threshold_span(kind, lo, hi, max_abs);
    let alphas = linspace(first, last, steps);
    match kind {
        FilterKind::H0 | FilterKind::H1 => (alphas, 0.0),
        FilterKind::H2 => (alphas.into_iter().rev().collect(), 0.0),
        FilterKind::H3 => (alphas, pulse_width(lo, hi, steps)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_act_on_signed_values() {
        let f = |kind, alpha, width| Filter { kind, alpha, width, range: [-1.0, 1.0] };
        assert!(f(FilterKind::H1, -0.5, 0.0).removes(-0.5));
        assert!(!f(FilterKind::H1, -0.5, 0.0).removes(0.2));
        // Thresholds compare with the weight promoted to float64 (0.25 is exact in both).
        assert!(f(FilterKind::H2, 0.25, 0.0).removes(0.25));
        assert!(!f(FilterKind::H2, 0.25, 0.0).removes(-0.9));
        assert!(f(FilterKind::H0, 0.25, 0.0).removes(-0.25));
        assert!(!f(FilterKind::H0, 0.3, 0.0).removes(-0.3), "-0.3f32 is just beyond 0.3f64");
        let pulse = f(FilterKind::H3, 0.0, 0.5);
        assert!(pulse.removes(-0.25) && pulse.removes(0.2499) && !pulse.removes(0.25));
        let edge = f(FilterKind::H3, 1.0, 0.5);
        assert!(edge.removes(1.0) && !edge.removes(1.125), "nothing beyond the range is in a window");
    }

    #[test]
    fn thresholds_have_exact_ends_and_sweep_order() {
        let (a, w) = thresholds(FilterKind::H1, -0.3, 0.7, 0.7, 5);
        assert_eq!((a[0], a[4], w), (-0.3, 0.7, 0.0));
        assert_eq!(a[2], -0.3 + 2.0 * (0.7 - -0.3) / 4.0);
        assert!(a.windows(2).all(|p| p[0] < p[1]));
        let (a, _) = thresholds(FilterKind::H2, -0.3, 0.7, 0.7, 5);
        assert_eq!((a[0], a[4]), (0.7, -0.3));
        let (a, w) = thresholds(FilterKind::H3, -1.0, 1.0, 1.0, 25);
        assert_eq!((a[0], a[24], w), (-1.0, 1.0, 0.08));
        let (a, _) = thresholds(FilterKind::H0, -0.3, 0.7, 0.7, 3);
        assert_eq!(a, vec![0.0, 0.35, 0.7]);
    }

    #[test]
    fn h0_ends_at_the_largest_magnitude_or_the_global_upper_end() {
        assert_eq!(h0_end(-0.9, 0.4, false), 0.9);
        assert_eq!(h0_end(-0.9, 0.4, true), 0.4);
        assert_eq!(h0_end(-1.0, -0.5, true), 0.0);
        assert_eq!(threshold_span(FilterKind::H0, -0.9, 0.4, 0.9), (0.0, 0.9));
        assert_eq!(threshold_span(FilterKind::H2, -0.9, 0.4, 0.9), (-0.9, 0.4));
        assert_eq!(pulse_width(-1.0, 1.0, 25), 0.08);
    }

    #[test]
    fn step_counts_must_be_odd_and_at_least_three() {
        assert!(check_steps(25).is_ok() && check_steps(3).is_ok());
        for bad in [0, 1, 2, 4, 24] {
            let e = check_steps(bad).unwrap_err().to_string();
            assert!(e.contains("odd and at least 3"), "{e}");
        }
    }
}
