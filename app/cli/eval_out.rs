//! What `eval --out` keeps: every finished batch's per-image outcomes (so whether the attack
//! fooled each image), written after each batch, so that a stopped evaluation (a long
//! ensemble) resumes where it stopped, shards (`--shard I/N`, batch b in shard b mod N) run on
//! other machines, and `merge` puts them together into exactly the single run's result.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::common::ModelArgs;
use super::parts::{DataStamp, read};
use crate::engine::analysis::shard::Shard;
use crate::engine::error::read_file;
use crate::engine::eval::{BatchEval, EvalConfig, EvalReport};
use crate::engine::model::Network;
use crate::export::tables::{Table, write_json};

/// The summary of a finished evaluation (what `--json` prints).
pub const RESULT_FILE: &str = "eval.json";
/// One row per image: its label, clean and adversarial predictions, and whether it stayed robust.
pub const OUTCOMES_FILE: &str = "outcomes.csv";

/// The batches of one evaluation finished so far, with what they were computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalKept {
    pub model: ModelStamp,
    pub data: DataStamp,
    pub config: EvalConfig,
    /// The share of the batches this file holds, when sharded.
    pub shard: Option<Shard>,
    pub batches: Vec<BatchEval>,
}

impl EvalKept {
    /// Whether `other` was computed from the same model, data and options (any shard).
    pub fn same_run(&self, other: &EvalKept) -> bool {
        (&self.model, &self.data, &self.config) == (&other.model, &other.data, &other.config)
    }
}

/// The model as far as reuse cares: its description and, for a file, its size and checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelStamp {
    pub model: String,
    pub bytes: u64,
    pub crc: u32,
}

impl ModelStamp {
    pub fn of(args: &ModelArgs, net: &Network) -> Result<Self> {
        let (bytes, crc) = match &args.model {
            Some(path) => {
                let b = read_file(path)?;
                (b.len() as u64, crc32fast::hash(&b))
            }
            None => (0, 0),
        };
        Ok(Self { model: args.describe(net), bytes, crc })
    }
}

/// The file a run keeps its batches in: `batches.json`, or `batches-shard-I-of-N.json`.
pub fn kept_file(out: &Path, shard: Option<Shard>) -> PathBuf {
    out.join(shard.map_or("batches.json".to_string(), |s| format!("batches-{}", s.file_name())))
}

/// The batches kept in `out` for this very run (none if the file is missing or was computed
/// from another model, data or options; the user is told which).
pub fn resume(out: &Path, fresh: &EvalKept) -> Vec<BatchEval> {
    let file = kept_file(out, fresh.shard);
    if !file.exists() {
        return Vec::new();
    }
    match read::<EvalKept>(&file) {
        Some(k) if k.same_run(fresh) && k.shard == fresh.shard => {
            let n = k.batches.len();
            eprintln!("resuming: {n} finished {} kept in {}", if n == 1 { "batch" } else { "batches" }, file.display());
            k.batches
        }
        Some(_) => {
            eprintln!("note: {} holds another model, data or options: starting afresh", file.display());
            Vec::new()
        }
        None => {
            eprintln!("note: {} cannot be read back: starting afresh", file.display());
            Vec::new()
        }
    }
}

/// Keeps the batches finished so far (atomically: a kill leaves the previous file whole).
pub fn keep(out: &Path, kept: &EvalKept) -> Result<()> {
    write_json(&kept_file(out, kept.shard), kept)
}

/// Writes a finished evaluation: `eval.json` (the summary) and `outcomes.csv`, with the
/// batches as an unsharded run keeps them, so that `eval --out` there reuses every one.
pub fn write_result(out: &Path, summary: &serde_json::Value, report: &EvalReport, kept: &EvalKept) -> Result<()> {
    keep(out, &EvalKept { shard: None, ..kept.clone() })?;
    let mut t = Table::new(&["index", "label", "clean_pred", "clean_conf", "adv_pred", "adv_conf", "robust"]);
    for (i, o) in report.outcomes.iter().enumerate() {
        let opt = |v: Option<String>| v.unwrap_or_default();
        t.row([
            i.to_string(),
            o.label.to_string(),
            o.clean_pred.to_string(),
            o.clean_conf.to_string(),
            opt(o.adv_pred.map(|p| p.to_string())),
            opt(o.adv_conf.map(|c| c.to_string())),
            opt(o.adv_pred.map(|p| (p == o.label).to_string())),
        ]);
    }
    t.write(&out.join(OUTCOMES_FILE))?;
    write_json(&out.join(RESULT_FILE), summary)
}

/// The shards' kept batches (their manifests) as one evaluation: all from one run, each batch
/// once.
pub fn merge(shards: &[(PathBuf, EvalKept)]) -> Result<EvalKept> {
    let (first_dir, first) = &shards[0];
    if let Some((dir, k)) = shards.iter().find(|(_, k)| !k.same_run(first)) {
        bail!(
            "shard {} (in {}) evaluated another model, data or options than shard {} (in {}): merge the shards of one run",
            k.shard.map_or("-".into(), |s| s.to_string()),
            dir.display(),
            first.shard.map_or("-".into(), |s| s.to_string()),
            first_dir.display()
        );
    }
    let mut batches: Vec<BatchEval> = shards.iter().flat_map(|(_, k)| k.batches.iter().cloned()).collect();
    batches.sort_by_key(|b| b.index);
    for (dir, k) in shards {
        let Some(s) = k.shard else { continue };
        if let Some(b) = k.batches.iter().find(|b| !s.owns(b.index)) {
            bail!("shard {s} (in {}) holds batch {}, which is not its own", dir.display(), b.index);
        }
    }
    Ok(EvalKept { shard: None, batches, ..first.clone() })
}
