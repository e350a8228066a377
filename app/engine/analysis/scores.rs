//! Filtering scores (METHOD.md section 5) and characterisation (section 6).

use serde::{Deserialize, Serialize};

/// Fragile, robust or antifragile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Fragile,
    Robust,
    Antifragile,
}

impl Class {
    /// Every class in its index order: fragile, robust, antifragile (class colours, legends,
    /// the heatmap's per-weight class codes).
    pub const ALL: [Class; 3] = [Class::Fragile, Class::Robust, Class::Antifragile];

    /// The class's position in [`Class::ALL`].
    pub const fn index(self) -> usize {
        match self {
            Class::Fragile => 0,
            Class::Robust => 1,
            Class::Antifragile => 2,
        }
    }

    /// The class at `index` in [`Class::ALL`]; indices past the end are antifragile.
    pub fn from_index(index: usize) -> Class {
        Self::ALL[index.min(Self::ALL.len() - 1)]
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Fragile => "fragile",
            Class::Robust => "robust",
            Class::Antifragile => "antifragile",
        }
    }
}

/// Composite Simpson's rule over unit spacing, normalised to the interval:
/// `(1/(3(R-1))) * [g0 + 4(g1 + g3 + ...) + 2(g2 + g4 + ...) + g_{R-1}]`. R must be odd.
pub fn simpson(g: &[f64]) -> f64 {
    let r = g.len();
    debug_assert!(r >= 3 && r % 2 == 1);
    let inner: f64 = g[1..r - 1].iter().enumerate().map(|(i, v)| if i % 2 == 0 { 4.0 * v } else { 2.0 * v }).sum();
    (g[0] + inner + g[r - 1]) / (3.0 * (r - 1) as f64)
}

/// A filtering score: Simpson of normalised accuracy minus the fraction retained.
/// Returns the score and whether it had to stay unnormalised (baseline below 1e-6).
pub fn score(correct: &[usize], base_correct: usize, samples: usize, rho: &[f64]) -> (f64, bool) {
    let base = base_correct as f64 / samples as f64;
    let unnormalised = base < 1e-6;
    let g: Vec<f64> = correct
        .iter()
        .zip(rho)
        .map(|(&c, &r)| {
            let p = c as f64 / samples as f64;
            (if unnormalised { p } else { p / base }) - r
        })
        .collect();
    (simpson(&g), unnormalised)
}

/// How the accuracy of a step moves against the baseline, compared on correct counts in
/// float64: fragile below `(1 - delta) * base`, antifragile above `(1 + delta) * base`.
pub fn step_class(correct: usize, base_correct: usize, delta: f64) -> Class {
    let (c, b) = (correct as f64, base_correct as f64);
    if c < (1.0 - delta) * b {
        Class::Fragile
    } else if c > (1.0 + delta) * b {
        Class::Antifragile
    } else {
        Class::Robust
    }
}

/// A layer's class from the mean of its S_adv over h1, h2 and h3.
pub fn layer_class(mean_s_adv: f64, tau: f64) -> Class {
    if mean_s_adv < -tau {
        Class::Fragile
    } else if mean_s_adv > tau {
        Class::Antifragile
    } else {
        Class::Robust
    }
}

/// The index of the pulse centre nearest to `w` (ties to the lower index).
pub fn nearest_centre(w: f32, centres: &[f64]) -> usize {
    let w = w as f64;
    let mut best = 0;
    for (i, &c) in centres.iter().enumerate().skip(1) {
        if (w - c).abs() < (w - centres[best]).abs() {
            best = i;
        }
    }
    best
}

/// Each weight takes the class of the pulse step whose centre is nearest its value.
pub fn weight_classes(values: &[f32], centres: &[f64], step_classes: &[Class]) -> Vec<Class> {
    values.iter().map(|&w| step_classes[nearest_centre(w, centres)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simpson_of_a_constant_is_the_constant() {
        for r in [3, 5, 25] {
            for c in [0.0, 1.0, -0.37, 2.5] {
                assert!((simpson(&vec![c; r]) - c).abs() < 1e-12, "r {r} c {c}");
            }
        }
    }

    #[test]
    fn simpson_integrates_a_line_and_a_parabola_exactly() {
        let xs: Vec<f64> = (0..25).map(|i| i as f64 / 24.0).collect();
        let line: Vec<f64> = xs.iter().map(|x| 1.0 - x).collect();
        assert!((simpson(&line) - 0.5).abs() < 1e-12);
        let parabola: Vec<f64> = xs.iter().map(|x| x * x).collect();
        assert!((simpson(&parabola) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn step_classes_partition_at_delta() {
        assert_eq!(step_class(98, 100, 0.01), Class::Fragile);
        assert_eq!(step_class(99, 100, 0.01), Class::Robust);
        assert_eq!(step_class(101, 100, 0.01), Class::Robust);
        assert_eq!(step_class(102, 100, 0.01), Class::Antifragile);
    }

    #[test]
    fn class_indices_follow_all() {
        for (i, c) in Class::ALL.into_iter().enumerate() {
            assert_eq!((c.index(), Class::from_index(i)), (i, c));
        }
        assert_eq!(Class::from_index(7), Class::Antifragile);
    }

    #[test]
    fn nearest_centre_ties_go_low() {
        let c = [0.0, 1.0, 2.0];
        assert_eq!(nearest_centre(0.5, &c), 0);
        assert_eq!(nearest_centre(0.51, &c), 1);
        assert_eq!(nearest_centre(7.0, &c), 2);
        assert_eq!(nearest_centre(-3.0, &c), 0);
    }
}
