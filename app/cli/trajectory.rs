//! `trajectory`: every checkpoint of a training run characterised, with the through-training
//! summaries; each finished part is kept under `OUT/checkpoints/`, so a stopped run resumes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::analysis::{OpenedRun, RunArgs, SweepArgs, attack_config, open_run};
use super::common::{prepare_out, result_dir};
use super::parts::{DataStamp, DirStore};
use super::progress::{self, Bar, ctrl_c_flag};
use super::shards::{Manifest, SHARD_HELP, TrajectoryShard};
use crate::engine::analysis::dropout::DropoutConfig;
use crate::engine::analysis::shard::{Shard, Units};
use crate::engine::analysis::sweep::Scope;
use crate::engine::analysis::trajectory::{self, Part, Run, RunIdentity, TrajectoryConfig};
use crate::engine::attack::AttackKind;
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
    /// What comparisons call the run, beside its architecture (default: the checkpoint folder's name)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    #[arg(long, value_name = "I/N", help = SHARD_HELP)]
    pub shard: Option<Shard>,
    /// Folder for trajectory.json, its tables and every checkpoint's parts
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: &TrajectoryCmd) -> Result<()> {
    let units = a.shard.map(Units::new);
    let cancelled = characterise(a, units.as_ref())?;
    let kept = match units {
        None => "the checkpoints and parts finished so far are kept",
        Some(_) => "the shares finished so far are kept",
    };
    progress::finished(cancelled, kept)
}

/// Characterises the run `a` names, or with `units` the share of it they own (numbered after
/// the units already numbered, as in a study); says whether it was stopped.
pub(super) fn characterise(a: &TrajectoryCmd, units: Option<&Units>) -> Result<bool> {
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
    let store = DirStore::new(&a.out, DataStamp::of(&data));
    let (bar, stop) = (Bar::new(), ctrl_c_flag());
    let share = units.map_or(String::new(), |u| format!(" (shard {})", u.shard()));
    eprintln!(
        "characterising {} checkpoints on {} images{share}; Ctrl-C stops after the current batch and keeps the finished parts",
        entries.len(),
        data.len()
    );
    let announce = |i: usize, part: Part| {
        bar.suspend(|| {
            eprintln!("checkpoint {}/{} (epoch {}): {}", i + 1, entries.len(), entries[i].epoch, part.name())
        })
    };
    let folder = a.run.checkpoints.canonicalize().unwrap_or_else(|_| a.run.checkpoints.clone());
    let name = a.name.clone().unwrap_or_else(|| {
        folder.file_name().map_or_else(|| folder.display().to_string(), |n| n.to_string_lossy().into_owned())
    });
    let identity = RunIdentity {
        model: format!("{name} ({})", first.card.architecture),
        parameters: first.params.parameter_count(),
        data: data.name.clone(),
    };
    let run = Run { checkpoints: &entries, data: &data, identity };
    let ctrl = Ctrl { progress: &bar, stop: &stop };
    if let Some(units) = units {
        let shard = units.shard();
        let manifest = a.out.join(shard.file_name());
        // A manifest says the share is finished: an earlier one no longer does.
        if manifest.exists() {
            std::fs::remove_file(&manifest).with_context(|| format!("replacing {}", manifest.display()))?;
        }
        let done = trajectory::run_share(&run, &cfg, &dev, &store, units, ctrl, &announce);
        bar.finish();
        let done = done?;
        println!(
            "shard {shard}: {} of the run's units are this shard's; {} were kept from an earlier run",
            done.owned, done.reused
        );
        if !done.cancelled {
            let m = Manifest::Trajectory(Box::new(TrajectoryShard {
                shard,
                config: cfg,
                run: run.identity,
                checkpoints: entries.clone(),
                owned: done.owned,
            }));
            write_json(&manifest, &m)?;
            println!("wrote {}", manifest.display());
        }
        return Ok(done.cancelled);
    }
    let r = trajectory::run(&run, &cfg, &dev, &store, ctrl, &announce);
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
    Ok(r.cancelled)
}

pub(super) fn print_summary(r: &trajectory::TrajectoryResult) {
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
