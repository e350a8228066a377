//! `merge`: the shards' output folders combined into exactly the result one process makes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::analysis::print_sweep;
use super::common::prepare_out;
use super::eval::{print_report, summary_json};
use super::eval_out::{self, EvalKept};
use super::parts::{DirStore, Source, read, write_unit};
use super::shards::{Manifest, StudyShard, SweepShardFile, TrajectoryShard, check_cover, manifests_in, read_manifest};
use super::study;
use super::trajectory::print_summary;
use crate::engine::analysis::dropout::DropoutResult;
use crate::engine::analysis::shard::{SweepShard, merge_sweep};
use crate::engine::analysis::trajectory::{self, CheckpointShares, Part, TrajectoryResult};
use crate::engine::error::read_file;
use crate::engine::eval::assemble;
use crate::export::format::group;
use crate::export::tables;

#[derive(Args, Debug)]
#[command(
    after_long_help = "Each SHARD_OUT is the --out folder of one or more shards (`eval`, `sweep`, `trajectory` or \
`study` run with --shard I/N); together they must hold every shard of one split exactly once. OUT gets what the \
unsharded command writes, so running that command on OUT afterwards reuses every part."
)]
pub struct MergeArgs {
    /// The shards' output folders
    #[arg(required = true, value_name = "SHARD_OUT")]
    pub shards: Vec<PathBuf>,
    /// Folder for the combined result
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(a: &MergeArgs) -> Result<()> {
    let mut found = Vec::new();
    for dir in &a.shards {
        found.extend(manifests_in(dir)?);
    }
    let kind = found[0].1.kind();
    if let Some((dir, m)) = found.iter().find(|(_, m)| m.kind() != kind) {
        bail!(
            "{} holds a shard of `{}`, the others are of `{kind}`: merge one command's shards",
            dir.display(),
            m.kind()
        );
    }
    check_cover(found.iter().map(|(dir, m)| (m.shard(), dir.as_path())))?;
    prepare_out(&a.out)?;
    match kind {
        "eval" => {
            let shards: Vec<(PathBuf, EvalKept)> = found
                .into_iter()
                .filter_map(|(dir, m)| if let Manifest::Eval(e) = m { Some((dir, e.kept)) } else { None })
                .collect();
            merge_eval(&shards, &a.out)
        }
        "sweep" => {
            let shares: Vec<SweepShardFile> = found
                .into_iter()
                .filter_map(|(_, m)| if let Manifest::Sweep(s) = m { Some(*s) } else { None })
                .collect();
            merge_sweeps(&shares, &a.out)
        }
        "trajectory" => {
            let shards: Vec<(PathBuf, TrajectoryShard)> = found
                .into_iter()
                .filter_map(|(dir, m)| if let Manifest::Trajectory(t) = m { Some((dir, *t)) } else { None })
                .collect();
            let r = merge_trajectory(&shards, &a.out)?;
            print_summary(&r);
            println!("wrote {}", a.out.join(trajectory::RESULT_FILE).display());
            Ok(())
        }
        _ => {
            let shards: Vec<(PathBuf, StudyShard)> = found
                .into_iter()
                .filter_map(|(dir, m)| if let Manifest::Study(s) = m { Some((dir, *s)) } else { None })
                .collect();
            merge_study(&shards, &a.out)
        }
    }
}

fn merge_eval(shards: &[(PathBuf, EvalKept)], out: &Path) -> Result<()> {
    let kept = eval_out::merge(shards)?;
    let report = assemble(kept.data.images, &kept.config, &kept.batches)?;
    let summary = summary_json(&report, &kept.config, &kept.model.model, &kept.data.data);
    eval_out::write_result(out, &summary, &report, &kept)?;
    println!("model  {}", kept.model.model);
    println!("data   {} ({} images)", kept.data.data, group(kept.data.images));
    print_report(&report, &kept.config, None);
    println!("wrote {}", out.join(eval_out::RESULT_FILE).display());
    Ok(())
}

fn merge_sweeps(shares: &[SweepShardFile], out: &Path) -> Result<()> {
    let first = &shares[0];
    if let Some(s) = shares.iter().find(|s| s.model != first.model || s.data != first.data) {
        bail!(
            "shard {} swept {} on {}, shard {} {} on {}",
            s.share.shard,
            s.model,
            s.data,
            first.share.shard,
            first.model,
            first.data
        );
    }
    let parts: Vec<SweepShard> = shares.iter().map(|s| s.share.clone()).collect();
    let r = merge_sweep(&parts)?;
    tables::write_sweep(out, &r)?;
    println!("model  {}", first.model);
    println!("data   {}", first.data);
    print_sweep(&r);
    println!("wrote {}", out.join("sweep.json").display());
    Ok(())
}

/// A share file of one checkpoint's part from one shard's folder: None when that shard ran
/// none of the part, an error when the file is there but unreadable.
fn share<T: serde::de::DeserializeOwned>(dir: &Path, m: &TrajectoryShard, c: usize, part: Part) -> Result<Option<T>> {
    let file = DirStore::unit(dir, &m.checkpoints[c]).join(part.name()).join(m.shard.file_name());
    if !file.exists() {
        return Ok(None);
    }
    let bytes = read_file(&file)?;
    serde_json::from_slice(&bytes).map(Some).with_context(|| format!("{} is not a shard's share", file.display()))
}

/// Merges the shards of one trajectory (the folders and their manifests) into `out`.
pub fn merge_trajectory(shards: &[(PathBuf, TrajectoryShard)], out: &Path) -> Result<TrajectoryResult> {
    let (first_dir, first) = &shards[0];
    for (dir, m) in shards {
        let differs = if m.config != first.config {
            Some("options")
        } else if m.run != first.run {
            Some("model or data")
        } else if m.checkpoints != first.checkpoints {
            Some("checkpoints")
        } else {
            None
        };
        if let Some(what) = differs {
            bail!(
                "shard {} (in {}) and shard {} (in {}) characterised different {what}: merge the shards of one run",
                m.shard,
                dir.display(),
                first.shard,
                first_dir.display()
            );
        }
    }
    let mut all = Vec::new();
    let mut sources = Vec::new();
    for (c, entry) in first.checkpoints.iter().enumerate() {
        let mut shares = CheckpointShares { sweep: Vec::new(), global: Vec::new(), dropout: Vec::new() };
        let mut source: Option<Source> = None;
        for (dir, m) in shards {
            shares.sweep.extend(share::<SweepShard>(dir, m, c, Part::Sweep)?);
            shares.global.extend(share::<SweepShard>(dir, m, c, Part::Global)?);
            shares.dropout.extend(share::<DropoutResult>(dir, m, c, Part::Dropout)?);
            let file = DirStore::unit(dir, entry).join(super::parts::SOURCE_FILE);
            if let Some(s) = read::<Source>(&file) {
                match &source {
                    Some(first) if (first.bytes, first.stamp()) != (s.bytes, s.stamp()) => bail!(
                        "the shards characterised epoch {} from different files or data ({} and {})",
                        entry.epoch,
                        first.checkpoint.display(),
                        s.checkpoint.display()
                    ),
                    Some(_) => {}
                    None => source = Some(s),
                }
            }
        }
        let source = source
            .with_context(|| format!("no shard kept the source of epoch {} ({})", entry.epoch, entry.path.display()))?;
        sources.push(source);
        all.push(shares);
    }
    let r = trajectory::merge(first.config.clone(), first.run.clone(), &first.checkpoints, all)?;
    for ((c, e), source) in first.checkpoints.iter().zip(&r.checkpoints).zip(&sources) {
        write_unit(out, c, source, &e.sweep, &e.global, &e.dropout)?;
    }
    tables::write_trajectory(out, &r)?;
    Ok(r)
}

fn merge_study(shards: &[(PathBuf, StudyShard)], out: &Path) -> Result<()> {
    let (first_dir, first) = &shards[0];
    if let Some((dir, s)) = shards.iter().find(|(_, s)| s.runs != first.runs) {
        bail!(
            "shard {} (in {}) ran other runs than shard {} (in {})",
            s.shard,
            dir.display(),
            first.shard,
            first_dir.display()
        );
    }
    let mut folders = Vec::new();
    for name in &first.runs {
        let mut run_shards = Vec::new();
        for (dir, s) in shards {
            let file = study::run_dir(dir, name).join(s.shard.file_name());
            match read_manifest(&file)? {
                Manifest::Trajectory(t) => run_shards.push((study::run_dir(dir, name), *t)),
                other => bail!("{} is a `{}` shard, not a run's", file.display(), other.kind()),
            }
        }
        let target = study::run_dir(out, name);
        prepare_out(&target)?;
        let r = merge_trajectory(&run_shards, &target)?;
        println!("run {name}: {} ({} checkpoints)", r.run.label(), r.checkpoints.len());
        folders.push(target);
    }
    study::finish(&first.file, &first.runs, &folders, None, out)
}
