//! The evaluation subset of an analysis, prepared once: normalised batches on the device
//! and, for transfer attacks, adversarial inputs made once on the unfiltered network.

use candle_core::Tensor;

use crate::engine::attack::{AttackConfig, attack};
use crate::engine::card::Normalize;
use crate::engine::data::Dataset;
use crate::engine::error::Result;
use crate::engine::eval::predictions;
use crate::engine::model::{BnMode, Network};
use crate::engine::progress::Ctrl;

pub struct EvalSet {
    pub batches: Vec<(Tensor, Vec<u32>)>,
    pub norm: Normalize,
    pub n: usize,
    transfer: Option<Vec<Tensor>>,
}

/// Correct counts of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub clean: usize,
    pub adv: usize,
}

fn correct(logits: &Tensor, labels: &[u32]) -> Result<usize> {
    Ok(predictions(logits)?.iter().zip(labels).filter(|((p, _), l)| p == *l).count())
}

impl EvalSet {
    pub fn new(net: &Network, data: &Dataset, norm: &Normalize, batch: usize) -> Result<Self> {
        let mut batches = Vec::new();
        let mut start = 0;
        while start < data.len() {
            let end = (start + batch).min(data.len());
            let (x, _) = data.batch(start..end, norm, &net.device)?;
            batches.push((x, data.labels[start..end].to_vec()));
            start = end;
        }
        Ok(Self { batches, norm: norm.clone(), n: data.len(), transfer: None })
    }

    /// Fixes the adversarial inputs to those made on the network as it is now.
    pub fn freeze_attack(&mut self, net: &Network, bn: BnMode, attack_cfg: &AttackConfig, ctrl: Ctrl) -> Result<()> {
        let mut out = Vec::with_capacity(self.batches.len());
        for (x, labels) in &self.batches {
            ctrl.check()?;
            out.push(attack(net, x, labels, &self.norm, bn, attack_cfg)?.x_adv);
        }
        self.transfer = Some(out);
        Ok(())
    }

    /// Clean and adversarial correct counts of the network as it is now; the attack is
    /// made against it unless the inputs were frozen.
    pub fn counts(&self, net: &Network, bn: BnMode, attack_cfg: &AttackConfig, ctrl: Ctrl) -> Result<Counts> {
        let mut c = Counts::default();
        for (i, (x, labels)) in self.batches.iter().enumerate() {
            ctrl.check()?;
            match &self.transfer {
                Some(adv) => {
                    c.clean += correct(&net.logits(x, bn)?, labels)?;
                    c.adv += correct(&net.logits(&adv[i], bn)?, labels)?;
                }
                None if attack_cfg.eps == 0.0 && !attack_cfg.clamp => {
                    let k = correct(&net.logits(x, bn)?, labels)?;
                    c.clean += k;
                    c.adv += k;
                }
                None => {
                    let a = attack(net, x, labels, &self.norm, bn, attack_cfg)?;
                    c.clean += correct(&a.clean_logits, labels)?;
                    c.adv += correct(&net.logits(&a.x_adv, bn)?, labels)?;
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
