//! `eval --eps-curve`: accuracy at each eps, with the curve's gradient-masking checks
//! (METHOD.md section 4): accuracy must not rise with eps, and should fall toward 0.
//! `figure --kind eps` draws its `eps_curve.json`.

use anyhow::{Result, bail};
use serde::Serialize;
use serde_json::json;

use super::eval::{EvalArgs, warnings};
use crate::engine::attack::checks;
use crate::engine::card::Normalize;
use crate::engine::data::Dataset;
use crate::engine::eval::{EvalConfig, evaluate};
use crate::engine::model::Network;
use crate::engine::progress::Ctrl;
use crate::export::format::group;
use crate::export::tables::{Table, write_json};

/// More points than any curve needs: a typo.
const MAX_POINTS: usize = 1000;

/// One eps of the curve.
#[derive(Debug, Clone, Serialize)]
pub struct EpsPoint {
    pub eps: f64,
    pub correct_clean: usize,
    pub correct_adversarial: usize,
    pub clean_accuracy: f64,
    pub adversarial_accuracy: f64,
    /// The evaluation's own gradient-masking warnings at this eps.
    pub warnings: Vec<String>,
}

/// Evaluates the configured attack at each eps of `list` (ascending).
pub fn run(
    net: &Network,
    data: &Dataset,
    norm: &Normalize,
    cfg: &EvalConfig,
    list: &[f64],
    ctrl: Ctrl,
) -> Result<Vec<EpsPoint>> {
    let Some(attack) = &cfg.attack else { bail!("--eps-curve needs an attack: --attack none measures no eps") };
    if list.is_empty() || list.len() > MAX_POINTS {
        bail!("--eps-curve takes 1 to {MAX_POINTS} eps values, found {}", list.len());
    }
    if let Some(w) = list.windows(2).find(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less)) {
        bail!("--eps-curve must list eps in ascending order: {} comes before {}", w[0], w[1]);
    }
    let mut points = Vec::with_capacity(list.len());
    for &eps in list {
        let at =
            EvalConfig { attack: Some(crate::engine::attack::AttackConfig { eps, ..attack.clone() }), ..cfg.clone() };
        let r = evaluate(net, data, norm, &at, ctrl)?;
        let adv = r.correct_adversarial.unwrap_or(0);
        points.push(EpsPoint {
            eps,
            correct_clean: r.correct_clean,
            correct_adversarial: adv,
            clean_accuracy: r.clean_accuracy,
            adversarial_accuracy: adv as f64 / r.n.max(1) as f64,
            warnings: warnings(&r),
        });
    }
    Ok(points)
}

/// Prints the curve (text or JSON) with its checks, and writes it under `--out`.
pub fn report(a: &EvalArgs, net: &Network, data: &Dataset, cfg: &EvalConfig, points: &[EpsPoint]) -> Result<()> {
    let curve: Vec<(f64, f64)> = points.iter().map(|p| (p.eps, p.adversarial_accuracy)).collect();
    let (rising, high_end) = checks::eps_curve_checks(&curve);
    let curve_warnings: Vec<String> = rising.into_iter().chain(high_end).collect();
    let summary = json!({
        "model": a.model.describe(net),
        "data": data.name,
        "n": data.len(),
        "points": points,
        "warnings": curve_warnings,
        "config": cfg,
    });
    if let Some(out) = &a.out {
        write_json(&out.join(CURVE_FILE), &summary)?;
        let mut t = Table::new(&["eps", "correct_clean", "correct_adversarial", "adversarial_accuracy"]);
        for p in points {
            t.row([
                p.eps.to_string(),
                p.correct_clean.to_string(),
                p.correct_adversarial.to_string(),
                p.adversarial_accuracy.to_string(),
            ]);
        }
        t.write(&out.join("eps_curve.csv"))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!("model  {}", a.model.describe(net));
    println!("data   {} ({} images)", data.name, group(data.len()));
    println!("{:>10}  {:>8}  {:>12}", "eps", "clean", "adversarial");
    for p in points {
        println!(
            "{:>10}  {:>8}  {:>12}  ({:.2} %)",
            p.eps,
            group(p.correct_clean),
            group(p.correct_adversarial),
            100.0 * p.adversarial_accuracy
        );
        for w in &p.warnings {
            println!("  warning at eps {}: {w}", p.eps);
        }
    }
    for w in &curve_warnings {
        println!("warning: {w}");
    }
    if let Some(out) = &a.out {
        println!("wrote {}", out.join(CURVE_FILE).display());
    }
    Ok(())
}

/// The curve's summary under `--out`.
pub const CURVE_FILE: &str = "eps_curve.json";
