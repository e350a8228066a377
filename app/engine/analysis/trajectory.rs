//! A run through training (METHOD.md section 8, "Through training"): every checkpoint of a folder characterised
//! (local sweeps, global sweep, nodal dropout) and the through-training summaries built from
//! them. Work already kept for a checkpoint is reused, so a stopped run resumes.

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::dropout::{self, DropoutConfig, DropoutResult, fragile_at_every};
use super::filter::FilterKind;
use super::landscape::{self, CheckpointEntry, LandscapeResult};
use super::masks::GLOBAL;
use super::scores::Class;
use super::shard::{Shard, SweepShard, Units};
use super::sweep::{self, Scope, SweepConfig, SweepResult};
use crate::engine::data::Dataset;
use crate::engine::error::{EngineError, Result};
use crate::engine::model::Network;
use crate::engine::progress::Ctrl;
use crate::engine::setup;

/// What is computed at each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryConfig {
    /// The local sweeps (every layer, or those named).
    pub sweep: SweepConfig,
    /// The global sweep: the same options over every filterable tensor at once.
    pub global: SweepConfig,
    pub dropout: DropoutConfig,
}

impl TrajectoryConfig {
    /// The local and global sweeps of `sweep` (whose scope is ignored) and its nodal dropout.
    pub fn new(sweep: SweepConfig, dropout: DropoutConfig) -> Self {
        let global = SweepConfig { scope: Scope::Global, layers: Vec::new(), ..sweep.clone() };
        Self { sweep: SweepConfig { scope: Scope::Local, ..sweep }, global, dropout }
    }
}

/// What a trajectory characterises, named by model and dataset (comparisons label runs so).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// The run's name and architecture: "runs/cnn (sequential)".
    pub model: String,
    /// Trainable parameters of the network.
    pub parameters: usize,
    /// The dataset, as its loader describes it.
    pub data: String,
}

impl RunIdentity {
    pub fn label(&self) -> String {
        format!("{} on {}", self.model, self.data)
    }
}

/// A run to characterise: its checkpoints by epoch, the data and what to call it.
pub struct Run<'a> {
    pub checkpoints: &'a [CheckpointEntry],
    pub data: &'a Dataset,
    pub identity: RunIdentity,
}

/// The three parts of one checkpoint's characterisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Sweep,
    Global,
    Dropout,
}

impl Part {
    /// The part's name in `trajectory.json` and its folder beside it.
    pub fn name(self) -> &'static str {
        match self {
            Part::Sweep => "sweep",
            Part::Global => "global",
            Part::Dropout => "dropout",
        }
    }
}

/// The parts of a checkpoint found already done (by whatever keeps them); each is reused
/// only when it is complete and its config is the one asked for.
#[derive(Debug, Clone, Default)]
pub struct KeptParts {
    pub sweep: Option<SweepResult>,
    pub global: Option<SweepResult>,
    pub dropout: Option<DropoutResult>,
}

/// Where finished parts are kept between runs.
pub trait PartStore {
    /// What is kept for this checkpoint (nothing when its file or the data changed).
    fn kept(&self, checkpoint: &CheckpointEntry) -> KeptParts;
    fn keep_sweep(&self, checkpoint: &CheckpointEntry, part: Part, result: &SweepResult) -> Result<()>;
    fn keep_dropout(&self, checkpoint: &CheckpointEntry, result: &DropoutResult) -> Result<()>;
    /// A shard's share of a checkpoint's sweep, kept by an earlier run of that shard.
    fn kept_share(&self, checkpoint: &CheckpointEntry, part: Part, shard: Shard) -> Option<SweepShard>;
    fn keep_share(&self, checkpoint: &CheckpointEntry, part: Part, share: &SweepShard) -> Result<()>;
    /// A shard's nodal dropout of a checkpoint (one shard runs each checkpoint's).
    fn kept_dropout_share(&self, checkpoint: &CheckpointEntry, shard: Shard) -> Option<DropoutResult>;
    fn keep_dropout_share(&self, checkpoint: &CheckpointEntry, shard: Shard, result: &DropoutResult) -> Result<()>;
}

/// One checkpoint, characterised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryEntry {
    pub path: std::path::PathBuf,
    pub epoch: usize,
    /// As `sweep --out` writes it for this checkpoint alone.
    pub sweep: SweepResult,
    /// As `sweep --scope global --out` writes it.
    pub global: SweepResult,
    /// As `dropout --out` writes it.
    pub dropout: DropoutResult,
}

/// One score of one (layer, filter) through training, one value per checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSeries {
    /// A layer, or [`GLOBAL`].
    pub layer: String,
    pub filter: FilterKind,
    pub s_clean: Vec<Option<f64>>,
    pub s_adv: Vec<Option<f64>>,
    pub s_diff: Vec<Option<f64>>,
}

/// A layer's class (METHOD.md section 5) at each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassSeries {
    pub layer: String,
    pub mean_s_adv: Vec<f64>,
    pub class: Vec<Class>,
}

/// Nodal dropout through training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelSeries {
    pub layer: String,
    pub kernels: usize,
    /// Per checkpoint: the fragile kernels (A_k below the mean) and the null ones.
    pub fragile: Vec<Vec<usize>>,
    pub null: Vec<Vec<usize>>,
    pub fragile_fraction: Vec<f64>,
    pub null_fraction: Vec<f64>,
    pub d_fragile: Vec<Option<f64>>,
    pub d_other: Vec<Option<f64>>,
    pub targeted: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryResult {
    pub config: TrajectoryConfig,
    pub run: RunIdentity,
    /// Characterised checkpoints in epoch order (a stopped run lists those it finished).
    pub checkpoints: Vec<TrajectoryEntry>,
    pub epochs: Vec<usize>,
    /// Local scores per (layer, filter), then the global ones (`layer` = [`GLOBAL`]).
    pub scores: Vec<ScoreSeries>,
    pub layer_classes: Vec<ClassSeries>,
    /// Layers in the fragile class at every checkpoint: those the attack targets consistently.
    pub consistently_targeted: Vec<String>,
    /// Per checkpoint after the first: the mean |change| of the local S_adv scores since the
    /// previous checkpoint (None where no score of both exists). Falling values: converging.
    pub score_change: Vec<Option<f64>>,
    pub kernels: KernelSeries,
    /// Kernels fragile at every checkpoint.
    pub consistently_fragile: Vec<usize>,
    /// The fragile fraction of kernels at each checkpoint (as `kernels.fragile_fraction`).
    pub fragile_fraction: Vec<f64>,
    /// Parts reused from an earlier run, of `3 x checkpoints`.
    pub reused: usize,
    pub cancelled: bool,
}

impl TrajectoryResult {
    /// A result read back from a file: every per-checkpoint series has one value per epoch and
    /// every kernel index is a kernel. Says what disagrees.
    pub fn check_consistent(&self) -> std::result::Result<(), String> {
        let n = self.epochs.len();
        let k = &self.kernels;
        let mut lengths = vec![
            ("checkpoints".to_string(), self.checkpoints.len()),
            ("score_change".to_string(), self.score_change.len() + 1),
            ("fragile_fraction".to_string(), self.fragile_fraction.len()),
        ];
        for (name, len) in [
            ("fragile", k.fragile.len()),
            ("null", k.null.len()),
            ("fragile_fraction", k.fragile_fraction.len()),
            ("null_fraction", k.null_fraction.len()),
            ("d_fragile", k.d_fragile.len()),
            ("d_other", k.d_other.len()),
            ("targeted", k.targeted.len()),
        ] {
            lengths.push((format!("kernels.{name}"), len));
        }
        for s in &self.scores {
            for (name, len) in [("s_clean", s.s_clean.len()), ("s_adv", s.s_adv.len()), ("s_diff", s.s_diff.len())] {
                lengths.push((format!("the {} {} {name}", s.layer, s.filter), len));
            }
        }
        for c in &self.layer_classes {
            lengths.push((format!("the classes of {}", c.layer), c.class.len()));
        }
        if let Some((name, len)) = lengths.iter().find(|(_, len)| *len != n && !(n == 0 && *len <= 1)) {
            return Err(format!("{name} has {len} values for {n} epochs"));
        }
        let kernels = k.fragile.iter().chain(&k.null).flatten().chain(&self.consistently_fragile);
        if let Some(bad) = kernels.into_iter().find(|&&i| i >= k.kernels) {
            return Err(format!("kernel {bad} is named, but the layer has {} kernels", k.kernels));
        }
        for c in &self.checkpoints {
            c.dropout.check_consistent().map_err(|e| format!("the dropout of epoch {}: {e}", c.epoch))?;
            for rec in c.sweep.records.iter().chain(&c.global.records) {
                rec.check_consistent().map_err(|e| format!("the sweeps of epoch {}: {e}", c.epoch))?;
            }
        }
        if k.kernels > MAX_KERNELS {
            return Err(format!("{} kernels, more than any layer has (at most {MAX_KERNELS})", k.kernels));
        }
        Ok(())
    }

    /// The learning landscape (section 8) of the local sweeps: the same maps `landscape` makes.
    pub fn landscape(&self) -> LandscapeResult {
        let sweeps: Vec<SweepResult> = self.checkpoints.iter().map(|c| c.sweep.clone()).collect();
        let (maps, combined) = landscape::assemble(&sweeps);
        let checkpoints =
            self.checkpoints.iter().map(|c| CheckpointEntry { path: c.path.clone(), epoch: c.epoch }).collect();
        LandscapeResult { checkpoints, sweeps, maps, combined, cancelled: self.cancelled }
    }
}

/// The file a trajectory result is kept in, inside its `--out` folder.
pub const RESULT_FILE: &str = "trajectory.json";

/// The result file a path names: the file itself, or the one in the folder it names.
pub fn result_file(path: &std::path::Path) -> std::path::PathBuf {
    if path.is_dir() { path.join(RESULT_FILE) } else { path.to_path_buf() }
}

/// Reads a trajectory result (its file, or the folder holding it) and checks it.
pub fn load(path: &std::path::Path) -> Result<TrajectoryResult> {
    let file = result_file(path);
    let bytes = crate::engine::error::read_file(&file)?;
    let r: TrajectoryResult = serde_json::from_slice(&bytes).map_err(|e| {
        EngineError::data(&file, format!("not a trajectory result (the trajectory.json that `trajectory` writes): {e}"))
    })?;
    r.check_consistent().map_err(|e| EngineError::data(&file, format!("the trajectory is inconsistent: {e}")))?;
    if r.checkpoints.is_empty() {
        return Err(EngineError::data(&file, "this trajectory has no finished checkpoint"));
    }
    Ok(r)
}

/// Far above any convolution's output channels: a larger count read from a file is a lie.
const MAX_KERNELS: usize = 1 << 16;

/// Characterises every checkpoint, reusing what `store` kept and keeping each new part as it
/// finishes; `on(i, part)` is told before checkpoint `i`'s part is computed.
pub fn run(
    run: &Run,
    cfg: &TrajectoryConfig,
    device: &Device,
    store: &dyn PartStore,
    ctrl: Ctrl,
    on: &dyn Fn(usize, Part),
) -> Result<TrajectoryResult> {
    if cfg.sweep.scope != Scope::Local || cfg.global.scope != Scope::Global {
        return Err(EngineError::config("a trajectory runs local sweeps and a global sweep"));
    }
    let (checkpoints, data) = (run.checkpoints, run.data);
    let mut entries = Vec::new();
    let mut reused = 0;
    let mut cancelled = false;
    for (i, c) in checkpoints.iter().enumerate() {
        let kept = store.kept(c);
        let fits = |r: &SweepResult, want: &SweepConfig| !r.cancelled && r.config == *want;
        let mut sweep_done = kept.sweep.filter(|r| fits(r, &cfg.sweep));
        let mut global_done = kept.global.filter(|r| fits(r, &cfg.global));
        let mut dropout_done = kept.dropout.filter(|r| !r.cancelled && r.config == cfg.dropout);
        reused += [sweep_done.is_some(), global_done.is_some(), dropout_done.is_some()].iter().filter(|k| **k).count();
        if sweep_done.is_none() || global_done.is_none() || dropout_done.is_none() {
            let net = Network::load(&c.path, None, device)?;
            setup::check_compatible(&net, data)?;
            let norm = setup::normalization(&net, Some(data))?;
            for (part, slot) in [(Part::Sweep, &mut sweep_done), (Part::Global, &mut global_done)] {
                if slot.is_none() {
                    on(i, part);
                    let want = if part == Part::Sweep { &cfg.sweep } else { &cfg.global };
                    let r = sweep::run(&net, data, &norm, want, ctrl, &|_| {})?;
                    if r.cancelled {
                        cancelled = true;
                        break;
                    }
                    store.keep_sweep(c, part, &r)?;
                    *slot = Some(r);
                }
            }
            if !cancelled && dropout_done.is_none() {
                on(i, Part::Dropout);
                let r = dropout::run(&net, data, &norm, &cfg.dropout, ctrl)?;
                cancelled = r.cancelled;
                if !cancelled {
                    store.keep_dropout(c, &r)?;
                    dropout_done = Some(r);
                }
            }
        }
        match (sweep_done, global_done, dropout_done) {
            (Some(sweep), Some(global), Some(dropout)) if !cancelled => {
                entries.push(TrajectoryEntry { path: c.path.clone(), epoch: c.epoch, sweep, global, dropout })
            }
            _ => break,
        }
    }
    Ok(summarise(cfg.clone(), run.identity.clone(), entries, reused, cancelled))
}

/// What a shard did of a run (its parts are with the store; `merge` assembles the result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareOutcome {
    /// Units of the run this shard owns.
    pub owned: usize,
    /// Of those, units found kept by an earlier run of the shard.
    pub reused: usize,
    pub cancelled: bool,
}

/// Runs this shard's share of a run: of each checkpoint's units (local sweep units, global
/// sweep units, then its nodal dropout), numbered by `units` as every shard numbers them,
/// those the shard owns. Each finished share of a part is kept at once, so a stopped shard
/// resumes.
pub fn run_share(
    run: &Run,
    cfg: &TrajectoryConfig,
    device: &Device,
    store: &dyn PartStore,
    units: &Units,
    ctrl: Ctrl,
    on: &dyn Fn(usize, Part),
) -> Result<ShareOutcome> {
    if cfg.sweep.scope != Scope::Local || cfg.global.scope != Scope::Global {
        return Err(EngineError::config("a trajectory runs local sweeps and a global sweep"));
    }
    let shard = units.shard();
    let owned_before = units.owned();
    let mut reused = 0;
    let stopped = |reused| Ok(ShareOutcome { owned: units.owned() - owned_before, reused, cancelled: true });
    for (i, c) in run.checkpoints.iter().enumerate() {
        // Numbering needs each checkpoint's layers, so every shard opens every checkpoint.
        let net = Network::load(&c.path, None, device)?;
        setup::check_compatible(&net, run.data)?;
        let norm = setup::normalization(&net, Some(run.data))?;
        for part in [Part::Sweep, Part::Global] {
            let want = if part == Part::Sweep { &cfg.sweep } else { &cfg.global };
            let mine = units.take(sweep::units(&net, want)?);
            if mine.is_empty() {
                continue;
            }
            let kept = store.kept_share(c, part, shard);
            if kept.is_some_and(|k| !k.result.cancelled && k.result.config == *want && k.ran == mine) {
                reused += mine.len();
                continue;
            }
            on(i, part);
            let r = sweep::run_units(&net, run.data, &norm, want, Some(&mine), ctrl, &|_| {})?;
            if r.cancelled {
                return stopped(reused);
            }
            let units_total = sweep::units(&net, want)?;
            store.keep_share(c, part, &SweepShard { shard, units: units_total, ran: mine, result: r })?;
        }
        if units.take(1).is_empty() {
            continue;
        }
        if store.kept_dropout_share(c, shard).is_some_and(|k| !k.cancelled && k.config == cfg.dropout) {
            reused += 1;
            continue;
        }
        on(i, Part::Dropout);
        let r = dropout::run(&net, run.data, &norm, &cfg.dropout, ctrl)?;
        if r.cancelled {
            return stopped(reused);
        }
        store.keep_dropout_share(c, shard, &r)?;
    }
    Ok(ShareOutcome { owned: units.owned() - owned_before, reused, cancelled: false })
}

/// The shares of one checkpoint, gathered from every shard's output.
pub struct CheckpointShares {
    pub sweep: Vec<SweepShard>,
    pub global: Vec<SweepShard>,
    /// Nodal dropout, from the one shard that ran it.
    pub dropout: Vec<DropoutResult>,
}

/// The run's result from its shards' shares, exactly as one process makes it (nothing is
/// counted as reused: every part was computed once, by some shard).
pub fn merge(
    config: TrajectoryConfig,
    run: RunIdentity,
    checkpoints: &[CheckpointEntry],
    shares: Vec<CheckpointShares>,
) -> Result<TrajectoryResult> {
    let mut entries = Vec::new();
    for (c, s) in checkpoints.iter().zip(shares) {
        let at = |e: EngineError| EngineError::config(format!("epoch {} ({}): {e}", c.epoch, c.path.display()));
        let sweep = super::shard::merge_sweep(&s.sweep).map_err(at)?;
        let global = super::shard::merge_sweep(&s.global).map_err(at)?;
        if sweep.config != config.sweep || global.config != config.global {
            return Err(at(EngineError::config("the shards' sweeps do not have the run's config")));
        }
        let dropout = match <[DropoutResult; 1]>::try_from(s.dropout) {
            Ok([d]) if d.config == config.dropout && !d.cancelled => d,
            Ok(_) => return Err(at(EngineError::config("the nodal dropout kept has another config or was stopped"))),
            Err(found) => {
                return Err(at(EngineError::config(format!(
                    "{} shards hold its nodal dropout, where exactly one should: is a shard's output missing?",
                    found.len()
                ))));
            }
        };
        entries.push(TrajectoryEntry { path: c.path.clone(), epoch: c.epoch, sweep, global, dropout });
    }
    Ok(summarise(config, run, entries, 0, false))
}

/// The through-training summaries of characterised checkpoints (in epoch order).
pub fn summarise(
    config: TrajectoryConfig,
    run: RunIdentity,
    entries: Vec<TrajectoryEntry>,
    reused: usize,
    cancelled: bool,
) -> TrajectoryResult {
    let epochs: Vec<usize> = entries.iter().map(|e| e.epoch).collect();
    let mut scores = score_series(&entries, |e| &e.sweep);
    scores.extend(score_series(&entries, |e| &e.global));
    let layer_classes = class_series(&entries);
    let consistently_targeted = layer_classes
        .iter()
        .filter(|c| c.class.len() == entries.len() && c.class.iter().all(|k| *k == Class::Fragile))
        .map(|c| c.layer.clone())
        .collect();
    let local: Vec<&ScoreSeries> = scores.iter().filter(|s| s.layer != GLOBAL).collect();
    let score_change = (1..entries.len())
        .map(|i| {
            let changes: Vec<f64> = local.iter().filter_map(|s| Some((s.s_adv[i]? - s.s_adv[i - 1]?).abs())).collect();
            (!changes.is_empty()).then(|| changes.iter().sum::<f64>() / changes.len() as f64)
        })
        .collect();
    let kernels = kernel_series(&entries);
    let dropouts: Vec<DropoutResult> = entries.iter().map(|e| e.dropout.clone()).collect();
    TrajectoryResult {
        config,
        run,
        epochs,
        scores,
        layer_classes,
        consistently_targeted,
        score_change,
        consistently_fragile: fragile_at_every(&dropouts),
        fragile_fraction: kernels.fragile_fraction.clone(),
        kernels,
        checkpoints: entries,
        reused,
        cancelled,
    }
}

fn score_series(entries: &[TrajectoryEntry], of: impl Fn(&TrajectoryEntry) -> &SweepResult) -> Vec<ScoreSeries> {
    let Some(first) = entries.first() else { return Vec::new() };
    of(first)
        .records
        .iter()
        .map(|r0| {
            let at = |e: &TrajectoryEntry| of(e).record(&r0.layer, r0.filter).cloned();
            let records: Vec<_> = entries.iter().map(at).collect();
            let pick = |f: fn(&sweep::SweepRecord) -> Option<f64>| {
                records.iter().map(|r| r.as_ref().and_then(f)).collect::<Vec<_>>()
            };
            ScoreSeries {
                layer: r0.layer.clone(),
                filter: r0.filter,
                s_clean: pick(|r| r.s_clean),
                s_adv: pick(|r| r.s_adv),
                s_diff: pick(|r| r.s_diff),
            }
        })
        .collect()
}

fn class_series(entries: &[TrajectoryEntry]) -> Vec<ClassSeries> {
    let Some(first) = entries.first() else { return Vec::new() };
    let mut layers: Vec<String> = first.sweep.layer_classes.iter().map(|c| c.layer.clone()).collect();
    // Network order, not the first checkpoint's ranking.
    layers.sort_by_key(|l| first.sweep.records.iter().position(|r| &r.layer == l));
    layers
        .into_iter()
        .map(|layer| {
            let found: Vec<_> =
                entries.iter().filter_map(|e| e.sweep.layer_classes.iter().find(|c| c.layer == layer)).collect();
            ClassSeries {
                mean_s_adv: found.iter().map(|c| c.mean_s_adv).collect(),
                class: found.iter().map(|c| c.class).collect(),
                layer,
            }
        })
        .collect()
}

fn kernel_series(entries: &[TrajectoryEntry]) -> KernelSeries {
    let kernels = entries.first().map_or(0, |e| e.dropout.accuracy_per_kernel.len());
    let fraction = |n: usize| n as f64 / kernels.max(1) as f64;
    KernelSeries {
        layer: entries.first().map(|e| e.dropout.layer.clone()).unwrap_or_default(),
        kernels,
        fragile: entries.iter().map(|e| e.dropout.fragile.clone()).collect(),
        null: entries.iter().map(|e| e.dropout.null.clone()).collect(),
        fragile_fraction: entries.iter().map(|e| fraction(e.dropout.fragile.len())).collect(),
        null_fraction: entries.iter().map(|e| fraction(e.dropout.null.len())).collect(),
        d_fragile: entries.iter().map(|e| e.dropout.d_fragile).collect(),
        d_other: entries.iter().map(|e| e.dropout.d_other).collect(),
        targeted: entries.iter().map(|e| e.dropout.targeted).collect(),
    }
}
