//! Local and global sweeps (METHOD.md section 3): filter, re-attack, count, step by step.

use serde::{Deserialize, Serialize};

use super::evalset::{Counts, EvalSet};
use super::filter::{Filter, FilterKind, check_steps, h0_end, thresholds};
use super::masks::{FilterSet, Masker};
use super::scores::{Class, layer_class, score, step_class, weight_classes};
use crate::engine::attack::AttackConfig;
use crate::engine::card::Normalize;
use crate::engine::data::Dataset;
use crate::engine::error::{EngineError, Result};
use crate::engine::model::{BnMode, Network};
use crate::engine::progress::Ctrl;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One layer at a time, all others intact.
    Local,
    /// Every filterable tensor at once, over a fixed range.
    Global,
}

/// Thresholds per sweep (R) unless told otherwise.
pub const DEFAULT_STEPS: usize = 25;
/// The thresholds of a global sweep span this range by default (METHOD.md section 3).
pub const DEFAULT_GLOBAL_RANGE: [f64; 2] = [-1.0, 1.0];
/// Tolerance of the per-step classes (METHOD.md section 5).
pub const DEFAULT_DELTA: f64 = 0.01;
/// Tolerance of the per-layer classes (METHOD.md section 5).
pub const DEFAULT_TAU: f64 = 0.02;

fn default_filters() -> Vec<FilterKind> {
    FilterKind::PAPER.to_vec()
}

/// How a sweep samples and classifies, apart from what it filters and how it attacks: the
/// CLI's sweep flags and the app's sweep settings are this struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SweepOptions {
    /// Thresholds per sweep (R): odd, at least 3.
    pub steps: usize,
    /// Global sweeps: the threshold range.
    pub global_range: [f64; 2],
    /// Filter biases with their layer's weights.
    pub include_biases: bool,
    /// Adversarial inputs made once on the unfiltered network instead of per filtered network.
    pub transfer: bool,
    /// Tolerance of the per-step classes.
    pub delta: f64,
    /// Tolerance of the per-layer classes.
    pub tau: f64,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self {
            steps: DEFAULT_STEPS,
            global_range: DEFAULT_GLOBAL_RANGE,
            include_biases: false,
            transfer: false,
            delta: DEFAULT_DELTA,
            tau: DEFAULT_TAU,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepConfig {
    pub scope: Scope,
    /// Local sweeps: the layers to sweep (state_dict prefixes); empty means every filterable layer.
    #[serde(default)]
    pub layers: Vec<String>,
    #[serde(default = "default_filters")]
    pub filters: Vec<FilterKind>,
    /// Written beside the other fields (sweep.json keeps its flat config).
    #[serde(flatten)]
    pub options: SweepOptions,
    pub attack: AttackConfig,
    #[serde(default)]
    pub bn: BnMode,
    #[serde(default = "crate::engine::eval::default_batch")]
    pub batch: usize,
}

impl SweepConfig {
    pub fn new(scope: Scope, attack: AttackConfig) -> Self {
        Self {
            scope,
            layers: Vec::new(),
            filters: default_filters(),
            options: SweepOptions::default(),
            attack,
            bn: BnMode::Running,
            batch: crate::engine::eval::DEFAULT_BATCH,
        }
    }

    pub fn validate(&self, net: &Network) -> Result<()> {
        check_steps(self.options.steps)?;
        self.attack.validate()?;
        if self.filters.is_empty() {
            return Err(EngineError::config("no filters chosen"));
        }
        if self.batch == 0 {
            return Err(EngineError::config("the batch size must be at least 1"));
        }
        if self.bn == BnMode::Train {
            return Err(EngineError::config("sweeps never update batch-norm statistics; use `running` or `batch`"));
        }
        let [lo, hi] = self.options.global_range;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(EngineError::config(format!(
                "the global range must be two numbers lo < hi, found [{lo}, {hi}]"
            )));
        }
        for d in [self.options.delta, self.options.tau] {
            if d.is_nan() || d < 0.0 {
                return Err(EngineError::config(format!("tolerances must be >= 0, found {d}")));
            }
        }
        for l in &self.layers {
            FilterSet::layer(net, l, self.options.include_biases)?;
        }
        Ok(())
    }

    /// The filter sets this sweep visits, in order.
    pub fn sets(&self, net: &Network) -> Result<Vec<FilterSet>> {
        match self.scope {
            Scope::Global => Ok(vec![FilterSet::global(net, self.options.include_biases)?]),
            Scope::Local if self.layers.is_empty() => {
                net.params.filterable().map(|l| FilterSet::layer(net, &l.name, self.options.include_biases)).collect()
            }
            Scope::Local => self.layers.iter().map(|l| FilterSet::layer(net, l, self.options.include_biases)).collect(),
        }
    }
}

/// The unfiltered network's counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub samples: usize,
    pub clean_correct: usize,
    pub adv_correct: usize,
    pub clean_accuracy: f64,
    pub adv_accuracy: f64,
}

impl Baseline {
    fn new(c: Counts, samples: usize) -> Self {
        let acc = |k: usize| k as f64 / samples.max(1) as f64;
        Self {
            samples,
            clean_correct: c.clean,
            adv_correct: c.adv,
            clean_accuracy: acc(c.clean),
            adv_accuracy: acc(c.adv),
        }
    }
}

/// One (layer or global, filter) sweep. Scores and classes exist once every step is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    pub layer: String,
    pub filter: FilterKind,
    /// Thresholds in sweep order.
    pub alphas: Vec<f64>,
    /// Pulse width (h3), else 0.
    pub width: f64,
    /// Elements in the filtered set.
    pub n: usize,
    pub removed: Vec<usize>,
    pub clean_correct: Vec<usize>,
    pub adv_correct: Vec<usize>,
    pub clean_accuracy: Vec<f64>,
    pub adv_accuracy: Vec<f64>,
    pub rho: Vec<f64>,
    pub s_clean: Option<f64>,
    pub s_adv: Option<f64>,
    pub s_diff: Option<f64>,
    pub step_class_clean: Vec<Class>,
    pub step_class_adv: Vec<Class>,
    /// Steps that reused an earlier result because their mask was the same.
    pub reused: Vec<bool>,
    pub warnings: Vec<String>,
}

impl SweepRecord {
    pub fn complete(&self) -> bool {
        self.clean_correct.len() == self.alphas.len()
    }

    /// A record read back from a file: every per-step array covers the same finished steps,
    /// no more than the thresholds. Says which array disagrees.
    pub fn check_consistent(&self) -> std::result::Result<(), String> {
        let done = self.clean_correct.len();
        let lengths = [
            ("removed", self.removed.len()),
            ("adv_correct", self.adv_correct.len()),
            ("clean_accuracy", self.clean_accuracy.len()),
            ("adv_accuracy", self.adv_accuracy.len()),
            ("rho", self.rho.len()),
            ("step_class_clean", self.step_class_clean.len()),
            ("step_class_adv", self.step_class_adv.len()),
        ];
        let record = format!("record {} {}", self.layer, self.filter);
        if done > self.alphas.len() {
            return Err(format!("{record}: {done} steps recorded but only {} thresholds", self.alphas.len()));
        }
        match lengths.iter().find(|(_, n)| *n != done) {
            Some((name, n)) => Err(format!("{record}: `{name}` has {n} values but `clean_correct` has {done}")),
            None => Ok(()),
        }
    }

    fn push(&mut self, removed: usize, c: Counts, reused: bool, base: &Baseline, delta: f64) {
        let s = base.samples.max(1) as f64;
        self.removed.push(removed);
        self.clean_correct.push(c.clean);
        self.adv_correct.push(c.adv);
        self.clean_accuracy.push(c.clean as f64 / s);
        self.adv_accuracy.push(c.adv as f64 / s);
        self.rho.push(1.0 - removed as f64 / self.n as f64);
        self.step_class_clean.push(step_class(c.clean, base.clean_correct, delta));
        self.step_class_adv.push(step_class(c.adv, base.adv_correct, delta));
        self.reused.push(reused);
    }

    fn finish(&mut self, base: &Baseline) {
        if !self.complete() {
            return;
        }
        let (s_clean, un_c) = score(&self.clean_correct, base.clean_correct, base.samples, &self.rho);
        let (s_adv, un_a) = score(&self.adv_correct, base.adv_correct, base.samples, &self.rho);
        for (un, what) in [(un_c, "clean"), (un_a, "adversarial")] {
            if un {
                self.warnings.push(format!("the {what} baseline accuracy is below 1e-6: S_{what} is not normalised"));
            }
        }
        self.s_clean = Some(s_clean);
        self.s_adv = Some(s_adv);
        self.s_diff = Some(s_adv - s_clean);
    }

    /// Per-weight classes from this h3 record (METHOD.md section 6), for the unfiltered `values`
    /// of its set; `adversarial` picks the accuracy the classes follow.
    pub fn weight_classes(&self, values: &[f32], adversarial: bool) -> Option<Vec<Class>> {
        if self.filter != FilterKind::H3 || !self.complete() {
            return None;
        }
        let steps = if adversarial { &self.step_class_adv } else { &self.step_class_clean };
        Some(weight_classes(values, &self.alphas, steps))
    }
}

/// A layer's class from its local sweeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerClass {
    pub layer: String,
    /// Mean S_adv over h1, h2 and h3.
    pub mean_s_adv: f64,
    pub class: Class,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    pub config: SweepConfig,
    pub baseline: Baseline,
    pub records: Vec<SweepRecord>,
    /// Local sweeps with h1, h2 and h3 complete: per-layer classes, most fragile first.
    pub layer_classes: Vec<LayerClass>,
    /// Global sweeps: filterable elements outside the threshold range (never in a pulse window).
    pub outside_range: Option<usize>,
    /// True when the sweep was stopped; finished steps are kept.
    pub cancelled: bool,
}

impl SweepResult {
    pub fn record(&self, layer: &str, filter: FilterKind) -> Option<&SweepRecord> {
        self.records.iter().find(|r| r.layer == layer && r.filter == filter)
    }
}

/// What a running sweep reports as it goes.
#[derive(Debug, Clone)]
pub enum SweepEvent {
    Baseline(Baseline),
    /// A record begins (its thresholds are known).
    Begin {
        layer: String,
        filter: FilterKind,
        alphas: Vec<f64>,
        n: usize,
    },
    /// One more step of the current record.
    Step {
        layer: String,
        filter: FilterKind,
        index: usize,
        alpha: f64,
        removed: usize,
        clean_correct: usize,
        adv_correct: usize,
    },
}

fn range_of(values: &[f32]) -> (f64, f64, f64) {
    let lo = values.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    (lo, hi, h0_end(lo, hi, false))
}

/// Runs a sweep. Cancelling (the stop flag) ends it between batches and returns the steps
/// done so far with `cancelled` set; the network is always left unfiltered.
pub fn run(
    net: &Network,
    data: &Dataset,
    norm: &Normalize,
    cfg: &SweepConfig,
    ctrl: Ctrl,
    on: &dyn Fn(SweepEvent),
) -> Result<SweepResult> {
    run_units(net, data, norm, cfg, None, ctrl, on)
}

/// The sweep's units: each (filter set, filter) pair, numbered set by set in filter order.
pub fn units(net: &Network, cfg: &SweepConfig) -> Result<usize> {
    Ok(cfg.sets(net)?.len() * cfg.filters.len())
}

/// A sweep of the units numbered in `only` (ascending; all when None), one record each, as
/// a shard runs its share (shard.rs). Every record is the one the whole sweep makes.
pub fn run_units(
    net: &Network,
    data: &Dataset,
    norm: &Normalize,
    cfg: &SweepConfig,
    only: Option<&[usize]>,
    ctrl: Ctrl,
    on: &dyn Fn(SweepEvent),
) -> Result<SweepResult> {
    cfg.validate(net)?;
    let sets = cfg.sets(net)?;
    let runs = |unit: usize| only.is_none_or(|o| o.binary_search(&unit).is_ok());
    let owned = (0..sets.len() * cfg.filters.len()).filter(|&u| runs(u)).count();
    let total = owned * cfg.options.steps;
    let mut set = EvalSet::new(net, data, norm, cfg.batch)?;
    if cfg.options.transfer {
        ctrl.progress.start("attacking", set.batches.len());
        set.freeze_attack(net, cfg.bn, &cfg.attack, ctrl)?;
    }
    ctrl.progress.start("baseline", 1);
    let baseline = Baseline::new(set.counts(net, cfg.bn, &cfg.attack, ctrl)?, set.n);
    on(SweepEvent::Baseline(baseline));
    ctrl.progress.start("sweeping", total);
    let mut masker = Masker::new(net);
    let mut records = Vec::new();
    let mut cancelled = false;
    let mut outside_range = None;
    'sets: for (set_index, fs) in sets.iter().enumerate() {
        let first_unit = set_index * cfg.filters.len();
        if !(first_unit..first_unit + cfg.filters.len()).any(runs) {
            continue;
        }
        let values = masker.values(fs)?;
        // Every filter's mask that removes the whole set is the same one (h1's and h2's last
        // steps): its counts, once known.
        let mut all_removed: Option<Counts> = None;
        let layers: Vec<&str> = fs.keys.iter().map(|k| k.rsplit_once('.').map_or(k.as_str(), |(l, _)| l)).collect();
        set.keep_prefix(net, &layers, cfg.bn, &cfg.attack)?;
        let (lo, hi, max_abs) = match cfg.scope {
            Scope::Local => range_of(&values),
            Scope::Global => {
                let [lo, hi] = cfg.options.global_range;
                outside_range = Some(values.iter().filter(|&&v| (v as f64) < lo || (v as f64) > hi).count());
                (lo, hi, h0_end(lo, hi, true))
            }
        };
        for (filter_index, &kind) in cfg.filters.iter().enumerate() {
            if !runs(first_unit + filter_index) {
                continue;
            }
            let (alphas, width) = thresholds(kind, lo, hi, max_abs, cfg.options.steps);
            let mut rec = SweepRecord {
                layer: fs.name.clone(),
                filter: kind,
                alphas: alphas.clone(),
                width,
                n: values.len(),
                removed: vec![],
                clean_correct: vec![],
                adv_correct: vec![],
                clean_accuracy: vec![],
                adv_accuracy: vec![],
                rho: vec![],
                s_clean: None,
                s_adv: None,
                s_diff: None,
                step_class_clean: vec![],
                step_class_adv: vec![],
                reused: vec![],
                warnings: vec![],
            };
            on(SweepEvent::Begin { layer: fs.name.clone(), filter: kind, alphas: alphas.clone(), n: values.len() });
            let mut previous: Option<(Vec<f32>, Counts)> = None;
            for (i, &alpha) in alphas.iter().enumerate() {
                let (mask, removed) = Filter { kind, alpha, width, range: [lo, hi] }.mask(&values);
                // A mask equal to the last one (or removing nothing, or everything again)
                // cannot change the result.
                let known = match &previous {
                    Some((m, c)) if *m == mask => Some(*c),
                    _ if removed == 0 => {
                        Some(Counts { clean: baseline.clean_correct, adv: baseline.adv_correct, ..Counts::default() })
                    }
                    _ if removed == values.len() => all_removed,
                    _ => None,
                };
                let counts = match known {
                    Some(c) => c,
                    None => {
                        masker.apply(fs, &mask)?;
                        match set.counts(net, cfg.bn, &cfg.attack, ctrl) {
                            Ok(c) => c,
                            Err(EngineError::Cancelled) => {
                                cancelled = true;
                                records.push(rec);
                                break 'sets;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                };
                if removed == values.len() {
                    all_removed = Some(counts);
                }
                rec.push(removed, counts, known.is_some(), &baseline, cfg.options.delta);
                on(SweepEvent::Step {
                    layer: fs.name.clone(),
                    filter: kind,
                    index: i,
                    alpha,
                    removed,
                    clean_correct: counts.clean,
                    adv_correct: counts.adv,
                });
                ctrl.progress.advance(1);
                previous = Some((mask, counts));
            }
            masker.restore()?;
            rec.finish(&baseline);
            records.push(rec);
        }
    }
    masker.restore()?;
    let layer_classes = if cfg.scope == Scope::Local { classify_layers(&records, cfg.options.tau) } else { Vec::new() };
    Ok(SweepResult { config: cfg.clone(), baseline, records, layer_classes, outside_range, cancelled })
}

/// Per-layer classes for layers whose h1, h2 and h3 sweeps are all complete, most fragile first.
pub fn classify_layers(records: &[SweepRecord], tau: f64) -> Vec<LayerClass> {
    let mut layers: Vec<&str> = Vec::new();
    for r in records {
        if !layers.contains(&r.layer.as_str()) {
            layers.push(&r.layer);
        }
    }
    let mut out: Vec<LayerClass> = layers
        .into_iter()
        .filter_map(|layer| {
            let scores: Option<Vec<f64>> = FilterKind::PAPER
                .iter()
                .map(|&f| records.iter().find(|r| r.layer == layer && r.filter == f).and_then(|r| r.s_adv))
                .collect();
            let scores = scores?;
            let mean = scores.iter().sum::<f64>() / scores.len() as f64;
            Some(LayerClass { layer: layer.to_string(), mean_s_adv: mean, class: layer_class(mean, tau) })
        })
        .collect();
    out.sort_by(|a, b| a.mean_s_adv.total_cmp(&b.mean_s_adv));
    out
}
