//! The evaluation subset of an analysis, prepared once: normalised batches on the device
//! and, for transfer attacks, adversarial inputs made once on the unfiltered network.

use std::ops::Range;

use candle_core::Tensor;

use crate::engine::attack::{AttackConfig, Prefix, attack_until_stopped};
use crate::engine::card::Normalize;
use crate::engine::data::Dataset;
use crate::engine::error::Result;
use crate::engine::eval::predictions;
use crate::engine::model::{BnMode, ForwardCtx, Network};
use crate::engine::progress::Ctrl;

pub struct EvalSet {
    pub batches: Vec<(Tensor, Vec<u32>)>,
    pub norm: Normalize,
    pub n: usize,
    transfer: Option<Vec<Tensor>>,
    prefix: Option<Prefixes>,
}

/// Per batch, the work before the filtered layers, done once (see [`EvalSet::keep_prefix`]).
struct Prefixes {
    clean: Vec<Prefix>,
    /// Transfer attacks: the frozen adversarial inputs' prefixes.
    adv: Vec<Prefix>,
}

/// Memory the kept prefixes may take: their graphs hold every activation before the
/// filtered layer, for every batch.
const PREFIX_BUDGET_BYTES: usize = 4 << 30;

/// Correct counts of one evaluation, with the gradient-masking checks' counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub clean: usize,
    pub adv: usize,
    /// Samples whose input gradient at the clean image is zero or not finite.
    pub blind: usize,
    /// Samples the ensemble's black-box attack fooled after its gradient attacks.
    pub black_box_gain: usize,
    /// Samples one FGSM step fooled that the iterative attack left robust.
    pub single_step_gain: usize,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.clean += other.clean;
        self.adv += other.adv;
        self.blind += other.blind;
        self.black_box_gain += other.black_box_gain;
        self.single_step_gain += other.single_step_gain;
    }
}

/// The standard normal quantile of a two-sided 95 % interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval of the proportion of a population of `population` items from
/// `successes` of the first `n` of them, with the finite-population correction (the sample is
/// part of the population: the effective sample size is `n (population - 1) / (population - n)`,
/// so the interval closes on the exact proportion when `n` is the whole population). `z` is the
/// normal quantile ([`Z95`] for 95 %). (0, 1) when `n` is 0.
pub fn wilson_interval(successes: usize, n: usize, population: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let p = successes as f64 / n as f64;
    if n >= population {
        return (p, p);
    }
    let m = n as f64 * (population as f64 - 1.0).max(1.0) / (population - n) as f64;
    let z2 = z * z;
    let denom = 1.0 + z2 / m;
    let centre = (p + z2 / (2.0 * m)) / denom;
    let half = z * (p * (1.0 - p) / m + z2 / (4.0 * m * m)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn correct(logits: &Tensor, labels: &[u32]) -> Result<usize> {
    Ok(predictions(logits)?.iter().zip(labels).filter(|((p, _), l)| p == *l).count())
}

impl EvalSet {
    /// Refuses a network with NaN or infinite parameters: nothing evaluated on one means anything.
    pub fn new(net: &Network, data: &Dataset, norm: &Normalize, batch: usize) -> Result<Self> {
        net.check_finite()?;
        let mut batches = Vec::new();
        let mut start = 0;
        while start < data.len() {
            let end = (start + batch).min(data.len());
            let (x, _) = data.batch(start..end, norm, &net.device)?;
            batches.push((x, data.labels[start..end].to_vec()));
            start = end;
        }
        Ok(Self { batches, norm: norm.clone(), n: data.len(), transfer: None, prefix: None })
    }

    /// Fixes the adversarial inputs to those made on the network as it is now.
    pub fn freeze_attack(&mut self, net: &Network, bn: BnMode, attack_cfg: &AttackConfig, ctrl: Ctrl) -> Result<()> {
        let mut out = Vec::with_capacity(self.batches.len());
        for (x, labels) in &self.batches {
            ctrl.check()?;
            out.push(attack_until_stopped(net, x, labels, &self.norm, bn, attack_cfg, ctrl.stop)?.x_adv);
        }
        self.transfer = Some(out);
        Ok(())
    }

    /// Runs the stages before the first one holding `layers` once per batch and keeps them,
    /// so that counts while only `layers` change skip that work. Skipped (and any kept
    /// prefix dropped) when there is nothing before them, for PGD (every step needs a new
    /// forward pass), and when the kept activations would exceed the memory budget.
    pub fn keep_prefix(&mut self, net: &Network, layers: &[&str], bn: BnMode, attack_cfg: &AttackConfig) -> Result<()> {
        self.prefix = None;
        let from = net.first_stage_with(layers);
        let regenerated_pgd = self.transfer.is_none() && attack_cfg.kind.iterative() && attack_cfg.eps > 0.0;
        if from == 0 || regenerated_pgd || self.batches.is_empty() {
            return Ok(());
        }
        // Estimate from the first batch: its stage outputs, twice over for what stages keep inside.
        let (x0, _) = &self.batches[0];
        let mut elements = 0usize;
        let mut y = x0.clone();
        for s in 0..from {
            y = net.forward_stages(s..s + 1, &y, &mut ForwardCtx::eval(bn))?;
            elements += y.elem_count();
        }
        let copies = if self.transfer.is_some() { 2 } else { 1 };
        let bytes = 2 * 4 * elements * self.batches.len() * copies;
        if bytes > PREFIX_BUDGET_BYTES {
            return Ok(());
        }
        let clean = self.batches.iter().map(|(x, _)| Prefix::new(net, from, x, bn)).collect::<Result<Vec<_>>>()?;
        let adv = match &self.transfer {
            Some(adv) => adv.iter().map(|x| Prefix::new(net, from, x, bn)).collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        self.prefix = Some(Prefixes { clean, adv });
        Ok(())
    }

    /// Drops the kept prefixes (see [`EvalSet::keep_prefix`]): counts run every stage again.
    pub fn forget_prefix(&mut self) {
        self.prefix = None;
    }

    /// Images in the batches of `range`.
    pub fn images_in(&self, range: Range<usize>) -> usize {
        self.batches.get(range).map_or(0, |b| b.iter().map(|(_, labels)| labels.len()).sum())
    }

    /// Clean and adversarial correct counts of the network as it is now; the attack is
    /// made against it unless the inputs were frozen. Kept prefixes stand in for the
    /// stages before the filtered layers.
    pub fn counts(&self, net: &Network, bn: BnMode, attack_cfg: &AttackConfig, ctrl: Ctrl) -> Result<Counts> {
        self.counts_in(0..self.batches.len(), net, bn, attack_cfg, ctrl)
    }

    /// [`EvalSet::counts`] over the batches of `range` only: the counts of consecutive
    /// ranges add up to those of the whole set (each image is counted on its own).
    pub fn counts_in(
        &self,
        range: Range<usize>,
        net: &Network,
        bn: BnMode,
        attack_cfg: &AttackConfig,
        ctrl: Ctrl,
    ) -> Result<Counts> {
        let logits = |x: &Tensor, kept: Option<&Prefix>| match kept {
            Some(p) => p.logits(net, bn),
            None => Ok(net.logits(x, bn)?),
        };
        let mut c = Counts::default();
        for (i, (x, labels)) in self.batches.iter().enumerate().take(range.end).skip(range.start) {
            ctrl.check()?;
            let kept = self.prefix.as_ref().map(|p| &p.clean[i]);
            match &self.transfer {
                Some(adv) => {
                    c.clean += correct(&logits(x, kept)?, labels)?;
                    let kept_adv = self.prefix.as_ref().and_then(|p| p.adv.get(i));
                    c.adv += correct(&logits(&adv[i], kept_adv)?, labels)?;
                }
                None if attack_cfg.eps == 0.0 && !attack_cfg.clamp => {
                    let k = correct(&logits(x, kept)?, labels)?;
                    c.clean += k;
                    c.adv += k;
                }
                None => {
                    let a = match kept {
                        Some(p) => p.fgsm(net, labels, &self.norm, bn, attack_cfg)?,
                        None => attack_until_stopped(net, x, labels, &self.norm, bn, attack_cfg, ctrl.stop)?,
                    };
                    c.clean += correct(&a.clean_logits, labels)?;
                    let adv_logits = net.logits(&a.x_adv, bn)?;
                    c.adv += correct(&adv_logits, labels)?;
                    c.single_step_gain += a.single_step_gain(net, bn, &adv_logits, labels)?;
                    c.blind += a.stats.zero_gradient + a.stats.nonfinite_gradient;
                    c.black_box_gain += a.stats.black_box_gain().unwrap_or(0);
                }
            }
        }
        Ok(c)
    }

    /// Clean correct count only.
    pub fn clean_count(&self, net: &Network, bn: BnMode, ctrl: Ctrl) -> Result<usize> {
        let mut n = 0;
        for (x, labels) in &self.batches {
            ctrl.check()?;
            n += correct(&net.logits(x, bn)?, labels)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_interval_matches_the_textbook_and_closes_on_the_whole_population() {
        // 50 of 100 from a practically infinite population: the textbook [0.4038, 0.5962].
        let (lo, hi) = wilson_interval(50, 100, usize::MAX, Z95);
        assert!((lo - 0.4038).abs() < 1e-4 && (hi - 0.5962).abs() < 1e-4, "{lo} {hi}");
        // The finite-population correction narrows it; all images counted leaves no doubt.
        let (flo, fhi) = wilson_interval(50, 100, 200, Z95);
        assert!(flo > lo && fhi < hi && flo < 0.5 && fhi > 0.5, "{flo} {fhi}");
        assert_eq!(wilson_interval(97, 200, 200, Z95), (0.485, 0.485));
        // Near the edges it stays inside [0, 1] and around the observed proportion.
        let (lo, hi) = wilson_interval(200, 200, 1000, Z95);
        assert!(lo > 0.97 && lo < 1.0 && hi > 1.0 - 1e-12, "{lo} {hi}");
        let (lo, hi) = wilson_interval(0, 200, 1000, Z95);
        assert!(lo == 0.0 && hi > 0.0 && hi < 0.03, "{lo} {hi}");
        assert_eq!(wilson_interval(0, 0, 1000, Z95), (0.0, 1.0));
    }
}
