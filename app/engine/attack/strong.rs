//! The worst-case ensemble: APGD-CE, APGD-T, FAB-T and Square in turn, each on the samples
//! every earlier attack left robust (the standard ensemble of Croce and Hein 2020; METHOD.md
//! section 4). A sample counts as robust only if every attack fails on it.

use candle_core::Tensor;

use super::apgd::{Apgd, Loss, choose};
use super::{AttackConfig, AttackKind, Stage, apgd, clamp_bounds, fab, square, still_right};
use crate::engine::card::Normalize;
use crate::engine::error::Result;
use crate::engine::model::{BnMode, Network};
use crate::engine::progress::StopFlag;

/// The ensemble's attacks in the order they run: the cheap white-box ones first, the
/// black-box one last (where it also tells masked gradients apart).
pub const ENSEMBLE: [AttackKind; 4] = [AttackKind::ApgdCe, AttackKind::ApgdT, AttackKind::FabT, AttackKind::Square];

/// The ensemble's adversarial batch and the samples still robust after each attack.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    net: &Network,
    x: &Tensor,
    labels: &[u32],
    norm: &Normalize,
    bn: BnMode,
    cfg: &AttackConfig,
    clean_logits: &Tensor,
    stop: &StopFlag,
) -> Result<(Tensor, Vec<Stage>)> {
    let classes = clean_logits.dim(1)?;
    let mut robust = still_right(clean_logits, labels)?;
    let mut adv = x.clone();
    let mut stages = Vec::new();
    for kind in ENSEMBLE {
        // APGD-T's loss needs four classes; with fewer it has nothing to add to APGD-CE.
        if kind == AttackKind::ApgdT && classes < Apgd::min_classes(Loss::DlrTargeted) {
            continue;
        }
        // FAB-T is an L-infinity attack here.
        if kind == AttackKind::FabT && cfg.norm == apgd::Norm::L2 {
            continue;
        }
        if robust.iter().any(|&r| r) {
            let found = match kind {
                AttackKind::Square => square(net, bn, cfg, norm, x)?.run(x, labels, robust.clone(), stop)?.0,
                AttackKind::FabT => fab(net, bn, cfg, norm, x)?.run(x, labels, robust.clone(), classes, stop)?.0,
                _ => {
                    let bounds = clamp_bounds(norm, x, cfg)?;
                    apgd(net, bn, cfg, kind, bounds).run(x, labels, robust.clone(), classes, stop)?.0
                }
            };
            // What counts is how the network classifies the rows now, as the evaluation will.
            let right = still_right(&net.logits(&found, bn)?, labels)?;
            let fooled: Vec<bool> = robust.iter().zip(&right).map(|(&r, &ok)| r && !ok).collect();
            adv = choose(&fooled, &found, &adv)?;
            for (r, f) in robust.iter_mut().zip(&fooled) {
                *r &= !f;
            }
        }
        stages.push(Stage { attack: kind, robust: robust.iter().filter(|&&r| r).count() });
    }
    Ok((adv, stages))
}
