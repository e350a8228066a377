//! FGSM, PGD, APGD, Square and their worst-case ensemble (METHOD.md section 4), with an
//! input-gradient direction that float rounding cannot hide.

pub mod apgd;
pub mod checks;
pub mod fab;
pub mod square;
mod strong;

pub use checks::{AttackStats, Stage};

use candle_core::{DType, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::engine::card::{MAX_EPS, Normalize};
use crate::engine::error::{EngineError, Result};
use crate::engine::model::kernels;
use crate::engine::model::ops::sign;
use crate::engine::model::{BnMode, ForwardCtx, Network};
use crate::engine::progress::StopFlag;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    #[default]
    Fgsm,
    Pgd,
    /// APGD with cross-entropy (Croce and Hein 2020).
    ApgdCe,
    /// APGD with the difference-of-logits-ratio loss.
    ApgdDlr,
    /// APGD with the targeted DLR loss, towards each of the top classes in turn.
    ApgdT,
    /// The targeted Fast Adaptive Boundary attack (L-infinity), towards each top class in turn.
    FabT,
    /// The score-based black-box Square attack (no gradients).
    Square,
    /// The worst case of APGD-CE, APGD-T and Square, run in turn on the samples still robust.
    Strong,
}

impl AttackKind {
    /// Every kind, in the order menus list them.
    pub const ALL: [AttackKind; 8] = [
        AttackKind::Fgsm,
        AttackKind::Pgd,
        AttackKind::ApgdCe,
        AttackKind::ApgdDlr,
        AttackKind::ApgdT,
        AttackKind::FabT,
        AttackKind::Square,
        AttackKind::Strong,
    ];

    /// How reports and menus name the kind.
    pub fn label(self) -> &'static str {
        match self {
            AttackKind::Fgsm => "FGSM",
            AttackKind::Pgd => "PGD",
            AttackKind::ApgdCe => "APGD-CE",
            AttackKind::ApgdDlr => "APGD-DLR",
            AttackKind::ApgdT => "APGD-T",
            AttackKind::FabT => "FAB-T",
            AttackKind::Square => "Square",
            AttackKind::Strong => "Strong",
        }
    }

    /// The kind's name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::Fgsm => "fgsm",
            AttackKind::Pgd => "pgd",
            AttackKind::ApgdCe => "apgd-ce",
            AttackKind::ApgdDlr => "apgd-dlr",
            AttackKind::ApgdT => "apgd-t",
            AttackKind::FabT => "fab-t",
            AttackKind::Square => "square",
            AttackKind::Strong => "strong",
        }
    }

    /// Whether APGD's (and FAB-T's) iterations and restarts apply.
    pub fn uses_apgd(self) -> bool {
        matches!(
            self,
            AttackKind::ApgdCe | AttackKind::ApgdDlr | AttackKind::ApgdT | AttackKind::FabT | AttackKind::Strong
        )
    }

    /// Whether the attack runs toward target classes in turn (`targets` applies).
    pub fn targeted(self) -> bool {
        matches!(self, AttackKind::ApgdT | AttackKind::FabT | AttackKind::Strong)
    }

    /// Whether Square's queries apply.
    pub fn uses_queries(self) -> bool {
        matches!(self, AttackKind::Square | AttackKind::Strong)
    }

    /// Whether the L2 threat model is offered (FAB-T is L-infinity here; the ensemble skips
    /// it under L2).
    pub fn has_l2(self) -> bool {
        self != AttackKind::FabT && (self.uses_apgd() || self.uses_queries())
    }

    /// Whether the attack takes several gradient steps (each needing a fresh forward pass
    /// from the input, so nothing before a filtered layer can be kept).
    pub fn iterative(self) -> bool {
        self != AttackKind::Fgsm
    }
}

/// How the input gradient's direction is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum GradMode {
    /// Per-sample logit cotangent in float64 (METHOD.md section 4): never lost to rounding.
    #[default]
    Exact,
    /// The conventional float32 backward of batch-mean cross-entropy, as PyTorch code does.
    Autograd,
}

/// PGD iterations unless told otherwise.
pub const DEFAULT_PGD_STEPS: usize = 10;

fn default_pgd_steps() -> usize {
    DEFAULT_PGD_STEPS
}

/// APGD iterations unless told otherwise (the reference ensemble's).
pub const DEFAULT_APGD_STEPS: usize = 100;
/// APGD restarts unless told otherwise.
pub const DEFAULT_RESTARTS: usize = 1;
/// Square's queries unless told otherwise (the reference ensemble's).
pub const DEFAULT_QUERIES: usize = 5000;
/// APGD-T's target classes unless told otherwise (the reference ensemble's top 9).
pub const DEFAULT_TARGETS: usize = 9;

fn default_queries() -> usize {
    DEFAULT_QUERIES
}

fn default_targets() -> usize {
    DEFAULT_TARGETS
}

fn default_apgd_steps() -> usize {
    DEFAULT_APGD_STEPS
}

fn default_restarts() -> usize {
    DEFAULT_RESTARTS
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttackConfig {
    pub kind: AttackKind,
    /// Strength in normalised input units.
    pub eps: f64,
    pub grad: GradMode,
    /// Clamp adversarial inputs to the normalised image of [0, 1].
    pub clamp: bool,
    #[serde(default = "default_pgd_steps")]
    pub pgd_steps: usize,
    /// PGD step size; `None` means 2.5 * eps / steps (Madry et al.).
    pub pgd_step: Option<f64>,
    pub pgd_random_start: bool,
    /// Seed of every random draw of the attack: PGD's and APGD's starting points, Square's
    /// windows.
    pub seed: u64,
    /// APGD iterations per restart.
    #[serde(default = "default_apgd_steps")]
    pub attack_steps: usize,
    /// APGD and Square run from new random starts, each on the samples no earlier one fooled.
    #[serde(default = "default_restarts")]
    pub restarts: usize,
    /// The threat model of APGD and Square (FGSM and PGD are L-infinity).
    pub norm: apgd::Norm,
    /// Square's queries per restart.
    #[serde(default = "default_queries")]
    pub queries: usize,
    /// APGD-T's target classes, from the second highest clean logit down.
    #[serde(default = "default_targets")]
    pub targets: usize,
}

impl Default for AttackConfig {
    fn default() -> Self {
        Self {
            kind: AttackKind::Fgsm,
            eps: 0.0,
            grad: GradMode::Exact,
            clamp: false,
            pgd_steps: default_pgd_steps(),
            pgd_step: None,
            pgd_random_start: false,
            seed: crate::engine::DEFAULT_SEED,
            attack_steps: DEFAULT_APGD_STEPS,
            restarts: DEFAULT_RESTARTS,
            norm: apgd::Norm::Linf,
            queries: DEFAULT_QUERIES,
            targets: DEFAULT_TARGETS,
        }
    }
}

/// More PGD iterations than any published evaluation uses, by far: a typo.
pub const MAX_PGD_STEPS: usize = 100_000;
/// More restarts than any evaluation runs.
pub const MAX_RESTARTS: usize = 1_000;
/// Twenty times the reference's Square budget.
pub const MAX_QUERIES: usize = 100_000;

impl AttackConfig {
    pub fn fgsm(eps: f64) -> Self {
        Self { eps, ..Self::default() }
    }

    pub fn validate(&self) -> Result<()> {
        if !(0.0..=MAX_EPS).contains(&self.eps) {
            return Err(EngineError::config(format!(
                "eps must be a finite number >= 0, at most {MAX_EPS} (float32 images overflow beyond), found {}",
                self.eps
            )));
        }
        if self.kind == AttackKind::Pgd {
            if !(1..=MAX_PGD_STEPS).contains(&self.pgd_steps) {
                return Err(EngineError::config(format!(
                    "PGD needs from 1 to {MAX_PGD_STEPS} steps, found {}",
                    self.pgd_steps
                )));
            }
            if let Some(s) = self.pgd_step
                && (s.is_nan() || s <= 0.0)
            {
                return Err(EngineError::config(format!("the PGD step size must be > 0, found {s}")));
            }
        }
        if self.kind.uses_apgd() {
            if !(1..=MAX_PGD_STEPS).contains(&self.attack_steps) {
                return Err(EngineError::config(format!(
                    "APGD needs from 1 to {MAX_PGD_STEPS} steps, found {}",
                    self.attack_steps
                )));
            }
            if !(1..=MAX_RESTARTS).contains(&self.restarts) {
                return Err(EngineError::config(format!(
                    "APGD needs from 1 to {MAX_RESTARTS} restarts, found {}",
                    self.restarts
                )));
            }
        }
        if self.kind.targeted() && self.targets == 0 {
            return Err(EngineError::config(format!("{} needs at least 1 target class, found 0", self.kind.label())));
        }
        if self.kind.uses_queries() {
            if !(1..=MAX_QUERIES).contains(&self.queries) {
                return Err(EngineError::config(format!(
                    "Square needs from 1 to {MAX_QUERIES} queries, found {}",
                    self.queries
                )));
            }
            if !(1..=MAX_RESTARTS).contains(&self.restarts) {
                return Err(EngineError::config(format!(
                    "Square needs from 1 to {MAX_RESTARTS} restarts, found {}",
                    self.restarts
                )));
            }
        }
        if self.norm == apgd::Norm::L2 && !self.kind.has_l2() {
            return Err(EngineError::config(format!(
                "{} is an L-infinity attack: the L2 norm is APGD's and Square's",
                self.kind.label()
            )));
        }
        Ok(())
    }

    pub fn pgd_step_size(&self) -> f64 {
        self.pgd_step.unwrap_or(2.5 * self.eps / self.pgd_steps.max(1) as f64)
    }
}

/// The logit cotangent whose backward pass gives the input-gradient direction, and
/// how many samples saturate (true-class probability rounds to 1 in float32).
fn cotangent(logits: &Tensor, labels: &[u32], mode: GradMode) -> Result<(Tensor, usize)> {
    let z: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
    let n = z.len();
    let k = z.first().map_or(0, Vec::len);
    let mut c = Vec::with_capacity(n * k);
    let mut saturated = 0;
    let inv_n = 1.0f32 / n as f32;
    for (row, &y) in z.iter().zip(labels) {
        let y = y as usize;
        // PyTorch's float32 log-softmax: z - max - log(sum(exp(z - max))).
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = row.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
        let p_y = (row[y] - max - lse).exp();
        if p_y == 1.0 {
            saturated += 1;
        }
        match mode {
            GradMode::Exact => {
                let r = row
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != y)
                    .map(|(_, &v)| v as f64)
                    .fold(f64::NEG_INFINITY, f64::max);
                let others: Vec<f64> = row.iter().map(|&v| (v as f64 - r).exp()).collect();
                let sum: f64 = others.iter().enumerate().filter(|&(j, _)| j != y).map(|(_, v)| v).sum();
                c.extend((0..k).map(|j| if j == y { -sum as f32 } else { others[j] as f32 }));
            }
            GradMode::Autograd => {
                // Cross-entropy's backward: grad_logsm = -onehot / N, then
                // log-softmax's backward: grad_logsm - exp(logsm) * sum(grad_logsm).
                let g = -inv_n;
                c.extend((0..k).map(|j| {
                    let p = (row[j] - max - lse).exp();
                    (if j == y { g } else { 0.0 }) - p * g
                }));
            }
        }
    }
    Ok((Tensor::from_vec(c, (n, k), logits.device())?, saturated))
}

/// The input gradient whose sign the attacks follow, the clean logits, and the
/// saturated-sample count.
pub fn input_gradient(
    net: &Network,
    x: &Tensor,
    labels: &[u32],
    bn: BnMode,
    mode: GradMode,
) -> Result<(Tensor, Tensor, usize)> {
    let xv = Var::from_tensor(x)?;
    let mut ctx = ForwardCtx::input_grad(bn);
    let logits = net.forward(xv.as_tensor(), &mut ctx)?;
    let (g, saturated) = gradient_of(&xv, &logits, labels, mode)?;
    Ok((g, logits.detach(), saturated))
}

/// The gradient of the attack direction at `x`, given logits whose graph reaches it.
fn gradient_of(x: &Var, logits: &Tensor, labels: &[u32], mode: GradMode) -> Result<(Tensor, usize)> {
    let (c, saturated) = cotangent(&logits.detach(), labels, mode)?;
    Ok((backward_to(x, logits, &c)?, saturated))
}

/// The gradient at `x` of the logits weighted by `cotangent` (a vector-Jacobian product).
fn backward_to(x: &Var, logits: &Tensor, cotangent: &Tensor) -> Result<Tensor> {
    let grads = logits.mul(cotangent)?.sum_all()?.backward()?;
    grads
        .get(x.as_tensor())
        .cloned()
        .ok_or_else(|| EngineError::model("the network's output does not depend on its input"))
}

/// Stages `..from` of the network applied to `x` once, kept with their graph so that
/// attacks on networks filtered after them need only run the rest (sweeps).
pub struct Prefix {
    pub from: usize,
    pub x: Var,
    pub activations: Tensor,
}

impl Prefix {
    pub fn new(net: &Network, from: usize, x: &Tensor, bn: BnMode) -> Result<Self> {
        let xv = Var::from_tensor(x)?;
        let mut ctx = ForwardCtx::input_grad(bn);
        let activations = net.forward_stages(0..from, xv.as_tensor(), &mut ctx)?;
        Ok(Self { from, x: xv, activations })
    }

    /// Logits of the network as it is now, from the kept activations.
    pub fn logits(&self, net: &Network, bn: BnMode) -> Result<Tensor> {
        let activations = self.activations.detach();
        Ok(net.forward_stages(self.from..usize::MAX, &activations, &mut ForwardCtx::eval(bn))?)
    }

    /// FGSM against the network as it is now (the same result as [`attack`]).
    pub fn fgsm(
        &self,
        net: &Network,
        labels: &[u32],
        norm: &Normalize,
        bn: BnMode,
        cfg: &AttackConfig,
    ) -> Result<Attacked> {
        let mut ctx = ForwardCtx::input_grad(bn);
        let logits = net.forward_stages(self.from..usize::MAX, &self.activations, &mut ctx)?;
        let (g, saturated) = gradient_of(&self.x, &logits, labels, cfg.grad)?;
        let x = self.x.as_tensor();
        let x_adv = within(signed_step(x, &g, cfg.eps)?, clamp_bounds(norm, x, cfg)?.as_ref())?;
        let mut stats = AttackStats { saturated, ..AttackStats::default() };
        stats.count_gradients(&g)?;
        Ok(Attacked { x_adv: x_adv.detach(), clean_logits: logits.detach(), stats, one_step: None })
    }
}

/// The normalised image of [0, 1] in channel `c`.
fn image_range(norm: &Normalize, c: usize) -> (f32, f32) {
    let (m, s) = norm.channel(c);
    ((0.0 - m) / s, (1.0 - m) / s)
}

/// Per-channel bounds of the normalised image of [0, 1], shaped (1, C, 1, 1).
fn image_bounds(norm: &Normalize, channels: usize, like: &Tensor) -> Result<(Tensor, Tensor)> {
    let (lo, hi): (Vec<f32>, Vec<f32>) = (0..channels).map(|c| image_range(norm, c)).unzip();
    let shape = (1, channels, 1, 1);
    Ok((Tensor::from_vec(lo, shape, like.device())?, Tensor::from_vec(hi, shape, like.device())?))
}

/// `x + eps * sign(g)`, with sign(0) = 0.
fn signed_step(x: &Tensor, g: &Tensor, eps: f64) -> Result<Tensor> {
    if kernels::enabled_for(x) {
        return Ok(kernels::signed_step(x, g, eps as f32)?);
    }
    Ok((x + (sign(g)? * eps)?)?)
}

fn clamp_to(x: &Tensor, lo: &Tensor, hi: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_maximum(lo)?.broadcast_minimum(hi)?)
}

/// The image's per-channel bounds when the attack clamps to it.
fn clamp_bounds(norm: &Normalize, x: &Tensor, cfg: &AttackConfig) -> Result<Option<(Tensor, Tensor)>> {
    if !cfg.clamp {
        return Ok(None);
    }
    Ok(Some(image_bounds(norm, x.dim(1)?, x)?))
}

/// `x` clamped to `bounds`, if any.
fn within(x: Tensor, bounds: Option<&(Tensor, Tensor)>) -> Result<Tensor> {
    match bounds {
        Some((lo, hi)) => clamp_to(&x, lo, hi),
        None => Ok(x),
    }
}

/// An attack's output for one batch.
pub struct Attacked {
    pub x_adv: Tensor,
    /// Logits of the clean input (computed on the way).
    pub clean_logits: Tensor,
    /// What the attack saw that bears on its trust: saturation, zero gradients, stages.
    pub stats: AttackStats,
    /// One FGSM step from the clean gradient, kept by iterative L-infinity gradient attacks so
    /// that callers can check the many steps did no worse than one ([`Attacked::single_step_gain`]).
    pub one_step: Option<Tensor>,
}

impl Attacked {
    /// Samples the single FGSM step fooled that the full attack left classified right
    /// (`adv_logits` being the network's logits of `x_adv`): more iterations doing worse is a
    /// sign of masked or noisy gradients. 0 when no single step was kept.
    pub fn single_step_gain(&self, net: &Network, bn: BnMode, adv_logits: &Tensor, labels: &[u32]) -> Result<usize> {
        let Some(one) = &self.one_step else { return Ok(0) };
        let one = still_right(&net.logits(one, bn)?, labels)?;
        let all = still_right(adv_logits, labels)?;
        Ok(one.iter().zip(&all).filter(|&(&o, &a)| !o && a).count())
    }
}

/// Runs the configured attack on a batch of normalised inputs, to the end.
pub fn attack(
    net: &Network,
    x: &Tensor,
    labels: &[u32],
    norm: &Normalize,
    bn: BnMode,
    cfg: &AttackConfig,
) -> Result<Attacked> {
    attack_until_stopped(net, x, labels, norm, bn, cfg, &StopFlag::new())
}

/// Like [`attack`], checking `stop` before each iteration: one batch of a long attack takes
/// seconds, far longer than a cancel may.
pub fn attack_until_stopped(
    net: &Network,
    x: &Tensor,
    labels: &[u32],
    norm: &Normalize,
    bn: BnMode,
    cfg: &AttackConfig,
    stop: &StopFlag,
) -> Result<Attacked> {
    let bounds = clamp_bounds(norm, x, cfg)?;
    if cfg.kind == AttackKind::Square {
        // Black-box: the clean logits only, never a gradient.
        let clean_logits = net.logits(x, bn)?;
        let robust = still_right(&clean_logits, labels)?;
        let (x_adv, _) = square(net, bn, cfg, norm, x)?.run(x, labels, robust, stop)?;
        return Ok(Attacked { x_adv, clean_logits, stats: AttackStats::default(), one_step: None });
    }
    let (g, clean_logits, saturated) = input_gradient(net, x, labels, bn, cfg.grad)?;
    let mut stats = AttackStats { saturated, ..AttackStats::default() };
    stats.count_gradients(&g)?;
    let x_adv = match cfg.kind {
        AttackKind::Fgsm => within(signed_step(x, &g, cfg.eps)?, bounds.as_ref())?,
        AttackKind::Pgd => pgd(net, x, labels, bn, cfg, &g, bounds.as_ref(), stop)?,
        AttackKind::ApgdCe | AttackKind::ApgdDlr | AttackKind::ApgdT => {
            let robust = still_right(&clean_logits, labels)?;
            apgd(net, bn, cfg, cfg.kind, bounds.clone()).run(x, labels, robust, clean_logits.dim(1)?, stop)?.0
        }
        AttackKind::FabT => {
            let robust = still_right(&clean_logits, labels)?;
            fab(net, bn, cfg, norm, x)?.run(x, labels, robust, clean_logits.dim(1)?, stop)?.0
        }
        AttackKind::Square => unreachable!("answered above"),
        AttackKind::Strong => {
            let (x_adv, stages) = strong::run(net, x, labels, norm, bn, cfg, &clean_logits, stop)?;
            stats.stages = stages;
            x_adv
        }
    };
    // FGSM is an L-infinity step: it says nothing about an L2 attack.
    let one_step = (cfg.kind.iterative() && cfg.norm == apgd::Norm::Linf)
        .then(|| within(signed_step(x, &g, cfg.eps)?, bounds.as_ref()))
        .transpose()?;
    Ok(Attacked { x_adv: x_adv.detach(), clean_logits, stats, one_step })
}

/// PGD from the clean input (or a seeded random start), `g` being the clean input's gradient.
#[allow(clippy::too_many_arguments)]
fn pgd(
    net: &Network,
    x: &Tensor,
    labels: &[u32],
    bn: BnMode,
    cfg: &AttackConfig,
    g: &Tensor,
    bounds: Option<&(Tensor, Tensor)>,
    stop: &StopFlag,
) -> Result<Tensor> {
    let eps = cfg.eps;
    let step = cfg.pgd_step_size();
    let mut cur = if cfg.pgd_random_start {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let noise: Vec<f32> = (0..x.elem_count()).map(|_| rng.random_range(-eps..=eps) as f32).collect();
        within((x + Tensor::from_vec(noise, x.shape(), x.device())?)?, bounds)?
    } else {
        x.clone()
    };
    let (lo, hi) = ((x - eps)?, (x + eps)?);
    for t in 0..cfg.pgd_steps {
        if stop.is_stopped() {
            return Err(EngineError::Cancelled);
        }
        let g = if t == 0 && !cfg.pgd_random_start {
            g.clone()
        } else {
            input_gradient(net, &cur, labels, bn, cfg.grad)?.0
        };
        let moved = signed_step(&cur, &g, step)?;
        cur = within(moved.maximum(&lo)?.minimum(&hi)?, bounds)?;
    }
    Ok(cur)
}

/// Which samples the logits classify right (first maximum, as torch.argmax).
fn still_right(logits: &Tensor, labels: &[u32]) -> Result<Vec<bool>> {
    let pred: Vec<u32> = logits.argmax(1)?.to_vec1()?;
    Ok(pred.iter().zip(labels).map(|(p, y)| p == y).collect())
}

/// The APGD run of `kind` (APGD-CE, APGD-DLR or APGD-T) with the config's parameters.
fn apgd<'a>(
    net: &'a Network,
    bn: BnMode,
    cfg: &AttackConfig,
    kind: AttackKind,
    bounds: Option<(Tensor, Tensor)>,
) -> apgd::Apgd<'a> {
    let loss = match kind {
        AttackKind::ApgdDlr => apgd::Loss::Dlr,
        AttackKind::ApgdT => apgd::Loss::DlrTargeted,
        _ => apgd::Loss::Ce,
    };
    apgd::Apgd {
        net,
        bn,
        loss,
        norm: cfg.norm,
        eps: cfg.eps,
        steps: cfg.attack_steps,
        // The reference ensemble runs each target once.
        restarts: if kind == AttackKind::ApgdT { 1 } else { cfg.restarts },
        targets: cfg.targets,
        seed: cfg.seed,
        grad: cfg.grad,
        bounds,
    }
}

/// Per channel, the image range the host-side attacks (FAB-T, Square) clamp to, if they do.
fn host_bounds(cfg: &AttackConfig, norm: &Normalize, x: &Tensor) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
    let channels = x.dim(1)?;
    Ok(cfg.clamp.then(|| (0..channels).map(|c| image_range(norm, c)).unzip()))
}

/// The FAB-T run with the config's parameters.
fn fab<'a>(net: &'a Network, bn: BnMode, cfg: &AttackConfig, norm: &Normalize, x: &Tensor) -> Result<fab::Fab<'a>> {
    let bounds = host_bounds(cfg, norm, x)?;
    Ok(fab::Fab {
        net,
        bn,
        eps: cfg.eps,
        steps: cfg.attack_steps,
        restarts: cfg.restarts,
        targets: cfg.targets,
        seed: cfg.seed,
        bounds,
    })
}

/// The Square run with the config's parameters.
fn square<'a>(
    net: &'a Network,
    bn: BnMode,
    cfg: &AttackConfig,
    norm: &Normalize,
    x: &Tensor,
) -> Result<square::Square<'a>> {
    let bounds = host_bounds(cfg, norm, x)?;
    Ok(square::Square {
        net,
        bn,
        norm: cfg.norm,
        eps: cfg.eps,
        queries: cfg.queries,
        restarts: cfg.restarts,
        seed: cfg.seed,
        bounds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn exact_cotangent_survives_saturation() {
        // Class 0 wins by 200 logits: float32 softmax rounds to exactly one-hot.
        let logits = Tensor::new(&[[200f32, 0.0, -1.0]], &Device::Cpu).unwrap();
        let (c, sat) = cotangent(&logits, &[0], GradMode::Exact).unwrap();
        let c = c.to_vec2::<f32>().unwrap();
        assert_eq!(sat, 1);
        assert!(c[0][0] < 0.0 && c[0][1] > 0.0 && c[0][2] > 0.0, "{c:?}");
        assert!((c[0][1] - 1.0).abs() < 1e-6 && (c[0][2] - (-1f32).exp()).abs() < 1e-6);
        let (a, _) = cotangent(&logits, &[0], GradMode::Autograd).unwrap();
        assert_eq!(a.to_vec2::<f32>().unwrap()[0], vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn exact_cotangent_is_proportional_to_softmax_minus_onehot() {
        let z = [1.0f32, 2.0, 0.5, -1.0];
        let logits = Tensor::new(&[z], &Device::Cpu).unwrap();
        let (c, _) = cotangent(&logits, &[2], GradMode::Exact).unwrap();
        let c = c.to_vec2::<f32>().unwrap()[0].clone();
        let e: Vec<f64> = z.iter().map(|&v| (v as f64).exp()).collect();
        let s: f64 = e.iter().sum();
        let reference: Vec<f64> = e.iter().enumerate().map(|(j, v)| v / s - if j == 2 { 1.0 } else { 0.0 }).collect();
        let ratio = c[0] as f64 / reference[0];
        for j in 0..4 {
            assert!((c[j] as f64 - ratio * reference[j]).abs() < 1e-5, "{c:?} vs {reference:?}");
        }
        assert!(ratio > 0.0);
    }
}
