//! Accuracy of the filtered network: one threshold, or a range of eps.

use anyhow::{Result, anyhow};

use crate::engine::analysis::evalset::Counts;
use crate::engine::analysis::filter::Filter;
use crate::engine::analysis::masks::{FilterSet, Masker};
use crate::engine::analysis::sweep::Scope;
use crate::engine::attack::AttackConfig;
use crate::engine::model::{BnMode, Network};
use crate::engine::progress::Ctrl;
use crate::jobs::command::{EvalEstimate, EvalOutcome, EvalSetup, FilterChoice, Payload};
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
    let filter = Filter::in_sweep(f.kind, f.alpha, [lo, hi], f.steps.max(3));
    let (mask, removed) = filter.mask(&values);
    masker.apply(&set, &mask)?;
    Ok((masker, removed, values.len()))
}

/// Images of the first estimate sent while the exact counts are computed (the first ones of
/// the evaluation subset, so the estimate is always the same for the same filter).
pub const ESTIMATE_IMAGES: usize = 200;

/// Keeps the evaluation set's prefixes (the stages before the masked layer, run once; see
/// [`crate::engine::analysis::evalset::EvalSet::keep_prefix`]) for the layer this filter
/// masks, and none when it masks more (global scope) or the attack is PGD. Prefixes made for
/// another layer would count wrongly, so every count over the cached set comes after this.
fn fit_prefix(state: &mut WorkerState, filter: Option<&FilterChoice>, attack: &AttackConfig) -> Result<()> {
    let net = state.net.as_ref().ok_or_else(|| anyhow!("no model is open"))?;
    let cached = state.eval.as_mut().ok_or_else(|| anyhow!("no evaluation set"))?;
    let want = filter.filter(|f| f.scope == Scope::Local && !attack.kind.iterative()).map(|f| f.layer.clone());
    if cached.prefix_for == want {
        return Ok(());
    }
    cached.prefix_for = None;
    cached.set.forget_prefix();
    if let Some(layer) = &want {
        cached.set.keep_prefix(net, &[layer.as_str()], BnMode::Running, attack)?;
    }
    cached.prefix_for = want;
    Ok(())
}

/// The unfiltered counts for this subset and attack, computed once.
fn baseline(state: &mut WorkerState, setup: &EvalSetup, ctrl: Ctrl) -> Result<Counts> {
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

/// Accuracy of the filtered network on the evaluation subset. When the subset holds more
/// than [`ESTIMATE_IMAGES`], the counts of its first images go out first through `emit` as
/// an [`EvalEstimate`]; the rest are then counted and the returned counts are those of one
/// pass over the whole subset.
pub fn evaluate(
    state: &mut WorkerState,
    filter: Option<&FilterChoice>,
    setup: &EvalSetup,
    ctrl: Ctrl,
    emit: &dyn Fn(Payload),
) -> Result<Payload> {
    // Said first: the UI holds newer requests back until this one has begun.
    ctrl.progress.start("baseline", 2);
    state.eval_set(setup.subset, setup.batch)?;
    fit_prefix(state, filter, &setup.attack)?;
    let base = baseline(state, setup, ctrl)?;
    ctrl.progress.start("filtered network", 2);
    let net = state.net()?;
    let set = &state.eval.as_ref().ok_or_else(|| anyhow!("no evaluation set"))?.set;
    let (masker, removed, total) = match filter {
        Some(f) => {
            let (m, removed, total) = apply_filter(net, f)?;
            (Some(m), removed, total)
        }
        None => (None, 0, net.params.filterable().map(|l| l.shape.iter().product::<usize>()).sum()),
    };
    let batches = set.batches.len();
    // The fewest first batches that hold the estimate's images.
    let first = (1..=batches).find(|&b| set.images_in(0..b) >= ESTIMATE_IMAGES).unwrap_or(batches);
    let mut counts = set.counts_in(0..first, net, BnMode::Running, &setup.attack, ctrl)?;
    if first < batches {
        let samples = set.images_in(0..first);
        emit(Payload::EvalEstimate(EvalEstimate {
            samples,
            of: set.n,
            clean: counts.clean,
            adv: counts.adv,
            removed,
            total,
        }));
        ctrl.progress.advance(1);
        counts += set.counts_in(first..batches, net, BnMode::Running, &setup.attack, ctrl)?;
    }
    drop(masker);
    ctrl.progress.advance(1);
    Ok(Payload::Evaluated(EvalOutcome {
        samples: set.n,
        clean: counts.clean,
        adv: counts.adv,
        base_clean: base.clean,
        base_adv: base.adv,
        removed,
        total,
        blind: counts.blind,
        black_box_gain: counts.black_box_gain,
        single_step_gain: counts.single_step_gain,
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
    fit_prefix(state, filter, &setup.attack)?;
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::engine::device::DeviceChoice;
    use crate::engine::eval::{self, EvalConfig};
    use crate::engine::progress::quiet;
    use crate::jobs::command::Source;

    /// The readout's estimate and exact counts against one plain pass of `eval::evaluate`
    /// over the same images with the same mask: the first on the first 200, the second on all.
    #[test]
    fn the_estimate_then_the_exact_count_equal_single_passes_of_eval() {
        let mut state = WorkerState::new(DeviceChoice::Cpu).unwrap();
        state.open_model(&Source::Embedded).map_err(|_| "the embedded model").unwrap();
        state.open_data(&Source::Embedded).unwrap();
        let attack = AttackConfig::fgsm(0.3);
        let setup = EvalSetup { attack: attack.clone(), subset: 350, batch: 100 };
        let (silent, stop) = quiet();
        let ctrl = Ctrl { progress: &silent, stop: &stop };
        // The first layer (nothing kept before it) and a later one (its prefix kept), then
        // the first again: the kept prefix must follow the layer.
        for (layer, at) in [("features.0", 0.4), ("classifier.0", 0.3), ("features.0", 0.6)] {
            let row = state.model_summary().unwrap().layers.into_iter().find(|l| l.name == layer).unwrap();
            let alpha = row.min as f64 + at * (row.max - row.min) as f64;
            let f = FilterChoice {
                kind: crate::engine::analysis::filter::FilterKind::H1,
                scope: Scope::Local,
                layer: layer.into(),
                alpha,
                steps: 25,
                global_range: [-1.0, 1.0],
            };
            let sent = Mutex::new(Vec::new());
            let last = evaluate(&mut state, Some(&f), &setup, ctrl, &|p| sent.lock().unwrap().push(p)).unwrap();
            let Payload::Evaluated(exact) = last else { panic!("no exact counts") };
            let sent = sent.into_inner().unwrap();
            let [Payload::EvalEstimate(estimate)] = sent.as_slice() else { panic!("one estimate before the counts") };

            let (net, data, norm) = state.prepared(setup.subset).unwrap();
            let cfg = EvalConfig { batch: 100, bn: BnMode::Running, attack: Some(attack.clone()) };
            let base = eval::evaluate(net, &data, &norm, &cfg, ctrl).unwrap();
            let (masker, removed, total) = apply_filter(net, &f).unwrap();
            let all = eval::evaluate(net, &data, &norm, &cfg, ctrl).unwrap();
            let first = data.clone().subset(crate::engine::data::Subset::First { n: 200 }).unwrap();
            let head = eval::evaluate(net, &first, &norm, &cfg, ctrl).unwrap();
            drop(masker);

            assert!(removed > 0 && removed < total, "{layer}: {removed} of {total}");
            let want = EvalOutcome {
                samples: 350,
                clean: all.correct_clean,
                adv: all.correct_adversarial.unwrap(),
                base_clean: base.correct_clean,
                base_adv: base.correct_adversarial.unwrap(),
                removed,
                total,
                blind: all.stats.zero_gradient + all.stats.nonfinite_gradient,
                black_box_gain: all.stats.black_box_gain().unwrap_or(0),
                single_step_gain: all.stats.single_step_gain,
            };
            assert_eq!(exact, want, "{layer}");
            let want = EvalEstimate {
                samples: 200,
                of: 350,
                clean: head.correct_clean,
                adv: head.correct_adversarial.unwrap(),
                removed,
                total,
            };
            assert_eq!(*estimate, want, "{layer}");
        }
    }

    #[test]
    fn no_estimate_when_the_subset_is_no_larger_than_it() {
        let mut state = WorkerState::new(DeviceChoice::Cpu).unwrap();
        state.open_model(&Source::Embedded).map_err(|_| "the embedded model").unwrap();
        state.open_data(&Source::Embedded).unwrap();
        let setup = EvalSetup { attack: AttackConfig::fgsm(0.3), subset: ESTIMATE_IMAGES, batch: 100 };
        let (silent, stop) = quiet();
        let ctrl = Ctrl { progress: &silent, stop: &stop };
        let sent = Mutex::new(0);
        let last = evaluate(&mut state, None, &setup, ctrl, &|_| *sent.lock().unwrap() += 1).unwrap();
        assert!(matches!(last, Payload::Evaluated(o) if o.samples == ESTIMATE_IMAGES && o.removed == 0));
        assert_eq!(*sent.lock().unwrap(), 0);
    }
}
