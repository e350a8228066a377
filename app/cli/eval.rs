//! `eval`: clean and adversarial accuracy.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::json;

use super::common::{DataArgs, ModelArgs};
use super::eval_out::{self, EvalKept, ModelStamp};
use super::parts::DataStamp;
use super::progress::{Bar, StoppedEarly, ctrl_c_flag};
use super::shards::{EvalShardFile, Manifest, SHARD_HELP};
use super::{common::prepare_out, eps_curve};
use crate::engine::DEFAULT_SEED;
use crate::engine::EngineError;
use crate::engine::analysis::shard::Shard;
use crate::engine::attack::apgd::Norm;
use crate::engine::attack::{
    AttackConfig, AttackKind, DEFAULT_APGD_STEPS, DEFAULT_PGD_STEPS, DEFAULT_QUERIES, DEFAULT_RESTARTS,
    DEFAULT_TARGETS, GradMode,
};
use crate::engine::card::Normalize;
use crate::engine::data::Dataset;
use crate::engine::eval::{DEFAULT_BATCH, EvalConfig, EvalReport, assemble, evaluate, evaluate_batches};
use crate::engine::model::BnMode;
use crate::engine::model::Network;
use crate::engine::progress::Ctrl;
use crate::engine::setup;
use crate::export::format::group;
use crate::export::tables::write_json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AttackChoice {
    None,
    Fgsm,
    Pgd,
    ApgdCe,
    ApgdDlr,
    ApgdT,
    FabT,
    Square,
    Strong,
}

impl AttackChoice {
    fn kind(self) -> Option<AttackKind> {
        match self {
            AttackChoice::None => None,
            AttackChoice::Fgsm => Some(AttackKind::Fgsm),
            AttackChoice::Pgd => Some(AttackKind::Pgd),
            AttackChoice::ApgdCe => Some(AttackKind::ApgdCe),
            AttackChoice::ApgdDlr => Some(AttackKind::ApgdDlr),
            AttackChoice::ApgdT => Some(AttackKind::ApgdT),
            AttackChoice::FabT => Some(AttackKind::FabT),
            AttackChoice::Square => Some(AttackKind::Square),
            AttackChoice::Strong => Some(AttackKind::Strong),
        }
    }
}

/// Attack options shared by every command that attacks.
#[derive(Args, Debug, Clone)]
pub struct AttackArgs {
    /// Strength in normalised input units (default: the card's, else the dataset's: 0.3 for
    /// MNIST and Fashion-MNIST, 0.015 for CIFAR-10)
    #[arg(long, allow_negative_numbers = true)]
    pub eps: Option<f64>,
    /// Gradient direction: `exact` cannot be hidden by float rounding; `autograd` is
    /// PyTorch's float32 backward of batch-mean cross-entropy
    #[arg(long, value_enum, default_value_t = GradMode::Exact)]
    pub grad: GradMode,
    /// Clamp adversarial inputs to the normalised image of [0, 1]
    #[arg(long)]
    pub clamp: bool,
    /// PGD iterations
    #[arg(long, default_value_t = DEFAULT_PGD_STEPS)]
    pub pgd_steps: usize,
    /// PGD step size (default 2.5 * eps / steps)
    #[arg(long)]
    pub pgd_step: Option<f64>,
    /// Start PGD at a random point of the eps ball
    #[arg(long)]
    pub random_start: bool,
    /// Seed of every random draw: the attacks' starting points and Square's windows (and,
    /// when training, the initial weights, the data order and dropout)
    #[arg(long, alias = "pgd-seed", default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// APGD iterations per restart (APGD-T: per target class)
    #[arg(long, default_value_t = DEFAULT_APGD_STEPS)]
    pub attack_steps: usize,
    /// APGD and Square restarts (each on the samples the earlier ones did not fool)
    #[arg(long, default_value_t = DEFAULT_RESTARTS)]
    pub restarts: usize,
    /// Square's queries per restart
    #[arg(long, default_value_t = DEFAULT_QUERIES)]
    pub queries: usize,
    /// APGD-T's target classes, from the second highest clean logit down
    #[arg(long, default_value_t = DEFAULT_TARGETS)]
    pub target_classes: usize,
    /// The threat model of APGD and Square
    #[arg(long, value_enum, default_value_t = Norm::Linf)]
    pub norm: Norm,
}

/// How images go through the network: shared by every command that evaluates.
#[derive(Args, Debug, Clone)]
pub struct BatchArgs {
    /// Batch-norm statistics: `running` (evaluation mode) or `batch` (as the papers' code)
    #[arg(long, value_enum, default_value_t = BnMode::default())]
    pub bn: BnMode,
    /// Images per batch
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub batch: usize,
}

impl AttackArgs {
    pub fn config(&self, kind: AttackKind, eps: f64) -> AttackConfig {
        AttackConfig {
            kind,
            eps,
            grad: self.grad,
            clamp: self.clamp,
            pgd_steps: self.pgd_steps,
            pgd_step: self.pgd_step,
            pgd_random_start: self.random_start,
            seed: self.seed,
            attack_steps: self.attack_steps,
            restarts: self.restarts,
            norm: self.norm,
            queries: self.queries,
            targets: self.target_classes,
        }
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Attack to run after the clean pass
    #[arg(long, value_enum, default_value_t = AttackChoice::Fgsm)]
    pub attack: AttackChoice,
    #[command(flatten)]
    pub attack_opts: AttackArgs,
    #[command(flatten)]
    pub batches: BatchArgs,
    /// Print one JSON object on stdout (progress stays on stderr)
    #[arg(long)]
    pub json: bool,
    /// Measure adversarial accuracy at each of these eps instead (ascending), and check the
    /// curve: accuracy must not rise with eps and should fall toward 0
    #[arg(long, value_delimiter = ',', value_name = "EPS,...", conflicts_with_all = ["eps", "shard"])]
    pub eps_curve: Option<Vec<f64>>,
    /// Folder for eval.json, outcomes.csv (one row per image) and the finished batches: run
    /// again, a stopped evaluation resumes from them
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[arg(long, value_name = "I/N", requires = "out", help = SHARD_HELP)]
    pub shard: Option<Shard>,
}

pub fn run(a: &EvalArgs) -> Result<()> {
    let net = a.model.load()?;
    let data = a.data.load()?;
    setup::check_compatible(&net, &data)?;
    let norm = setup::normalization(&net, Some(&data))?;
    let attack = match a.attack.kind() {
        None => None,
        Some(k) => {
            let Some(eps) = a.attack_opts.eps.or_else(|| setup::default_eps(&net, Some(&data))) else {
                bail!("no default eps is known for this model and dataset: pass --eps");
            };
            Some(a.attack_opts.config(k, eps))
        }
    };
    let cfg = EvalConfig { batch: a.batches.batch, bn: a.batches.bn, attack };
    if let Some(out) = &a.out {
        prepare_out(out)?;
    }
    let (bar, stop) = (Bar::new(), ctrl_c_flag());
    let ctrl = Ctrl { progress: &bar, stop: &stop };
    if let Some(list) = &a.eps_curve {
        let curve = eps_curve::run(&net, &data, &norm, &cfg, list, ctrl);
        bar.finish();
        return eps_curve::report(a, &net, &data, &cfg, &curve?);
    }
    let report = match &a.out {
        None => evaluate(&net, &data, &norm, &cfg, ctrl),
        Some(out) => {
            let kept = kept_run(a, out, &net, &data, &norm, &cfg, ctrl);
            bar.finish();
            let Some(kept) = kept? else { return Ok(()) };
            let report = assemble(data.len(), &cfg, &kept.batches)?;
            let summary = summary_json(&report, &cfg, &kept.model.model, &data.name);
            eval_out::write_result(out, &summary, &report, &kept)?;
            Ok(report)
        }
    };
    bar.finish();
    let report = report?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary_json(&report, &cfg, &a.model.describe(&net), &data.name))?
        );
    } else {
        println!("model  {}", a.model.describe(&net));
        println!("data   {} ({} images)", data.name, group(data.len()));
        print_report(&report, &cfg, Some(norm.channel(0).1));
        if let Some(out) = &a.out {
            println!("wrote {}", out.join(eval_out::RESULT_FILE).display());
        }
    }
    Ok(())
}

/// The evaluation with its batches kept in `out` after each one, resuming from those kept
/// there before; a shard's share ends with its manifest (and `None`: nothing to report yet).
#[allow(clippy::too_many_arguments)]
fn kept_run(
    a: &EvalArgs,
    out: &Path,
    net: &Network,
    data: &Dataset,
    norm: &Normalize,
    cfg: &EvalConfig,
    ctrl: Ctrl,
) -> Result<Option<EvalKept>> {
    let mut kept = EvalKept {
        model: ModelStamp::of(&a.model, net)?,
        data: DataStamp::of(data),
        config: cfg.clone(),
        shard: a.shard,
        batches: Vec::new(),
    };
    let manifest = a.shard.map(|s| out.join(s.file_name()));
    if let Some(m) = manifest.as_ref().filter(|m| m.exists()) {
        std::fs::remove_file(m).with_context(|| format!("replacing {}", m.display()))?;
    }
    let resumed = eval_out::resume(out, &kept);
    let owned = |i: usize| a.shard.is_none_or(|s| s.owns(i));
    let batches = evaluate_batches(net, data, norm, cfg, resumed, &owned, ctrl, &mut |done| {
        kept.batches = done.to_vec();
        eval_out::keep(out, &kept).map_err(|e| EngineError::io("write", out, std::io::Error::other(format!("{e:#}"))))
    });
    let batches = match batches {
        Err(EngineError::Cancelled) => {
            return Err(StoppedEarly("the finished batches are kept: the same command resumes from them").into());
        }
        other => other?,
    };
    kept.batches = batches;
    let (Some(shard), Some(manifest)) = (a.shard, manifest) else { return Ok(Some(kept)) };
    eval_out::keep(out, &kept)?;
    let file = EvalShardFile { shard, kept };
    write_json(&manifest, &Manifest::Eval(Box::new(file)))?;
    println!("wrote {}", manifest.display());
    Ok(None)
}

pub fn summary_json(r: &EvalReport, cfg: &EvalConfig, model: &str, data: &str) -> serde_json::Value {
    let a = cfg.attack.as_ref();
    json!({
        "model": model,
        "data": data,
        "n": r.n,
        "correct_clean": r.correct_clean,
        "clean_accuracy": r.clean_accuracy,
        "correct_adversarial": r.correct_adversarial,
        "adversarial_accuracy": r.adversarial_accuracy,
        "attack": a.map_or("none", |a| a.kind.name()),
        "eps": a.map(|a| a.eps),
        "grad": a.map(|a| a.grad),
        "clamp": a.map(|a| a.clamp),
        "bn": cfg.bn,
        "batch": cfg.batch,
        "saturated": r.stats.saturated,
        "zero_gradient": r.stats.zero_gradient,
        "nonfinite_gradient": r.stats.nonfinite_gradient,
        "single_step_gain": r.stats.single_step_gain,
        "randomized": r.randomized,
        "stages": r.stats.stages,
        "warnings": warnings(r),
        "config": cfg,
    })
}

fn pct(c: usize, n: usize) -> String {
    format!("{:.2} % ({} / {})", 100.0 * c as f64 / n.max(1) as f64, group(c), group(n))
}

/// The gradient-masking warnings of an attacked run.
pub fn warnings(r: &EvalReport) -> Vec<String> {
    let mut out = r.stats.warnings(r.n);
    if r.randomized {
        out.push(
            "the network's outputs differ between two passes over the same images: randomised outputs \
                  defeat gradient and score attacks alike; evaluate it with expectation over transformation"
                .into(),
        );
    }
    out
}

/// How a report names the attack with its parameters.
fn describe(a: &AttackConfig) -> String {
    let restarts = if a.restarts == 1 { String::new() } else { format!(", {} restarts", a.restarts) };
    match a.kind {
        AttackKind::Fgsm => "FGSM".into(),
        AttackKind::Pgd => format!("PGD-{}", a.pgd_steps),
        AttackKind::ApgdCe | AttackKind::ApgdDlr => {
            format!("{} ({:?}, {} steps{restarts})", a.kind.label(), a.norm, a.attack_steps)
        }
        AttackKind::ApgdT => {
            format!("APGD-T ({:?}, {} steps, {} target classes)", a.norm, a.attack_steps, a.targets)
        }
        AttackKind::FabT => format!("FAB-T (Linf, {} steps, {} target classes{restarts})", a.attack_steps, a.targets),
        AttackKind::Square => format!("Square ({:?}, {} queries{restarts})", a.norm, a.queries),
        AttackKind::Strong => format!(
            "Strong: APGD-CE, APGD-T, FAB-T, Square ({:?}; {} steps, {} target classes, {} queries)",
            a.norm, a.attack_steps, a.targets, a.queries
        ),
    }
}

/// The report in words; `std0`, the first channel's normalisation, gives eps in pixel units.
pub fn print_report(r: &EvalReport, cfg: &EvalConfig, std0: Option<f32>) {
    println!("clean accuracy        {}", pct(r.correct_clean, r.n));
    if let (Some(a), Some(c)) = (&cfg.attack, r.correct_adversarial) {
        let grad = match (a.kind, a.grad) {
            (AttackKind::Square, _) => "no gradients",
            (_, GradMode::Exact) => "exact gradient direction",
            (_, GradMode::Autograd) => "float32 autograd",
        };
        println!("adversarial accuracy  {}", pct(c, r.n));
        let pixels = std0.map_or(String::new(), |s| format!(" ({:.4} in pixel units)", a.eps * s as f64));
        println!(
            "  {}, eps {}{pixels}, {grad}, seed {}{}",
            describe(a),
            a.eps,
            a.seed,
            if a.clamp { ", clamped to the image range" } else { "" }
        );
        for s in &r.stats.stages {
            println!("  robust after {:<9} {}", s.attack.label(), pct(s.robust, r.n));
        }
        println!("saturated samples     {} (true-class probability rounds to 1 in float32)", group(r.stats.saturated));
        println!("zero-gradient samples {}", group(r.stats.zero_gradient));
        if a.kind.iterative() {
            println!("one FGSM step beat it {} samples", group(r.stats.single_step_gain));
        }
        for w in warnings(r) {
            println!("warning: {w}");
        }
    }
}
