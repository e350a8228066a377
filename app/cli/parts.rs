//! Where `trajectory` keeps each checkpoint's finished parts, as the single-checkpoint
//! commands write them, so that a stopped run resumes and a changed checkpoint or dataset
//! is computed again: `OUT/checkpoints/FILE/sweep/` (as `sweep --out`), `global/`
//! (`sweep --scope global --out`), `dropout/` (`dropout --out`) and `source.json`. A shard
//! keeps its shares in the same folders, named by shard (`sweep/shard-1-of-3.json`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::EngineError;
use crate::engine::analysis::dropout::DropoutResult;
use crate::engine::analysis::landscape::CheckpointEntry;
use crate::engine::analysis::shard::{Shard, SweepShard};
use crate::engine::analysis::sweep::SweepResult;
use crate::engine::analysis::trajectory::{KeptParts, Part, PartStore};
use crate::engine::data::Dataset;
use crate::engine::error::read_file;
use crate::export::tables::{self, write_json};

/// The dataset a run is characterised on, as far as reuse cares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataStamp {
    pub data: String,
    pub images: usize,
    /// CRC-32 of the pixels and labels.
    pub data_crc: u32,
}

impl DataStamp {
    pub fn of(data: &Dataset) -> Self {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&data.images);
        for l in &data.labels {
            crc.update(&l.to_le_bytes());
        }
        Self { data: data.name.clone(), images: data.len(), data_crc: crc.finalize() }
    }
}

/// What a checkpoint's kept parts were computed from: if the checkpoint file or the data
/// differ now, nothing kept for it is reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub checkpoint: PathBuf,
    pub bytes: u64,
    pub modified_ns: u128,
    pub data: String,
    pub images: usize,
    pub data_crc: u32,
}

impl Source {
    pub fn stamp(&self) -> DataStamp {
        DataStamp { data: self.data.clone(), images: self.images, data_crc: self.data_crc }
    }
}

pub const SOURCE_FILE: &str = "source.json";

pub struct DirStore {
    root: PathBuf,
    stamp: DataStamp,
}

impl DirStore {
    pub fn new(out: &Path, stamp: DataStamp) -> Self {
        Self { root: out.join("checkpoints"), stamp }
    }

    /// The folder of one checkpoint's parts.
    pub fn unit(out: &Path, c: &CheckpointEntry) -> PathBuf {
        out.join("checkpoints").join(c.path.file_name().unwrap_or_default())
    }

    fn unit_dir(&self, c: &CheckpointEntry) -> PathBuf {
        self.root.join(c.path.file_name().unwrap_or_default())
    }

    fn source(&self, c: &CheckpointEntry) -> Option<Source> {
        let meta = std::fs::metadata(&c.path).ok()?;
        let modified_ns = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
        let DataStamp { data, images, data_crc } = self.stamp.clone();
        Some(Source { checkpoint: c.path.clone(), bytes: meta.len(), modified_ns, data, images, data_crc })
    }

    /// Whether what is kept for `c` was computed from the checkpoint and data as they are now.
    fn holds_current(&self, c: &CheckpointEntry) -> bool {
        let source = self.source(c);
        source.is_some() && read::<Source>(&self.unit_dir(c).join(SOURCE_FILE)) == source
    }

    /// Makes the unit's folder hold parts of the current source only: a changed checkpoint
    /// or dataset clears what was kept before the first new part is written.
    fn claim(&self, c: &CheckpointEntry) -> crate::engine::Result<PathBuf> {
        let unit = self.unit_dir(c);
        if !self.holds_current(c) {
            let source = self.source(c).ok_or_else(|| {
                EngineError::io("read", &c.path, std::io::Error::other("the checkpoint cannot be read any more"))
            })?;
            if unit.exists() {
                std::fs::remove_dir_all(&unit).map_err(|e| EngineError::io("clear the kept parts in", &unit, e))?;
            }
            std::fs::create_dir_all(&unit).map_err(|e| EngineError::io("create", &unit, e))?;
            let file = unit.join(SOURCE_FILE);
            write_json(&file, &source).map_err(|e| engine_error(&file, e))?;
        }
        Ok(unit)
    }

    fn part_dir(&self, c: &CheckpointEntry, part: Part) -> crate::engine::Result<PathBuf> {
        let dir = self.claim(c)?.join(part.name());
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("create", &dir, e))?;
        Ok(dir)
    }

    fn kept_file<T: serde::de::DeserializeOwned>(&self, c: &CheckpointEntry, part: Part, name: &str) -> Option<T> {
        if !self.holds_current(c) {
            return None;
        }
        read(&self.unit_dir(c).join(part.name()).join(name))
    }
}

/// A JSON file read back, or None when it is missing or not what it should be.
pub fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&read_file(path).ok()?).ok()
}

fn sweep_whole(r: SweepResult) -> Option<SweepResult> {
    r.records.iter().all(|rec| rec.check_consistent().is_ok()).then_some(r)
}

impl PartStore for DirStore {
    fn kept(&self, c: &CheckpointEntry) -> KeptParts {
        KeptParts {
            sweep: self.kept_file(c, Part::Sweep, "sweep.json").and_then(sweep_whole),
            global: self.kept_file(c, Part::Global, "sweep.json").and_then(sweep_whole),
            dropout: self
                .kept_file::<DropoutResult>(c, Part::Dropout, "dropout.json")
                .filter(|r| r.check_consistent().is_ok()),
        }
    }

    fn keep_sweep(&self, c: &CheckpointEntry, part: Part, r: &SweepResult) -> crate::engine::Result<()> {
        let dir = self.part_dir(c, part)?;
        tables::write_sweep(&dir, r).map_err(|e| engine_error(&dir, e))
    }

    fn keep_dropout(&self, c: &CheckpointEntry, r: &DropoutResult) -> crate::engine::Result<()> {
        let dir = self.part_dir(c, Part::Dropout)?;
        tables::write_dropout(&dir, r).map_err(|e| engine_error(&dir, e))
    }

    fn kept_share(&self, c: &CheckpointEntry, part: Part, shard: Shard) -> Option<SweepShard> {
        let share: SweepShard = self.kept_file(c, part, &shard.file_name())?;
        (share.shard == shard && share.result.records.iter().all(|rec| rec.check_consistent().is_ok())).then_some(share)
    }

    fn keep_share(&self, c: &CheckpointEntry, part: Part, share: &SweepShard) -> crate::engine::Result<()> {
        let file = self.part_dir(c, part)?.join(share.shard.file_name());
        write_json(&file, share).map_err(|e| engine_error(&file, e))
    }

    fn kept_dropout_share(&self, c: &CheckpointEntry, shard: Shard) -> Option<DropoutResult> {
        self.kept_file::<DropoutResult>(c, Part::Dropout, &shard.file_name()).filter(|r| r.check_consistent().is_ok())
    }

    fn keep_dropout_share(&self, c: &CheckpointEntry, shard: Shard, r: &DropoutResult) -> crate::engine::Result<()> {
        let file = self.part_dir(c, Part::Dropout)?.join(shard.file_name());
        write_json(&file, r).map_err(|e| engine_error(&file, e))
    }
}

/// A checkpoint's merged parts written as an unsharded run keeps them, with the source the
/// shards recorded, so that `trajectory` run on the merged folder reuses every part.
pub fn write_unit(
    out: &Path,
    c: &CheckpointEntry,
    source: &Source,
    sweep: &SweepResult,
    global: &SweepResult,
    dropout: &DropoutResult,
) -> anyhow::Result<()> {
    let unit = DirStore::unit(out, c);
    let source_file = unit.join(SOURCE_FILE);
    if source_file.exists() {
        std::fs::remove_file(&source_file).map_err(|e| EngineError::io("replace", &source_file, e))?;
    }
    for part in [Part::Sweep, Part::Global, Part::Dropout] {
        let dir = unit.join(part.name());
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("create", &dir, e))?;
    }
    tables::write_sweep(&unit.join(Part::Sweep.name()), sweep)?;
    tables::write_sweep(&unit.join(Part::Global.name()), global)?;
    tables::write_dropout(&unit.join(Part::Dropout.name()), dropout)?;
    // Last: the parts count as current only once they are all there.
    write_json(&source_file, source)
}

/// A table writer's error as the engine's: its own when it is one, else a failed write in `dir`.
fn engine_error(dir: &Path, e: anyhow::Error) -> EngineError {
    e.downcast::<EngineError>()
        .unwrap_or_else(|e| EngineError::io("write", dir, std::io::Error::other(format!("{e:#}"))))
}
