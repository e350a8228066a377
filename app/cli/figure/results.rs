//! Reading a results file back and recognising what it holds.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::engine::analysis::dropout::DropoutResult;
use crate::engine::analysis::landscape::LandscapeResult;
use crate::engine::analysis::selective::SelectiveResult;
use crate::engine::analysis::sweep::SweepResult;
use crate::engine::analysis::trajectory::TrajectoryResult;
use crate::engine::train::TrainResult;

/// A results file of any analysis.
pub enum Results {
    Sweep(SweepResult),
    Dropout(DropoutResult),
    Landscape(LandscapeResult),
    Train(TrainResult),
    Selective(SelectiveResult),
    Trajectory(Box<TrajectoryResult>),
    /// `(eps, clean, adversarial)` from one or more `eval --json` outputs, and their configs.
    Evals(Vec<(f64, f64, f64)>, Vec<Value>),
}

impl Results {
    pub fn name(&self) -> &'static str {
        match self {
            Results::Sweep(_) => "sweep",
            Results::Dropout(_) => "dropout",
            Results::Landscape(_) => "landscape",
            Results::Train(_) => "train",
            Results::Selective(_) => "selective",
            Results::Trajectory(_) => "trajectory",
            Results::Evals(..) => "eval",
        }
    }

    /// The configuration that produced the result, for the figures' JSON sidecars.
    pub fn config(&self) -> Value {
        // Serialising these plain structs cannot fail; Null would only hide a bug, not lose data.
        fn json<T: serde::Serialize>(v: &T) -> Value {
            serde_json::to_value(v).unwrap_or(Value::Null)
        }
        match self {
            Results::Sweep(r) => json(&r.config),
            Results::Dropout(r) => json(&r.config),
            Results::Landscape(r) => r.sweeps.first().map_or(Value::Null, |s| json(&s.config)),
            Results::Train(r) => json(&r.config),
            Results::Selective(r) => json(&r.config),
            Results::Trajectory(r) => json(&r.config),
            Results::Evals(_, configs) => Value::Array(configs.clone()),
        }
    }
}

fn has(v: &Value, keys: &[&str]) -> bool {
    keys.iter().all(|k| v.get(k).is_some())
}

fn parse<T: DeserializeOwned>(v: Value, what: &str, path: &Path) -> Result<T> {
    serde_json::from_value(v)
        .with_context(|| format!("this looks like a {what} result but does not read as one: {}", path.display()))
}

/// One `eval --json` output as (eps, clean, adversarial) and its config.
fn eval_point(v: &Value, i: usize, path: &Path) -> Result<(f64, f64, f64)> {
    let num = |k: &str| v.get(k).and_then(Value::as_f64);
    match (num("eps"), num("clean_accuracy"), num("adversarial_accuracy")) {
        (Some(e), Some(c), Some(a)) => Ok((e, c, a)),
        _ => bail!(
            "entry {i} is not an attacked `eval --json` output (it needs eps, clean_accuracy and \
             adversarial_accuracy): {}",
            path.display()
        ),
    }
}

/// Reads `path` and recognises the result in it by its fields.
pub fn load(path: &Path) -> Result<Results> {
    let bytes = crate::engine::error::read_file(path)?;
    let v: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("the results are not JSON: {}", path.display()))?;
    let evals = |items: &[Value]| -> Result<Results> {
        let points = items.iter().enumerate().map(|(i, e)| eval_point(e, i, path)).collect::<Result<_>>()?;
        Ok(Results::Evals(points, items.iter().map(|e| e.get("config").cloned().unwrap_or(Value::Null)).collect()))
    };
    Ok(match &v {
        Value::Array(items) if !items.is_empty() => evals(items)?,
        // `eval --eps-curve`: its points under one config.
        Value::Object(o) if has(&v, &["points", "config"]) => {
            let items = o["points"]
                .as_array()
                .filter(|p| !p.is_empty())
                .with_context(|| format!("the eps curve has no points: {}", path.display()))?;
            let points = items.iter().enumerate().map(|(i, e)| eval_point(e, i, path)).collect::<Result<_>>()?;
            Results::Evals(points, vec![o["config"].clone(); items.len()])
        }
        o if has(o, &["records", "baseline"]) => {
            let sweep: SweepResult = parse(v, "sweep", path)?;
            for rec in &sweep.records {
                rec.check_consistent()
                    .map_err(|e| anyhow::anyhow!("the results are inconsistent: {e}: {}", path.display()))?;
            }
            Results::Sweep(sweep)
        }
        o if has(o, &["accuracy_per_kernel"]) => {
            let dropout: DropoutResult = parse(v, "dropout", path)?;
            dropout
                .check_consistent()
                .map_err(|e| anyhow::anyhow!("the results are inconsistent: {e}: {}", path.display()))?;
            Results::Dropout(dropout)
        }
        o if has(o, &["maps", "combined"]) => Results::Landscape(parse(v, "landscape", path)?),
        o if has(o, &["regular", "selective"]) => Results::Selective(parse(v, "selective", path)?),
        o if has(o, &["checkpoints", "consistently_fragile"]) => {
            let trajectory: TrajectoryResult = parse(v, "trajectory", path)?;
            trajectory
                .check_consistent()
                .map_err(|e| anyhow::anyhow!("the results are inconsistent: {e}: {}", path.display()))?;
            Results::Trajectory(Box::new(trajectory))
        }
        o if has(o, &["logs", "checkpoints"]) => Results::Train(parse(v, "train", path)?),
        o if has(o, &["eps", "clean_accuracy"]) => evals(std::slice::from_ref(o))?,
        _ => bail!(
            "no figures can be made from this file: expected the JSON written by sweep, dropout, landscape, \
             trajectory, train or selective (sweep.json, ...), or `eval --json` outputs: {}",
            path.display()
        ),
    })
}
