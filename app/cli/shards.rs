//! What a shard leaves beside its shares: `shard-I-of-N.json`, written last (atomically), so
//! that its presence says the share finished. `merge` reads these to combine the shards.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::eval_out::EvalKept;
use crate::engine::analysis::landscape::CheckpointEntry;
use crate::engine::analysis::shard::{Shard, SweepShard};
use crate::engine::analysis::trajectory::{RunIdentity, TrajectoryConfig};
use crate::engine::error::read_file;

/// `--shard`'s help, the one place the CLI says how shards are counted.
pub const SHARD_HELP: &str =
    "Run only share I of N of the work units (I counts from 0: 0/4 to 3/4); `merge` combines the shares' folders";

/// A shard's share of `trajectory`: the parts are in `checkpoints/FILE/*/shard-I-of-N.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryShard {
    pub shard: Shard,
    pub config: TrajectoryConfig,
    pub run: RunIdentity,
    pub checkpoints: Vec<CheckpointEntry>,
    /// Units of the run this shard ran.
    pub owned: usize,
}

/// A shard's share of `study`: each run's share is in `runs/NAME/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyShard {
    pub shard: Shard,
    /// The study file, as given.
    pub file: PathBuf,
    pub runs: Vec<String>,
    /// Units of the whole study, and those this shard ran.
    pub units: usize,
    pub owned: usize,
}

/// A shard's share of `sweep`: the share itself, with what it was run on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepShardFile {
    pub model: String,
    pub data: String,
    pub share: SweepShard,
}

/// A shard's share of `eval`: its batches, with what they were computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalShardFile {
    pub shard: Shard,
    pub kept: EvalKept,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Manifest {
    Eval(Box<EvalShardFile>),
    // Boxed: the shares carry whole attack and sweep configurations.
    Sweep(Box<SweepShardFile>),
    Trajectory(Box<TrajectoryShard>),
    Study(Box<StudyShard>),
}

impl Manifest {
    pub fn shard(&self) -> Shard {
        match self {
            Manifest::Eval(m) => m.shard,
            Manifest::Sweep(m) => m.share.shard,
            Manifest::Trajectory(m) => m.shard,
            Manifest::Study(m) => m.shard,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Manifest::Eval(_) => "eval",
            Manifest::Sweep(_) => "sweep",
            Manifest::Trajectory(_) => "trajectory",
            Manifest::Study(_) => "study",
        }
    }
}

/// Whether a file name is a shard's manifest or share: `shard-I-of-N.json`.
fn is_shard_file(name: &str) -> bool {
    name.strip_prefix("shard-")
        .and_then(|r| r.strip_suffix(".json"))
        .and_then(|r| r.split_once("-of-"))
        .is_some_and(|(i, n)| !i.is_empty() && !n.is_empty() && i.bytes().chain(n.bytes()).all(|b| b.is_ascii_digit()))
}

/// Reads one manifest, naming the file in its error.
pub fn read_manifest(path: &Path) -> Result<Manifest> {
    let bytes = read_file(path)?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a shard's manifest (shard-I-of-N.json)", path.display()))?;
    if path.file_name().and_then(|n| n.to_str()) != Some(m.shard().file_name().as_str()) {
        bail!("{} describes shard {}, which its name does not", path.display(), m.shard());
    }
    Ok(m)
}

/// The finished shards' manifests in a folder (several when shards share one).
pub fn manifests_in(dir: &Path) -> Result<Vec<(PathBuf, Manifest)>> {
    let list = std::fs::read_dir(dir).with_context(|| format!("cannot list the shard output {}", dir.display()))?;
    let mut found = Vec::new();
    for entry in list {
        let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(is_shard_file) {
            found.push(path);
        }
    }
    found.sort();
    if found.is_empty() {
        bail!(
            "{} holds no finished shard (no shard-I-of-N.json): is its shard still running, or was it stopped?",
            dir.display()
        );
    }
    found.into_iter().map(|p| Ok((dir.to_path_buf(), read_manifest(&p)?))).collect()
}

/// Checks the shards are all N of one split, each once.
pub fn check_cover<'a>(shards: impl IntoIterator<Item = (Shard, &'a Path)>) -> Result<usize> {
    let shards: Vec<(Shard, &Path)> = shards.into_iter().collect();
    let Some(&(first, _)) = shards.first() else { bail!("no shards to merge") };
    let count = first.count;
    let mut at: Vec<Option<&Path>> = vec![None; count];
    for &(s, dir) in &shards {
        if s.count != count {
            bail!("shard {s} (in {}) is of another split than shard {first}", dir.display());
        }
        if let Some(other) = at[s.index].replace(dir) {
            bail!("shard {s} is given twice: in {} and in {}", other.display(), dir.display());
        }
    }
    let missing: Vec<String> = (0..count).filter(|&i| at[i].is_none()).map(|i| format!("{i}/{count}")).collect();
    if !missing.is_empty() {
        bail!("shards {} are missing: merge needs the output of all {count}", missing.join(", "));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_files_are_named_by_index_and_count() {
        assert!(is_shard_file("shard-0-of-3.json"));
        for bad in
            ["shard-a-of-3.json", "shard--of-3.json", "shard-0-of-3.json.tmp", "trajectory.json", "shard-0-3.json"]
        {
            assert!(!is_shard_file(bad), "{bad}");
        }
    }
}
