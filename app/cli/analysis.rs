//! `sweep`, `dropout` and `landscape`: the fragility analyses.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::common::{DataArgs, ModelArgs, prepare_out, result_dir};
use super::eval::{AttackArgs, BatchArgs};
use super::progress::{self, Bar, ctrl_c_flag};
use super::shards::{Manifest, SHARD_HELP, SweepShardFile};
use crate::engine::analysis::dropout::{self, DropoutConfig};
use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::landscape;
use crate::engine::analysis::shard::{Shard, SweepShard, Units};
use crate::engine::analysis::sweep::{self, Scope, SweepConfig, SweepOptions, SweepResult};
use crate::engine::attack::{AttackConfig, AttackKind};
use crate::engine::data::Dataset;
use crate::engine::device;
use crate::engine::eval::DEFAULT_EVAL_IMAGES;
use crate::engine::model::Network;
use crate::engine::progress::Ctrl;
use crate::engine::setup;
use crate::export::format::group;
use crate::export::tables;

/// Sweep options shared by `sweep`, `landscape` and `selective`.
#[derive(Args, Debug, Clone)]
pub struct SweepArgs {
    /// Layers to sweep (state_dict prefixes, comma-separated; default: every filterable layer)
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<String>,
    /// Filters to run
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = FilterKind::PAPER.to_vec())]
    pub filters: Vec<FilterKind>,
    /// Thresholds per sweep (odd, at least 3)
    #[arg(long, default_value_t = sweep::DEFAULT_STEPS)]
    pub steps: usize,
    /// Global sweeps: threshold range LO,HI
    #[arg(long, value_name = "LO,HI", default_value_t = RangeArg(sweep::DEFAULT_GLOBAL_RANGE), allow_hyphen_values = true)]
    pub range: RangeArg,
    /// Filter biases with their layer's weights
    #[arg(long)]
    pub include_biases: bool,
    /// Attack once on the unfiltered network instead of regenerating it per filtered network
    #[arg(long)]
    pub transfer: bool,
    /// Tolerance of the per-step classes
    #[arg(long, default_value_t = sweep::DEFAULT_DELTA)]
    pub delta: f64,
    /// Tolerance of the per-layer classes
    #[arg(long, default_value_t = sweep::DEFAULT_TAU)]
    pub tau: f64,
    /// Attack: fgsm (the papers'), pgd, apgd-ce, apgd-dlr, apgd-t, square or strong (the worst case)
    #[arg(long, value_enum, default_value_t = AttackKind::Fgsm)]
    pub attack: AttackKind,
    #[command(flatten)]
    pub attack_opts: AttackArgs,
    #[command(flatten)]
    pub batches: BatchArgs,
}

/// A threshold range written `LO,HI` (`-1,1` parses: its minus is not an option).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RangeArg(pub [f64; 2]);

impl std::fmt::Display for RangeArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{}", self.0[0], self.0[1])
    }
}

impl std::str::FromStr for RangeArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let expected =
            || format!("expected two numbers LO,HI with LO < HI, such as {}", RangeArg(sweep::DEFAULT_GLOBAL_RANGE));
        let (lo, hi) = s.split_once(',').ok_or_else(expected)?;
        let (lo, hi): (f64, f64) =
            (lo.trim().parse().map_err(|_| expected())?, hi.trim().parse().map_err(|_| expected())?);
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(expected());
        }
        Ok(Self([lo, hi]))
    }
}

impl SweepArgs {
    pub fn options(&self) -> SweepOptions {
        SweepOptions {
            steps: self.steps,
            global_range: self.range.0,
            include_biases: self.include_biases,
            transfer: self.transfer,
            delta: self.delta,
            tau: self.tau,
        }
    }

    pub fn config(&self, scope: Scope, attack: AttackConfig) -> SweepConfig {
        SweepConfig {
            scope,
            layers: self.layers.clone(),
            filters: self.filters.clone(),
            options: self.options(),
            attack,
            bn: self.batches.bn,
            batch: self.batches.batch,
        }
    }
}

/// The attack of an analysis, with eps from the flag, the card or the dataset.
pub fn attack_config(opts: &AttackArgs, kind: AttackKind, net: &Network, data: &Dataset) -> Result<AttackConfig> {
    let Some(eps) = opts.eps.or_else(|| setup::default_eps(net, Some(data))) else {
        bail!("no default eps is known for this model and dataset: pass --eps");
    };
    Ok(opts.config(kind, eps))
}

/// Loads model and data for an analysis and checks they fit.
pub fn open(model: &ModelArgs, data: &DataArgs) -> Result<(Network, Dataset)> {
    let net = model.load()?;
    let d = data.load_or_first(DEFAULT_EVAL_IMAGES)?;
    setup::check_compatible(&net, &d)?;
    Ok((net, d))
}

fn out_dir(out: &Option<PathBuf>) -> Result<Option<PathBuf>> {
    if let Some(d) = out {
        prepare_out(d)?;
    }
    Ok(out.clone())
}

#[derive(Args, Debug)]
pub struct SweepCmd {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// local: one layer at a time; global: every filterable tensor at once
    #[arg(long, value_enum, default_value_t = Scope::Local)]
    pub scope: Scope,
    #[command(flatten)]
    pub sweep: SweepArgs,
    #[arg(long, value_name = "I/N", requires = "out", help = SHARD_HELP)]
    pub shard: Option<Shard>,
    /// Folder for sweep.json, sweep.csv, scores.csv and layers.csv
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run_sweep(a: &SweepCmd) -> Result<()> {
    let (net, data) = open(&a.model, &a.data)?;
    let norm = setup::normalization(&net, Some(&data))?;
    let attack = attack_config(&a.sweep.attack_opts, a.sweep.attack, &net, &data)?;
    let cfg = a.sweep.config(a.scope, attack);
    let out = out_dir(&a.out)?;
    let (bar, stop) = (Bar::new(), ctrl_c_flag());
    if let (Some(shard), Some(dir)) = (a.shard, &out) {
        let done = sweep_share(a, shard, dir, (&net, &data, &norm, &cfg), Ctrl { progress: &bar, stop: &stop });
        bar.finish();
        return done;
    }
    eprintln!("sweeping on {} images; Ctrl-C stops after the current batch and keeps the finished steps", data.len());
    let result = sweep::run(&net, &data, &norm, &cfg, Ctrl { progress: &bar, stop: &stop }, &|_| {});
    bar.finish();
    let result = result?;
    let out = out.map(|d| result_dir(&d, "sweep.json", result.cancelled)).transpose()?;
    if let Some(dir) = &out {
        tables::write_sweep(dir, &result)?;
    }
    println!("model  {}", a.model.describe(&net));
    println!("data   {} ({} images)", data.name, group(data.len()));
    print_sweep(&result);
    if let Some(dir) = &out {
        println!("wrote {}", dir.join("sweep.json").display());
    }
    progress::finished(result.cancelled, "the steps finished so far are kept")
}

/// One shard's share of a sweep, written as `OUT/shard-I-of-N.json` when it finishes.
fn sweep_share(
    a: &SweepCmd,
    shard: Shard,
    out: &std::path::Path,
    (net, data, norm, cfg): (&Network, &Dataset, &crate::engine::card::Normalize, &SweepConfig),
    ctrl: Ctrl,
) -> Result<()> {
    let units = sweep::units(net, cfg)?;
    let mine = Units::new(shard).take(units);
    let manifest = out.join(shard.file_name());
    if manifest.exists() {
        std::fs::remove_file(&manifest).with_context(|| format!("replacing {}", manifest.display()))?;
    }
    eprintln!("sweeping {} of {units} (layer, filter) units (shard {shard}) on {} images", mine.len(), data.len());
    let r = sweep::run_units(net, data, norm, cfg, Some(&mine), ctrl, &|_| {})?;
    if r.cancelled {
        return progress::finished(true, "a stopped shard keeps nothing: run it again");
    }
    let file = SweepShardFile {
        model: a.model.describe(net),
        data: data.name.clone(),
        share: SweepShard { shard, units, ran: mine, result: r },
    };
    tables::write_json(&manifest, &Manifest::Sweep(Box::new(file)))?;
    println!("wrote {}", manifest.display());
    Ok(())
}

fn fmt_score(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:+.4}"))
}

pub fn print_sweep(r: &SweepResult) {
    let b = &r.baseline;
    println!(
        "baseline  clean {} / {}, adversarial {} / {} (eps {})",
        group(b.clean_correct),
        group(b.samples),
        group(b.adv_correct),
        group(b.samples),
        r.config.attack.eps
    );
    if let Some(n) = r.outside_range {
        println!(
            "{} filterable weights lie outside the range {:?} and are never in a pulse window",
            group(n),
            r.config.options.global_range
        );
    }
    let width = r.records.iter().map(|x| x.layer.len()).max().unwrap_or(5).max(5);
    println!("\n{:width$}  filter  {:>9}  {:>9}  {:>9}", "layer", "S_clean", "S_adv", "S_diff");
    for rec in &r.records {
        println!(
            "{:width$}  {:<6}  {:>9}  {:>9}  {:>9}{}",
            rec.layer,
            rec.filter.name(),
            fmt_score(rec.s_clean),
            fmt_score(rec.s_adv),
            fmt_score(rec.s_diff),
            if rec.complete() { "" } else { "  (incomplete)" }
        );
        for w in &rec.warnings {
            println!("  warning: {w}");
        }
    }
    if !r.layer_classes.is_empty() {
        println!("\nlayers, most fragile first (mean S_adv over h1, h2, h3; tau {})", r.config.options.tau);
        for c in &r.layer_classes {
            println!("  {:width$}  {:+.4}  {}", c.layer, c.mean_s_adv, c.class.name());
        }
    }
}

#[derive(Args, Debug)]
pub struct DropoutCmd {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Convolution layer (default: the first)
    #[arg(long)]
    pub layer: Option<String>,
    /// The attack whose inputs measure targeting (the papers': fgsm)
    #[arg(long, value_enum, default_value_t = AttackKind::Fgsm)]
    pub attack: AttackKind,
    #[command(flatten)]
    pub attack_opts: AttackArgs,
    #[command(flatten)]
    pub batches: BatchArgs,
    /// Folder for dropout.json and dropout.csv
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run_dropout(a: &DropoutCmd) -> Result<()> {
    let (net, data) = open(&a.model, &a.data)?;
    let norm = setup::normalization(&net, Some(&data))?;
    let attack = attack_config(&a.attack_opts, a.attack, &net, &data)?;
    let cfg = DropoutConfig { layer: a.layer.clone(), attack, bn: a.batches.bn, batch: a.batches.batch };
    let out = out_dir(&a.out)?;
    let (bar, stop) = (Bar::new(), ctrl_c_flag());
    let r = dropout::run(&net, &data, &norm, &cfg, Ctrl { progress: &bar, stop: &stop });
    bar.finish();
    let r = r?;
    let out = out.map(|d| result_dir(&d, "dropout.json", r.cancelled)).transpose()?;
    if let Some(dir) = &out {
        tables::write_dropout(dir, &r)?;
    }
    println!(
        "nodal dropout of `{}` on {} images; baseline {} correct",
        r.layer,
        group(r.samples),
        group(r.baseline_correct)
    );
    println!("mean accuracy with one kernel removed: {:.4}", r.mean);
    println!("fragile kernels (A_k < mean): {:?}", r.fragile);
    println!("null kernels (A_k >= baseline): {:?}", r.null);
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.5}"));
    println!(
        "d_F {} (fragile), d_N {} (others): the attack {} fragile kernels",
        f(r.d_fragile),
        f(r.d_other),
        if r.targeted { "targets" } else { "does not target" }
    );
    progress::finished(r.cancelled, "the kernels finished so far are kept")
}

/// A training run's checkpoints and the data to analyse them on.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Folder of checkpoints of one training run (as written by `train`)
    #[arg(long, value_name = "DIR")]
    pub checkpoints: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Where to compute
    #[arg(long, value_enum, default_value_t = device::DeviceChoice::Cpu)]
    pub device: device::DeviceChoice,
}

#[derive(Args, Debug)]
pub struct LandscapeCmd {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// Folder for landscape.json and landscape.csv
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A training run's checkpoints opened for an analysis of them all: the device, the
/// checkpoints by epoch, the first one's network (which sets eps) and the data, checked to fit.
pub struct OpenedRun {
    pub device: candle_core::Device,
    pub entries: Vec<landscape::CheckpointEntry>,
    pub first: Network,
    pub data: Dataset,
}

pub fn open_run(run: &RunArgs) -> Result<OpenedRun> {
    let dev = device::open(run.device)?;
    let entries = landscape::list_checkpoints(&run.checkpoints, &dev)?;
    let first = Network::load(&entries[0].path, None, &dev)?;
    let data = run.data.load_or_first(DEFAULT_EVAL_IMAGES)?;
    setup::check_compatible(&first, &data)?;
    Ok(OpenedRun { device: dev, entries, first, data })
}

pub fn run_landscape(a: &LandscapeCmd) -> Result<()> {
    let OpenedRun { device: dev, entries, first, data } = open_run(&a.run)?;
    let attack = attack_config(&a.sweep.attack_opts, a.sweep.attack, &first, &data)?;
    let cfg = a.sweep.config(Scope::Local, attack);
    let out = out_dir(&a.out)?;
    let (bar, stop) = (Bar::new(), ctrl_c_flag());
    let r = landscape::run(&entries, &data, &cfg, &dev, Ctrl { progress: &bar, stop: &stop }, &|_, _| {});
    bar.finish();
    let r = r?;
    let out = out.map(|d| result_dir(&d, "landscape.json", r.cancelled)).transpose()?;
    if let Some(dir) = &out {
        tables::write_landscape(dir, &r)?;
    }
    println!(
        "learning landscape over {} checkpoints (epochs {:?})",
        r.checkpoints.len(),
        r.checkpoints.iter().map(|c| c.epoch).collect::<Vec<_>>()
    );
    for c in &r.combined {
        let fragile: Vec<usize> = c.influential_adv.iter().map(|row| row.iter().filter(|b| **b).count()).collect();
        println!("  {:16} influential steps (adversarial) per epoch: {fragile:?}", c.layer);
    }
    progress::finished(r.cancelled, "the checkpoints finished so far are kept")
}
