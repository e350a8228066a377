//! The learning landscape (METHOD.md section 8): local sweeps over a series of checkpoints,
//! assembled into step-by-epoch maps.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::filter::FilterKind;
use super::scores::Class;
use super::sweep::{self, Scope, SweepConfig, SweepEvent, SweepResult};
use crate::engine::checkpoint::EXTENSIONS;
use crate::engine::data::Dataset;
use crate::engine::error::{EngineError, Result};
use crate::engine::model::Network;
use crate::engine::progress::Ctrl;
use crate::engine::setup;

/// A checkpoint of a training run and its epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointEntry {
    pub path: PathBuf,
    pub epoch: usize,
}

fn is_checkpoint(p: &Path) -> bool {
    let name = p.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    !name.ends_with(".optim.safetensors") && EXTENSIONS.iter().any(|e| name.ends_with(&format!(".{e}")))
}

/// The last number in a file name: `checkpoint-epoch-007.safetensors` -> 7.
fn number_in(p: &Path) -> Option<usize> {
    let stem = p.file_stem()?.to_string_lossy().to_string();
    let digits: String =
        stem.chars().rev().skip_while(|c| !c.is_ascii_digit()).take_while(|c| c.is_ascii_digit()).collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

/// The checkpoints in a folder, by epoch (the card's `training.epoch`, else the last number
/// in the file name). Every checkpoint must have the same architecture and layer shapes.
pub fn list_checkpoints(dir: &Path, device: &Device) -> Result<Vec<CheckpointEntry>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| EngineError::io("list", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_checkpoint(p))
        .collect();
    files.sort();
    if files.is_empty() {
        let kinds = EXTENSIONS.map(|e| format!(".{e}")).join(", ");
        return Err(EngineError::data(dir, format!("no checkpoints ({kinds}) in this folder")));
    }
    let mut entries = Vec::new();
    // The first checkpoint's file, architecture and layer shapes, which the others must match.
    type Layout = Vec<(String, Vec<usize>)>;
    let mut first: Option<(PathBuf, String, Layout)> = None;
    for (i, path) in files.into_iter().enumerate() {
        let net = Network::load(&path, None, device)?;
        let layout: Vec<(String, Vec<usize>)> =
            net.params.layers().iter().map(|l| (l.name.clone(), l.shape.clone())).collect();
        let arch = net.card.architecture.to_string();
        match &first {
            None => first = Some((path.clone(), arch, layout)),
            Some((p0, a0, l0)) if *a0 != arch || *l0 != layout => {
                return Err(EngineError::data(
                    &path,
                    format!(
                        "the folder mixes architectures: this checkpoint is {arch} with {} layers, {} is {a0} with {} layers",
                        layout.len(),
                        p0.file_name().unwrap_or_default().to_string_lossy(),
                        l0.len()
                    ),
                ));
            }
            _ => {}
        }
        let epoch = net.card.training.as_ref().map(|t| t.epoch).or_else(|| number_in(&path)).unwrap_or(i);
        entries.push(CheckpointEntry { path, epoch });
    }
    entries.sort_by_key(|e| e.epoch);
    Ok(entries)
}

/// One layer's maps: rows are epochs, columns sweep steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerMaps {
    pub layer: String,
    pub filter: FilterKind,
    pub clean_accuracy: Vec<Vec<f64>>,
    pub adv_accuracy: Vec<Vec<f64>>,
    pub class_clean: Vec<Vec<Class>>,
    pub class_adv: Vec<Vec<Class>>,
}

/// A cell is influential when any filter finds its step fragile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CombinedMap {
    pub layer: String,
    pub influential_clean: Vec<Vec<bool>>,
    pub influential_adv: Vec<Vec<bool>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LandscapeResult {
    pub checkpoints: Vec<CheckpointEntry>,
    pub sweeps: Vec<SweepResult>,
    pub maps: Vec<LayerMaps>,
    pub combined: Vec<CombinedMap>,
    pub cancelled: bool,
}

/// Runs the local sweep of `cfg` on every checkpoint and builds the maps.
pub fn run(
    checkpoints: &[CheckpointEntry],
    data: &Dataset,
    cfg: &SweepConfig,
    device: &Device,
    ctrl: Ctrl,
    on: &dyn Fn(usize, SweepEvent),
) -> Result<LandscapeResult> {
    if cfg.scope != Scope::Local {
        return Err(EngineError::config("the learning landscape is made of local sweeps"));
    }
    let mut sweeps = Vec::new();
    let mut cancelled = false;
    for (i, c) in checkpoints.iter().enumerate() {
        let net = Network::load(&c.path, None, device)?;
        setup::check_compatible(&net, data)?;
        let norm = setup::normalization(&net, Some(data))?;
        let result = sweep::run(&net, data, &norm, cfg, ctrl, &|e| on(i, e))?;
        cancelled = result.cancelled;
        sweeps.push(result);
        if cancelled {
            break;
        }
    }
    let (maps, combined) = if cancelled { (Vec::new(), Vec::new()) } else { assemble(&sweeps) };
    Ok(LandscapeResult { checkpoints: checkpoints.to_vec(), sweeps, maps, combined, cancelled })
}

/// The maps of sweeps made at successive checkpoints (one sweep per checkpoint, in order).
pub fn assemble(sweeps: &[SweepResult]) -> (Vec<LayerMaps>, Vec<CombinedMap>) {
    let Some(first) = sweeps.first() else { return (Vec::new(), Vec::new()) };
    let mut maps = Vec::new();
    for r0 in &first.records {
        let rows = sweeps.iter().filter_map(|s| s.record(&r0.layer, r0.filter));
        let mut m = LayerMaps {
            layer: r0.layer.clone(),
            filter: r0.filter,
            clean_accuracy: vec![],
            adv_accuracy: vec![],
            class_clean: vec![],
            class_adv: vec![],
        };
        for r in rows {
            m.clean_accuracy.push(r.clean_accuracy.clone());
            m.adv_accuracy.push(r.adv_accuracy.clone());
            m.class_clean.push(r.step_class_clean.clone());
            m.class_adv.push(r.step_class_adv.clone());
        }
        maps.push(m);
    }
    let mut combined: Vec<CombinedMap> = Vec::new();
    for m in &maps {
        let c = match combined.iter_mut().find(|c| c.layer == m.layer) {
            Some(c) => c,
            None => {
                let blank = |cls: &Vec<Vec<Class>>| cls.iter().map(|row| vec![false; row.len()]).collect();
                combined.push(CombinedMap {
                    layer: m.layer.clone(),
                    influential_clean: blank(&m.class_clean),
                    influential_adv: blank(&m.class_adv),
                });
                combined.last_mut().expect("just pushed")
            }
        };
        for (dst, src) in [(&mut c.influential_clean, &m.class_clean), (&mut c.influential_adv, &m.class_adv)] {
            for (drow, srow) in dst.iter_mut().zip(src) {
                for (d, s) in drow.iter_mut().zip(srow) {
                    *d |= *s == Class::Fragile;
                }
            }
        }
    }
    (maps, combined)
}
