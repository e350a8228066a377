//! `trajectory`: every checkpoint of a training run characterised, with the through-training
//! summaries; each finished part is kept under `OUT/checkpoints/`, so a stopped run resumes.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::analysis::{OpenedRun, RunArgs, SweepArgs, attack_config, open_run};
use super::common::{prepare_out, result_dir};
use super::progress::{self, Bar, ctrl_c_flag};
use crate::engine::analysis::dropout::{DropoutConfig, DropoutResult};
use crate::engine::analysis::landscape::CheckpointEntry;
use crate::engine::analysis::sweep::{Scope, SweepResult};
use crate::engine::analysis::trajectory::{self, KeptParts, Part, PartStore, Run, RunIdentity, TrajectoryConfig};
use crate::engine::attack::AttackKind;
use crate::engine::data::Dataset;
use crate::engine::error::{EngineError, read_file};
use crate::engine::progress::Ctrl;
use crate::export::format::group;
use crate::export::tables::{self, write_json};

#[derive(Args, Debug)]
pub struct TrajectoryCmd {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// Convolution layer for nodal dropout (default: the first)
    #[arg(long, value_name = "NAME")]
    pub dropout_layer: Option<String>,
    /// Folder for trajectory.json, its tables and every checkpoint's parts
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: &TrajectoryCmd) -> Result<()> {
    let OpenedRun { device: dev, entries, first, data } = open_run(&a.run)?;
    let attack = attack_config(&a.sweep.attack_opts, a.sweep.attack, &first, &data)?;
    // Nodal dropout measures targeting with FGSM, as `dropout` does.
    let fgsm = attack_config(&a.sweep.attack_opts, AttackKind::Fgsm, &first, &data)?;
    let dropout = DropoutConfig {
        layer: a.dropout_layer.clone(),
        attack: fgsm,
        bn: a.sweep.batches.bn,
        batch: a.sweep.batches.batch,
    };
    let cfg = TrajectoryConfig::new(a.sweep.config(Scope::Local, attack), dropout);
    cfg.sweep.validate(&first)?;
    prepare_out(&a.out)?;
    let store = DirStore::new(&a.out, &data);
    let (bar, stop) = (Bar::new(), ctrl_c_flag());
    eprintln!(
        "characterising {} checkpoints on {} images; Ctrl-C stops after the current batch and keeps the finished parts",
        entries.len(),
        data.len()
    );
    let announce = |i: usize, part: Part| {
        bar.suspend(|| {
            eprintln!("checkpoint {}/{} (epoch {}): {}", i + 1, entries.len(), entries[i].epoch, part.name())
        })
    };
    let folder = a.run.checkpoints.canonicalize().unwrap_or_else(|_| a.run.checkpoints.clone());
    let identity = RunIdentity {
        model: format!(
            "{} ({})",
            folder.file_name().map_or_else(|| folder.display().to_string(), |n| n.to_string_lossy().into_owned()),
            first.card.architecture
        ),
        parameters: first.params.parameter_count(),
        data: data.name.clone(),
    };
    let run = Run { checkpoints: &entries, data: &data, identity };
    let r = trajectory::run(&run, &cfg, &dev, &store, Ctrl { progress: &bar, stop: &stop }, &announce);
    bar.finish();
    let r = r?;
    let dir = result_dir(&a.out, trajectory::RESULT_FILE, r.cancelled)?;
    tables::write_trajectory(&dir, &r)?;
    println!("run    {} ({} parameters, {} images)", r.run.label(), group(r.run.parameters), group(data.len()));
    println!(
        "{} of {} checkpoints characterised (epochs {:?}); {} of {} parts reused from an earlier run",
        r.checkpoints.len(),
        entries.len(),
        r.epochs,
        r.reused,
        3 * entries.len()
    );
    print_summary(&r);
    println!("wrote {}", dir.join(trajectory::RESULT_FILE).display());
    progress::finished(r.cancelled, "the checkpoints and parts finished so far are kept")
}

fn print_summary(r: &trajectory::TrajectoryResult) {
    let k = &r.kernels;
    println!("\nnodal dropout of `{}` ({} kernels), per epoch:", k.layer, k.kernels);
    for (i, epoch) in r.epochs.iter().enumerate() {
        let d = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.5}"));
        println!(
            "  epoch {epoch:>4}  fragile {:>5.1} %  null {:>5.1} %  d_F {}  d_N {}",
            100.0 * k.fragile_fraction[i],
            100.0 * k.null_fraction[i],
            d(k.d_fragile[i]),
            d(k.d_other[i])
        );
    }
    println!("consistently fragile kernels: {:?}", r.consistently_fragile);
    println!("layers fragile at every checkpoint (consistently targeted): {:?}", r.consistently_targeted);
    let change: Vec<String> = r.score_change.iter().map(|c| c.map_or("-".into(), |c| format!("{c:.4}"))).collect();
    println!("mean |change| of local S_adv between checkpoints: [{}]", change.join(", "));
}

/// What a checkpoint's kept parts were computed from: if the checkpoint file or the data
/// differ now, nothing kept for it is reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Source {
    checkpoint: PathBuf,
    bytes: u64,
    modified_ns: u128,
    data: String,
    images: usize,
    /// CRC-32 of the pixels and labels.
    data_crc: u32,
}

/// Parts kept as the single-checkpoint commands write them: `OUT/checkpoints/FILE/sweep/`
/// (as `sweep --out`), `global/` (`sweep --scope global --out`) and `dropout/`
/// (`dropout --out`), with `source.json` saying what they were computed from.
struct DirStore {
    root: PathBuf,
    data: String,
    images: usize,
    data_crc: u32,
}

impl DirStore {
    fn new(out: &Path, data: &Dataset) -> Self {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&data.images);
        for l in &data.labels {
            crc.update(&l.to_le_bytes());
        }
        Self { root: out.join("checkpoints"), data: data.name.clone(), images: data.len(), data_crc: crc.finalize() }
    }

    fn unit(&self, c: &CheckpointEntry) -> PathBuf {
        self.root.join(c.path.file_name().unwrap_or_default())
    }

    fn source(&self, c: &CheckpointEntry) -> Option<Source> {
        let meta = std::fs::metadata(&c.path).ok()?;
        let modified_ns = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
        Some(Source {
            checkpoint: c.path.clone(),
            bytes: meta.len(),
            modified_ns,
            data: self.data.clone(),
            images: self.images,
            data_crc: self.data_crc,
        })
    }

    /// Whether what is kept for `c` was computed from the checkpoint and data as they are now.
    fn holds_current(&self, c: &CheckpointEntry) -> bool {
        let source = self.source(c);
        source.is_some() && Self::read::<Source>(&self.unit(c).join("source.json")) == source
    }

    fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
        serde_json::from_slice(&read_file(path).ok()?).ok()
    }

    /// Makes the unit's folder hold parts of the current source only: a changed checkpoint
    /// or dataset clears what was kept before the first new part is written.
    fn claim(&self, c: &CheckpointEntry) -> crate::engine::Result<PathBuf> {
        let unit = self.unit(c);
        if !self.holds_current(c) {
            if unit.exists() {
                std::fs::remove_dir_all(&unit).map_err(|e| EngineError::io("clear the kept parts in", &unit, e))?;
            }
            std::fs::create_dir_all(&unit).map_err(|e| EngineError::io("create", &unit, e))?;
            let file = unit.join("source.json");
            write_json(&file, &self.source(c)).map_err(|e| engine_error(&file, e))?;
        }
        Ok(unit)
    }

    fn part_dir(&self, c: &CheckpointEntry, part: Part) -> crate::engine::Result<PathBuf> {
        let dir = self.claim(c)?.join(part.name());
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("create", &dir, e))?;
        Ok(dir)
    }
}

impl PartStore for DirStore {
    fn kept(&self, c: &CheckpointEntry) -> KeptParts {
        if !self.holds_current(c) {
            return KeptParts::default();
        }
        let unit = self.unit(c);
        let sweep = |part: Part| {
            Self::read::<SweepResult>(&unit.join(part.name()).join("sweep.json"))
                .filter(|r| r.records.iter().all(|rec| rec.check_consistent().is_ok()))
        };
        KeptParts {
            sweep: sweep(Part::Sweep),
            global: sweep(Part::Global),
            dropout: Self::read::<DropoutResult>(&unit.join("dropout").join("dropout.json"))
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
}

/// A table writer's error as the engine's: its own when it is one, else a failed write in `dir`.
fn engine_error(dir: &Path, e: anyhow::Error) -> EngineError {
    e.downcast::<EngineError>()
        .unwrap_or_else(|e| EngineError::io("write", dir, std::io::Error::other(format!("{e:#}"))))
}
