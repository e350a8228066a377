//! Accuracy of the filtered network: one threshold, or a range of eps.

use anyhow::{Result, anyhow};

use crate::engine::analysis::evalset::Counts;
use crate::engine::analysis::filter::{Filter, thresholds};
use crate::engine::analysis::masks::{FilterSet, Masker};
use crate::engine::analysis::sweep::Scope;
use crate::engine::attack::AttackConfig;
use crate::engine::model::{BnMode, Network};
use crate::engine::progress::Ctrl;
use crate::jobs::command::{EvalOutcome, EvalSetup, FilterChoice, Payload};
use crate::jobs::state::WorkerState;

/// Masks the network with the chosen filter; the returned Masker restores it when dropped.
/// Also returns the removed and total element counts.
pub fn apply_filter<'a>(net: &'a Network, f: &FilterChoice) -> Result<(Masker<'a>, usize, usize)> {
    let set = match f.scope {
        Scope::Local => FilterSet::layer(net, &f.layer, false)?,
        Scope::Global => FilterSet::global(net, false)?,
    };
    let mut masker = Masker::new(net);
    let values = masker.values(&set)?;
    let (lo, hi) = match f.scope {
        Scope::Local => {
            let lo = values.iter().copied().fold(f32::INFINITY, f32::min) as f64;
            let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            (lo, hi)
        }
        Scope::Global => (f.global_range[0], f.global_range[1]),
    };
    let max_abs = lo.abs().max(hi.abs());
    let (_, width) = thresholds(f.kind, lo, hi, max_abs, f.steps.max(3));
    let filter = Filter { kind: f.kind, alpha: f.alpha, width, range: [lo, hi] };
    let (mask, removed) = filter.mask(&values);
    masker.apply(&set, &mask)?;
    Ok((masker, removed, values.len()))
}

/// The unfiltered counts for this subset and attack, computed once.
fn baseline(state: &mut WorkerState, setup: &EvalSetup, ctrl: Ctrl) -> Result<Counts> {
    state.eval_set(setup.subset, setup.batch)?;
    let key = (setup.subset, setup.batch, serde_json::to_string(&setup.attack)?);
    if let Some((_, c)) = state.baselines.iter().find(|(k, _)| *k == key) {
        return Ok(*c);
    }
    let net = state.net()?;
    let cached = state.eval.as_ref().ok_or_else(|| anyhow!("no evaluation set"))?;
    let counts = cached.set.counts(net, BnMode::Running, &setup.attack, ctrl)?;
    state.baselines.push((key, counts));
    Ok(counts)
}

fn filtered_counts(
    state: &WorkerState,
    filter: Option<&FilterChoice>,
    attack: &AttackConfig,
    ctrl: Ctrl,
) -> Result<(Counts, usize, usize)> {
    let net = state.net()?;
    let cached = state.eval.as_ref().ok_or_else(|| anyhow!("no evaluation set"))?;
    let Some(f) = filter else {
        let total = net.params.filterable().map(|l| l.shape.iter().product::<usize>()).sum();
        return Ok((cached.set.counts(net, BnMode::Running, attack, ctrl)?, 0, total));
    };
    let (masker, removed, total) = apply_filter(net, f)?;
    let counts = cached.set.counts(net, BnMode::Running, attack, ctrl)?;
    drop(masker);
    Ok((counts, removed, total))
}

pub fn evaluate(
    state: &mut WorkerState,
    filter: Option<&FilterChoice>,
    setup: &EvalSetup,
    ctrl: Ctrl,
) -> Result<Payload> {
    ctrl.progress.start("baseline", 2);
    let base = baseline(state, setup, ctrl)?;
    ctrl.progress.start("filtered network", 2);
    ctrl.progress.advance(1);
    let (counts, removed, total) = filtered_counts(state, filter, &setup.attack, ctrl)?;
    ctrl.progress.advance(1);
    let samples = state.eval.as_ref().map_or(0, |c| c.set.n);
    Ok(Payload::Evaluated(EvalOutcome {
        samples,
        clean: counts.clean,
        adv: counts.adv,
        base_clean: base.clean,
        base_adv: base.adv,
        removed,
        total,
    }))
}

/// Clean and adversarial accuracy of the filtered network at each eps, point by point.
pub fn eps_curve(
    state: &mut WorkerState,
    filter: Option<&FilterChoice>,
    setup: &EvalSetup,
    eps: &[f64],
    ctrl: Ctrl,
    emit: &dyn Fn(Payload),
) -> Result<Payload> {
    state.eval_set(setup.subset, setup.batch)?;
    let net = state.net()?;
    let cached = state.eval.as_ref().ok_or_else(|| anyhow!("no evaluation set"))?;
    let masker = match filter {
        Some(f) => Some(apply_filter(net, f)?.0),
        None => None,
    };
    ctrl.progress.start("eps", eps.len());
    let n = cached.set.n.max(1) as f64;
    for &e in eps {
        let attack = AttackConfig { eps: e, ..setup.attack.clone() };
        let c = cached.set.counts(net, BnMode::Running, &attack, ctrl)?;
        emit(Payload::EpsPoint { eps: e, clean: c.clean as f64 / n, adv: c.adv as f64 / n });
        ctrl.progress.advance(1);
    }
    drop(masker);
    Ok(Payload::EpsDone)
}
