//! Sweeps streamed point by point, per-weight classes after them, and the learning
//! landscape over a folder of checkpoints.

use std::sync::Arc;

use anyhow::{Result, anyhow};

use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::landscape;
use crate::engine::analysis::scores::Class;
use crate::engine::analysis::sweep::{self, Scope, SweepConfig, SweepResult};
use crate::engine::model::Network;
use crate::engine::progress::Ctrl;
use crate::jobs::command::{Payload, WeightClasses};
use crate::jobs::state::WorkerState;

pub fn sweep(
    state: &mut WorkerState,
    cfg: &SweepConfig,
    subset: usize,
    ctrl: Ctrl,
    emit: &dyn Fn(Payload),
) -> Result<Payload> {
    let (net, part, norm) = state.prepared(subset)?;
    let result = sweep::run(net, &part, &norm, cfg, ctrl, &|e| emit(Payload::Sweep(e)))?;
    if cfg.scope == Scope::Local {
        for classes in weight_classes(net, &result)? {
            emit(Payload::Classes(classes));
        }
    }
    Ok(Payload::SweepDone(Box::new(result)))
}

/// Per-weight classes of every layer whose h3 sweep is complete (SPEC section 6).
fn weight_classes(net: &Network, result: &SweepResult) -> Result<Vec<WeightClasses>> {
    let mut out = Vec::new();
    for rec in result.records.iter().filter(|r| r.filter == FilterKind::H3 && r.complete()) {
        let p = net.params.get(&format!("{}.weight", rec.layer)).ok_or_else(|| anyhow!("no layer {}", rec.layer))?;
        let values: Vec<f32> = p.var.as_tensor().flatten_all()?.to_vec1()?;
        let (Some(clean), Some(adv)) = (rec.weight_classes(&values, false), rec.weight_classes(&values, true)) else {
            continue;
        };
        // Class::index as a byte: the heatmap shader's class codes.
        let code = |c: Class| c.index() as u8;
        let clean: Vec<u8> = clean.into_iter().map(code).collect();
        let adv: Vec<u8> = adv.into_iter().map(code).collect();
        let packed = clean.iter().zip(&adv).map(|(c, a)| c | (a << 2)).collect();
        out.push(WeightClasses {
            layer: rec.layer.clone(),
            clean: Arc::new(clean),
            adv: Arc::new(adv),
            packed: Arc::new(packed),
        });
    }
    Ok(out)
}

pub fn landscape(
    state: &mut WorkerState,
    cfg: &SweepConfig,
    subset: usize,
    ctrl: Ctrl,
    emit: &dyn Fn(Payload),
) -> Result<Payload> {
    if state.checkpoints.is_empty() {
        return Err(anyhow!("open a folder of checkpoints first (Open checkpoint…, then choose the folder)"));
    }
    let (_, part, _) = state.prepared(subset)?;
    let result = landscape::run(&state.checkpoints, &part, cfg, &state.device, ctrl, &|i, e| {
        emit(Payload::LandscapeStep { checkpoint: i, event: e })
    })?;
    Ok(Payload::Landscape(Box::new(result)))
}
