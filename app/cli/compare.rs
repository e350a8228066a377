//! `compare`: runs through training side by side, headless. Figures of all runs share their
//! axes; the figure each run gets on its own is drawn for every run on one scale.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::common::prepare_out;
use super::figure::file_safe;
use super::figure::results::{self, Results};
use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::masks::GLOBAL;
use crate::engine::analysis::study;
use crate::engine::analysis::trajectory::{self, TrajectoryResult};
use crate::export::figures::builders::{self, Built, Score, View};
use crate::export::figures::export;
use crate::export::tables::write_json;

#[derive(Args, Debug)]
#[command(after_long_help = "Runs are numbered in the order given (run1, run2, ...); compare.json names each run by \
its model and dataset and lists every figure written. Each figure is STEM.png (2x), STEM.svg, STEM.csv and STEM.json.")]
pub struct CompareArgs {
    /// Results of `trajectory` (trajectory.json, or the folder holding it), or of `study` (study.json,
    /// or its folder: every run of the study)
    #[arg(required = true, value_name = "RESULT")]
    pub results: Vec<PathBuf>,
    /// Layers whose landscape and compression are drawn for every run (default: the layers all
    /// runs share; none when their architectures differ)
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<String>,
    /// Filter of the landscape and compression figures
    #[arg(long, value_enum, default_value_t = FilterKind::H1)]
    pub filter: FilterKind,
    /// Accuracy the landscape and compression figures follow
    #[arg(long, value_enum, default_value_t = View::Adversarial)]
    pub view: View,
    /// Folder for the figures and compare.json
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Reads one run's trajectory result.
fn load(path: &Path) -> Result<TrajectoryResult> {
    let file = trajectory::result_file(path);
    match results::load(&file)? {
        Results::Trajectory(t) if t.checkpoints.is_empty() => {
            bail!("this trajectory has no finished checkpoint to compare: {}", file.display())
        }
        Results::Trajectory(t) => Ok(*t),
        other => bail!(
            "compare reads the results of `trajectory` (trajectory.json); this is a {} result: {}",
            other.name(),
            file.display()
        ),
    }
}

/// The local layers every run has.
fn shared_layers(runs: &[&TrajectoryResult]) -> Vec<String> {
    let layers = |r: &TrajectoryResult| r.layer_classes.iter().map(|c| c.layer.clone()).collect::<Vec<_>>();
    let first = layers(runs[0]);
    first.into_iter().filter(|l| runs.iter().all(|r| layers(r).contains(l))).collect()
}

struct Writer<'a> {
    out: &'a Path,
    runs: &'a [&'a TrajectoryResult],
    sources: &'a [PathBuf],
    written: Vec<String>,
}

impl Writer<'_> {
    fn write(&mut self, stem: &str, (figure, table): Built, runs: &[usize]) -> Result<()> {
        let sidecar = json!({
            "figure": stem,
            "runs": runs.iter().map(|&i| json!({
                "run": i + 1,
                "label": self.runs[i].run.label(),
                "results": self.sources[i],
                "config": self.runs[i].config,
            })).collect::<Vec<Value>>(),
            "generator": concat!("fragility-explorer ", env!("CARGO_PKG_VERSION")),
        });
        export(&figure, table, &sidecar, self.out, stem)?;
        println!("wrote {}", self.out.join(format!("{stem}.{{png,svg,csv,json}}")).display());
        self.written.push(stem.to_string());
        Ok(())
    }

    /// The same figure for every run, brought to one scale, the run named in its title.
    fn per_run(&mut self, stem: &str, build: impl Fn(&TrajectoryResult) -> Result<Built>) -> Result<()> {
        for (i, built) in builders::per_run(self.runs, build).into_iter().enumerate() {
            match built {
                Ok(built) => self.write(&format!("compare-run{}-{stem}", i + 1), built, &[i])?,
                Err(e) => eprintln!("skipped {stem} of run {}: {e:#}", i + 1),
            }
        }
        Ok(())
    }
}

pub fn run(a: &CompareArgs) -> Result<()> {
    let mut sources = Vec::new();
    for p in &a.results {
        sources.extend(study::results_named(p)?);
    }
    let loaded: Vec<TrajectoryResult> = sources.iter().map(|p| load(p)).collect::<Result<_>>()?;
    prepare_out(&a.out)?;
    let runs: Vec<&TrajectoryResult> = loaded.iter().collect();
    let all: Vec<usize> = (0..runs.len()).collect();
    let mut w = Writer { out: &a.out, runs: &runs, sources: &sources, written: Vec::new() };

    for score in [Score::Clean, Score::Adv, Score::Diff] {
        match builders::compare_global_scores(&runs, score) {
            Ok(built) => w.write(&format!("compare-global-{}", score.slug()), built, &all)?,
            Err(e) => eprintln!("skipped the global {}: {e:#}", score.symbol()),
        }
    }
    w.write("compare-fragile-fraction", builders::compare_fragile_fraction(&runs), &all)?;
    w.write("compare-fragile-vs-size", builders::compare_fragile_vs_size(&runs), &all)?;
    w.write("compare-score-change", builders::compare_score_change(&runs), &all)?;

    w.per_run("scores-s-adv", |r| builders::trajectory_scores(r, Score::Adv, None))?;
    w.per_run("targeting", builders::trajectory_targeting)?;
    w.per_run("kernels", builders::trajectory_kernels)?;
    let layers = if a.layers.is_empty() { shared_layers(&runs) } else { a.layers.clone() };
    if layers.is_empty() {
        eprintln!(
            "the runs share no layer: no landscapes or compression figures side by side (name some with --layers)"
        );
    }
    for layer in layers.iter().chain(std::iter::once(&GLOBAL.to_string())) {
        let tail = format!("{}-{}-{}", file_safe(layer), a.filter.name(), a.view.short());
        w.per_run(&format!("compression-{tail}"), |r| builders::trajectory_compression(r, layer, a.filter, a.view))?;
        if layer != GLOBAL {
            // Accuracy maps share the scale [0, 1] by construction.
            w.per_run(&format!("landscape-{tail}"), |r| {
                builders::landscape_accuracy(&r.landscape(), layer, a.filter, a.view)
            })?;
        }
    }

    let index = json!({
        "runs": runs.iter().enumerate().map(|(i, r)| json!({
            "run": i + 1,
            "label": r.run.label(),
            "model": r.run.model,
            "parameters": r.run.parameters,
            "data": r.run.data,
            "epochs": r.epochs,
            "results": sources[i],
        })).collect::<Vec<Value>>(),
        "figures": w.written,
    });
    write_json(&a.out.join("compare.json"), &index).context("writing compare.json")?;
    println!("wrote {}", a.out.join("compare.json").display());
    Ok(())
}
