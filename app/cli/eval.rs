//! `eval`: clean and adversarial accuracy.

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use serde_json::json;

use super::common::{DataArgs, ModelArgs};
use super::progress::{Bar, ctrl_c_flag};
use crate::engine::DEFAULT_SEED;
use crate::engine::attack::apgd::Norm;
use crate::engine::attack::{
    AttackConfig, AttackKind, DEFAULT_APGD_STEPS, DEFAULT_PGD_STEPS, DEFAULT_QUERIES, DEFAULT_RESTARTS,
    DEFAULT_TARGETS, GradMode,
};
use crate::engine::eval::{DEFAULT_BATCH, EvalConfig, EvalReport, evaluate};
use crate::engine::model::BnMode;
use crate::engine::progress::Ctrl;
use crate::engine::setup;
use crate::export::format::group;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AttackChoice {
    None,
    Fgsm,
    Pgd,
    ApgdCe,
    ApgdDlr,
    ApgdT,
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
    let bar = Bar::new();
    let stop = ctrl_c_flag();
    let report = evaluate(&net, &data, &norm, &cfg, Ctrl { progress: &bar, stop: &stop });
    bar.finish();
    let report = report?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary_json(&report, &cfg))?);
    } else {
        println!("model  {}", a.model.describe(&net));
        println!("data   {} ({} images)", data.name, group(data.len()));
        print_report(&report, &cfg, norm.channel(0).1);
    }
    Ok(())
}

fn summary_json(r: &EvalReport, cfg: &EvalConfig) -> serde_json::Value {
    let a = cfg.attack.as_ref();
    json!({
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
fn warnings(r: &EvalReport) -> Vec<String> {
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
        AttackKind::Square => format!("Square ({:?}, {} queries{restarts})", a.norm, a.queries),
        AttackKind::Strong => format!(
            "Strong: APGD-CE, APGD-T, Square ({:?}; {} steps, {} target classes, {} queries)",
            a.norm, a.attack_steps, a.targets, a.queries
        ),
    }
}

fn print_report(r: &EvalReport, cfg: &EvalConfig, std0: f32) {
    println!("clean accuracy        {}", pct(r.correct_clean, r.n));
    if let (Some(a), Some(c)) = (&cfg.attack, r.correct_adversarial) {
        let grad = match (a.kind, a.grad) {
            (AttackKind::Square, _) => "no gradients",
            (_, GradMode::Exact) => "exact gradient direction",
            (_, GradMode::Autograd) => "float32 autograd",
        };
        println!("adversarial accuracy  {}", pct(c, r.n));
        println!(
            "  {}, eps {} ({:.4} in pixel units), {grad}, seed {}{}",
            describe(a),
            a.eps,
            a.eps * std0 as f64,
            a.seed,
            if a.clamp { ", clamped to the image range" } else { "" }
        );
        for s in &r.stats.stages {
            println!("  robust after {:<9} {}", s.attack.label(), pct(s.robust, r.n));
        }
        println!("saturated samples     {} (true-class probability rounds to 1 in float32)", group(r.stats.saturated));
        println!("zero-gradient samples {}", group(r.stats.zero_gradient));
        for w in warnings(r) {
            println!("warning: {w}");
        }
    }
}
