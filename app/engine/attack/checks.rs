//! What an attack saw that bears on whether its robust accuracy can be trusted: the
//! gradient-masking checks of METHOD.md section 4 (the reference ensemble's warnings and more).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::AttackKind;
use crate::engine::error::Result;
use crate::engine::model::{BnMode, Network};

/// A weaker attack (black-box, or a single step) fooling more than this share of the samples a
/// stronger gradient attack left is a sign of masked gradients (the reference ensemble's
/// threshold for Square, 0.2 points).
pub const MASKING_MARGIN: f64 = 0.002;

/// Adversarial accuracy rising by more than this share over its value at a smaller eps is
/// reported (one sample in a hundred).
pub const RISE_SLACK: f64 = 0.01;
/// Adversarial accuracy above this share at the largest eps of a curve is pointed out: a sound
/// attack drives it toward 0 as eps grows.
pub const HIGH_AT_LARGEST: f64 = 0.10;

/// One attack of an ensemble and the samples still robust after it (cumulative).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub attack: AttackKind,
    pub robust: usize,
}

/// Counts over the attacked samples; batches add up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttackStats {
    /// Samples whose true-class probability rounds to 1 in float32.
    pub saturated: usize,
    /// Samples whose input gradient at the clean image is zero everywhere: no gradient
    /// attack can move them.
    pub zero_gradient: usize,
    /// Samples whose input gradient has a NaN or infinite entry.
    pub nonfinite_gradient: usize,
    /// Samples one FGSM step from the clean image fooled that the iterative attack left robust
    /// (L-infinity gradient attacks): more iterations should never do worse.
    #[serde(default)]
    pub single_step_gain: usize,
    /// The ensemble's attacks in turn, with the samples each left robust.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
}

impl AttackStats {
    /// Counts the samples of `g` (the clean input's gradient, one sample per row) that are
    /// zero everywhere or not finite.
    pub fn count_gradients(&mut self, g: &Tensor) -> Result<()> {
        let size: Vec<f32> = g.abs()?.flatten_from(1)?.sum(1)?.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        self.zero_gradient += size.iter().filter(|&&v| v == 0.0).count();
        self.nonfinite_gradient += size.iter().filter(|v| !v.is_finite()).count();
        Ok(())
    }

    /// Adds another batch's counts.
    pub fn add(&mut self, other: &AttackStats) {
        self.saturated += other.saturated;
        self.zero_gradient += other.zero_gradient;
        self.nonfinite_gradient += other.nonfinite_gradient;
        self.single_step_gain += other.single_step_gain;
        if self.stages.is_empty() {
            self.stages = other.stages.clone();
        } else {
            for (mine, theirs) in self.stages.iter_mut().zip(&other.stages) {
                mine.robust += theirs.robust;
            }
        }
    }

    /// The warnings these counts call for, over `n` samples, in words.
    pub fn warnings(&self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        if self.zero_gradient > 0 {
            out.push(format!(
                "{} of {n} samples have a zero input gradient at the clean image: gradient attacks cannot move them \
                 (masked gradients, or saturation under --grad autograd)",
                self.zero_gradient
            ));
        }
        if self.nonfinite_gradient > 0 {
            out.push(format!(
                "{} of {n} samples have a non-finite input gradient: gradient attacks are blind on them",
                self.nonfinite_gradient
            ));
        }
        if self.single_step_gain as f64 > MASKING_MARGIN * n as f64 {
            out.push(format!(
                "a single FGSM step fooled {} samples ({:.2} points) that the iterative attack left robust: more \
                 iterations did worse, a sign of masked or noisy gradients",
                self.single_step_gain,
                100.0 * self.single_step_gain as f64 / n.max(1) as f64
            ));
        }
        if let Some(gain) = self.black_box_gain() {
            let share = gain as f64 / n.max(1) as f64;
            if share > MASKING_MARGIN {
                out.push(format!(
                    "the black-box Square attack fooled {gain} samples ({:.2} points) that every gradient attack missed: \
                     a sign of masked gradients",
                    100.0 * share
                ));
            }
        }
        out
    }

    /// Samples Square fooled after the gradient attacks of the ensemble.
    pub fn black_box_gain(&self) -> Option<usize> {
        let at = self.stages.iter().position(|s| s.attack == AttackKind::Square)?;
        let before = self.stages.get(at.checked_sub(1)?)?;
        Some(before.robust.saturating_sub(self.stages[at].robust))
    }
}

/// Whether two forward passes of the same batch differ in any bit: the outputs are
/// randomised, and attacks (of every kind) may see a different network than the evaluation.
pub fn outputs_vary(net: &Network, x: &Tensor, bn: BnMode) -> Result<bool> {
    let a = net.logits(x, bn)?.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
    let b = net.logits(x, bn)?.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
    Ok(a.iter().zip(&b).any(|(p, q)| p.to_bits() != q.to_bits()))
}

/// Points of an accuracy curve (`x` increasing: eps or iterations) where accuracy rose by more
/// than `slack` (a share) over the lowest accuracy at any smaller `x`: attacks that grow
/// stronger should never do worse.
pub fn rises(points: &[(f64, f64)], slack: f64) -> Vec<(f64, f64)> {
    let mut lowest = f64::INFINITY;
    let mut out = Vec::new();
    for &(x, acc) in points {
        if acc > lowest + slack {
            out.push((x, acc));
        }
        lowest = lowest.min(acc);
    }
    out
}

/// What an accuracy-against-eps curve (`(eps, adversarial accuracy)`, eps increasing) says of
/// the attack, in words: eps where accuracy rises over its value at a smaller eps (a sign of
/// masked gradients), and a note when accuracy stays high at the largest eps.
pub fn eps_curve_checks(curve: &[(f64, f64)]) -> (Vec<String>, Option<String>) {
    let rising = rises(curve, RISE_SLACK)
        .into_iter()
        .map(|(eps, acc)| {
            format!(
                "adversarial accuracy rises to {:.1} % at eps {eps:.4}, above its value at a smaller eps: \
                 a sign of masked gradients",
                100.0 * acc
            )
        })
        .collect();
    let high_end = curve.last().filter(|&&(_, acc)| acc > HIGH_AT_LARGEST).map(|&(eps, acc)| {
        format!(
            "at the largest eps ({eps:.4}) {:.1} % stay robust: a sound attack drives accuracy toward 0 as eps \
             grows; try a larger eps to check",
            100.0 * acc
        )
    });
    (rising, high_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_beating_the_gradient_attacks_warns() {
        let stages = |after_t, after_square| {
            vec![
                Stage { attack: AttackKind::ApgdCe, robust: 50 },
                Stage { attack: AttackKind::ApgdT, robust: after_t },
                Stage { attack: AttackKind::Square, robust: after_square },
            ]
        };
        let quiet = AttackStats { stages: stages(40, 39), ..Default::default() };
        assert_eq!(quiet.black_box_gain(), Some(1));
        assert!(quiet.warnings(1000).is_empty(), "1 of 1000 is within 0.2 points");
        let loud = AttackStats { stages: stages(40, 30), ..Default::default() };
        assert_eq!(loud.warnings(1000).len(), 1);
    }

    #[test]
    fn an_eps_curve_that_rises_or_ends_high_is_reported() {
        let falling = [(0.0, 0.99), (0.2, 0.4), (0.5, 0.0)];
        assert_eq!(eps_curve_checks(&falling), (vec![], None));
        let (rising, high_end) = eps_curve_checks(&[(0.0, 0.99), (0.2, 0.4), (0.5, 0.6)]);
        assert_eq!(rising.len(), 1);
        assert!(rising[0].contains("rises to 60.0 % at eps 0.5000"), "{rising:?}");
        assert!(high_end.is_some_and(|n| n.contains("at the largest eps (0.5000) 60.0 % stay robust")));
    }

    #[test]
    fn more_iterations_doing_worse_warns() {
        let stats = |gain| AttackStats { single_step_gain: gain, ..Default::default() };
        assert!(stats(2).warnings(1000).is_empty(), "2 of 1000 is within 0.2 points");
        assert_eq!(stats(3).warnings(1000).len(), 1);
    }

    #[test]
    fn rises_are_found_against_the_lowest_earlier_point() {
        let curve = [(0.0, 0.9), (0.1, 0.5), (0.2, 0.55), (0.3, 0.2), (0.4, 0.21)];
        assert_eq!(rises(&curve, 0.02), vec![(0.2, 0.55)]);
        assert!(rises(&curve, 0.1).is_empty());
    }
}
