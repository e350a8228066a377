//! `figure`: render the app's figures headless from saved results.

pub(super) mod results;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::sweep::SweepResult;
use crate::export::figures::builders::{self, Built, Score, View};
use crate::export::figures::export;
use results::Results;

#[derive(Args, Debug)]
#[command(after_long_help = "Each figure is written as STEM.png (2x), STEM.svg, STEM.csv (the plotted data) \
and STEM.json (the options and the analysis config), with STEM = fig-KIND[-LAYER][-FILTER][-VIEW].\n\n\
Accuracy against eps: `eval --eps-curve 0,0.1,0.2,0.3 --out DIR` writes DIR/eps_curve.json; \
`eval --json` runs at several --eps collected into one JSON array do as well.")]
pub struct FigureArgs {
    /// Results written by sweep, dropout, landscape, trajectory, train or selective (sweep.json, ...),
    /// `eval --eps-curve` (eps_curve.json), or a JSON array of `eval --json` outputs
    #[arg(long, value_name = "FILE")]
    pub results: PathBuf,
    /// The figure (default: the first the result gives)
    #[arg(long, value_enum)]
    pub kind: Option<FigureKind>,
    /// Layer of curves, compression and landscape figures (default: the first in the results)
    #[arg(long)]
    pub layer: Option<String>,
    /// Filter of curves and landscape maps; for scores, score one filter instead of the mean
    /// over h1, h2 and h3 (default: the first in the results)
    #[arg(long, value_enum)]
    pub filter: Option<FilterKind>,
    /// Accuracy that landscape maps follow
    #[arg(long, value_enum, default_value_t = View::Clean)]
    pub view: View,
    /// Score that trajectory-scores follows: S_clean, S_adv or S_diff
    #[arg(long, value_enum, default_value_t = Score::Adv)]
    pub score: Score,
    /// Mark this threshold on the sweep curves
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f64>,
    /// Folder for the files (default: the folder of --results)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Render every figure the results give (every layer, filter and view)
    #[arg(long, conflicts_with_all = ["kind", "layer", "filter"])]
    pub all: bool,
}

/// The figures, by the results they come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FigureKind {
    /// sweep: clean and adversarial accuracy against the threshold, fraction retained on the right
    Curves,
    /// sweep: normalised accuracy against fraction retained for h1, h2 and h0, with P / P_base = rho
    Compression,
    /// sweep: S_clean, S_adv and S_diff per layer, layers in their class colour
    Scores,
    /// dropout: accuracy with each kernel removed, fragile and null kernels marked
    Dropout,
    /// dropout: how far the attack moves each kernel's output (d_k), with d_F and d_N
    Targeting,
    /// landscape: accuracy per epoch and threshold step
    LandscapeAccuracy,
    /// landscape: class (fragile, robust, antifragile) per epoch and threshold step
    LandscapeClasses,
    /// landscape: steps that any filter finds fragile
    LandscapeInfluential,
    /// trajectory: every layer's score (--score, --filter or the mean over h1-h3) per epoch
    TrajectoryScores,
    /// trajectory: fragile, null and other kernels of the nodal-dropout layer per epoch
    TrajectoryKernels,
    /// trajectory: d_F against d_N per epoch, with the fragile and null fractions
    TrajectoryTargeting,
    /// trajectory: normalised accuracy (--view) against fraction retained, one line per epoch
    TrajectoryCompression,
    /// train: accuracy and loss per epoch
    Training,
    /// selective: test accuracy of selective and regular training per epoch
    Selective,
    /// eval outputs: clean and adversarial accuracy against eps
    Eps,
}

impl FigureKind {
    fn name(self) -> String {
        self.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string())
    }

    /// The kinds a result gives, the default first.
    fn of(r: &Results) -> &'static [FigureKind] {
        use FigureKind::*;
        match r {
            Results::Sweep(_) => &[Curves, Compression, Scores],
            Results::Dropout(_) => &[Dropout, Targeting],
            Results::Landscape(_) => &[LandscapeAccuracy, LandscapeClasses, LandscapeInfluential],
            Results::Train(_) => &[Training],
            Results::Selective(_) => &[Selective],
            Results::Trajectory(_) => {
                &[TrajectoryScores, TrajectoryKernels, TrajectoryTargeting, TrajectoryCompression]
            }
            Results::Evals(..) => &[Eps],
        }
    }
}

/// One figure to render: its kind and the layer, filter and view it shows.
#[derive(Debug, Clone)]
struct Job {
    kind: FigureKind,
    layer: Option<String>,
    filter: Option<FilterKind>,
    view: Option<View>,
    score: Option<Score>,
}

impl Job {
    /// File stem: `fig-` keeps figures apart from the analyses' own files (`dropout.json`,
    /// `scores.csv`, ...) in the same folder.
    fn stem(&self) -> String {
        let mut stem = format!("fig-{}", self.kind.name());
        if let Some(l) = &self.layer {
            stem.push('-');
            stem.push_str(&file_safe(l));
        }
        if let Some(f) = self.filter {
            stem.push('-');
            stem.push_str(f.name());
        }
        if let Some(v) = self.view {
            stem.push('-');
            stem.push_str(v.short());
        }
        if let Some(score) = self.score {
            stem.push('-');
            stem.push_str(&score.slug());
        }
        stem
    }
}

/// A layer name as part of a file name: state_dict prefixes, kept portable all the same.
pub(super) fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
}

pub fn run(a: &FigureArgs) -> Result<()> {
    let r = results::load(&a.results)?;
    let out = match &a.out {
        Some(d) => d.clone(),
        None => a.results.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf(),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create the output folder {}", out.display()))?;
    let jobs = if a.all { every_job(&r) } else { vec![one_job(&r, a)?] };
    let config = r.config();
    for job in jobs {
        let (figure, table) = match build(&r, &job, a.threshold) {
            Ok(built) => built,
            // With --all, a figure the data cannot give (a cancelled sweep's scores) is skipped.
            Err(e) if a.all => {
                eprintln!("skipped {}: {e:#}", job.stem());
                continue;
            }
            Err(e) => return Err(e.context(format!("in {}", a.results.display()))),
        };
        let sidecar = json!({
            "figure": job.kind.name(),
            "layer": job.layer,
            "filter": job.filter,
            "view": job.view,
            "score": job.score,
            "threshold": if job.kind == FigureKind::Curves { a.threshold } else { None },
            "results": a.results,
            "result_kind": r.name(),
            "config": config,
            "generator": concat!("fragility-explorer ", env!("CARGO_PKG_VERSION")),
        });
        let stem = job.stem();
        export(&figure, table, &sidecar, &out, &stem)?;
        println!("wrote {}", out.join(format!("{stem}.{{png,svg,csv,json}}")).display());
    }
    Ok(())
}

/// The first layer the results hold.
fn first_layer(r: &Results) -> Option<String> {
    match r {
        Results::Sweep(s) => builders::sweep_layers(s).into_iter().next(),
        Results::Landscape(l) => l.maps.first().map(|m| m.layer.clone()),
        Results::Trajectory(t) => t.scores.first().map(|s| s.layer.clone()),
        _ => None,
    }
}

/// The filters swept on `layer`, in the order of the results.
fn filters_of(r: &Results, layer: &str) -> Vec<FilterKind> {
    match r {
        Results::Sweep(s) => s.records.iter().filter(|x| x.layer == layer).map(|x| x.filter).collect(),
        Results::Landscape(l) => l.maps.iter().filter(|m| m.layer == layer).map(|m| m.filter).collect(),
        Results::Trajectory(t) => t.scores.iter().filter(|s| s.layer == layer).map(|s| s.filter).collect(),
        _ => Vec::new(),
    }
}

/// The figure asked for, with defaults for what was not given.
fn one_job(r: &Results, a: &FigureArgs) -> Result<Job> {
    let kinds = FigureKind::of(r);
    let kind = a.kind.unwrap_or(kinds[0]);
    if !kinds.contains(&kind) {
        let names: Vec<String> = kinds.iter().map(|k| k.name()).collect();
        bail!("a {} result gives {} figures, not {}: {}", r.name(), names.join(", "), kind.name(), a.results.display());
    }
    use FigureKind::*;
    let needs_layer = matches!(
        kind,
        Curves | Compression | LandscapeAccuracy | LandscapeClasses | LandscapeInfluential | TrajectoryCompression
    );
    let layer = if needs_layer { a.layer.clone().or_else(|| first_layer(r)) } else { None };
    let filter = match kind {
        // A layer the results lack keeps some filter, so the builder names what is there.
        Curves | LandscapeAccuracy | LandscapeClasses | TrajectoryCompression => a
            .filter
            .or_else(|| layer.as_deref().and_then(|l| filters_of(r, l).first().copied()))
            .or_else(|| first_layer(r).and_then(|l| filters_of(r, &l).first().copied())),
        Scores | TrajectoryScores => a.filter,
        _ => None,
    };
    let score = (kind == TrajectoryScores).then_some(a.score);
    let view = matches!(kind, LandscapeAccuracy | LandscapeClasses | LandscapeInfluential | TrajectoryCompression)
        .then_some(a.view);
    if needs_layer && layer.is_none() {
        bail!("the results hold no layer to draw: {}", a.results.display());
    }
    if matches!(kind, Curves | LandscapeAccuracy | LandscapeClasses | TrajectoryCompression) && filter.is_none() {
        bail!("the results hold no filter to draw: {}", a.results.display());
    }
    Ok(Job { kind, layer, filter, view, score })
}

/// Every figure the results give.
fn every_job(r: &Results) -> Vec<Job> {
    use FigureKind::*;
    let job = |kind, layer: Option<&str>, filter, view| Job {
        kind,
        layer: layer.map(str::to_string),
        filter,
        view,
        score: None,
    };
    let mut jobs = Vec::new();
    match r {
        Results::Sweep(s) => {
            for rec in s.records.iter().filter(|x| !x.clean_correct.is_empty()) {
                jobs.push(job(Curves, Some(&rec.layer), Some(rec.filter), None));
            }
            for layer in builders::sweep_layers(s) {
                if has_compression(s, &layer) {
                    jobs.push(job(Compression, Some(&layer), None, None));
                }
            }
            jobs.push(job(Scores, None, None, None));
        }
        Results::Landscape(l) => {
            for view in View::BOTH {
                for m in &l.maps {
                    jobs.push(job(LandscapeAccuracy, Some(&m.layer), Some(m.filter), Some(view)));
                    jobs.push(job(LandscapeClasses, Some(&m.layer), Some(m.filter), Some(view)));
                }
                for c in &l.combined {
                    jobs.push(job(LandscapeInfluential, Some(&c.layer), None, Some(view)));
                }
            }
        }
        Results::Trajectory(t) => {
            for score in [Score::Clean, Score::Adv, Score::Diff] {
                jobs.push(Job { score: Some(score), ..job(TrajectoryScores, None, None, None) });
            }
            jobs.push(job(TrajectoryKernels, None, None, None));
            jobs.push(job(TrajectoryTargeting, None, None, None));
            for view in View::BOTH {
                for s in t.scores.iter().filter(|s| s.filter != FilterKind::H3) {
                    jobs.push(job(TrajectoryCompression, Some(&s.layer), Some(s.filter), Some(view)));
                }
            }
        }
        other => jobs.extend(FigureKind::of(other).iter().map(|&k| job(k, None, None, None))),
    }
    jobs
}

fn has_compression(s: &SweepResult, layer: &str) -> bool {
    s.records.iter().any(|x| x.layer == layer && x.filter != FilterKind::H3 && !x.clean_correct.is_empty())
}

fn build(r: &Results, job: &Job, threshold: Option<f64>) -> Result<Built> {
    use FigureKind::*;
    let layer = job.layer.as_deref().unwrap_or_default();
    let view = job.view.unwrap_or_default();
    // `one_job` and `every_job` always give a filter where one is needed.
    let filter = || job.filter.context("no filter chosen");
    Ok(match (r, job.kind) {
        (Results::Sweep(s), Curves) => builders::sweep_curves(s, layer, filter()?, threshold)?,
        (Results::Sweep(s), Compression) => builders::compression(s, layer)?,
        (Results::Sweep(s), Scores) => builders::layer_scores(s, job.filter)?,
        (Results::Dropout(d), Dropout) => builders::dropout_accuracy(d),
        (Results::Dropout(d), Targeting) => builders::dropout_targeting(d),
        (Results::Landscape(l), LandscapeAccuracy) => builders::landscape_accuracy(l, layer, filter()?, view)?,
        (Results::Landscape(l), LandscapeClasses) => builders::landscape_classes(l, layer, filter()?, view)?,
        (Results::Landscape(l), LandscapeInfluential) => builders::landscape_influential(l, layer, view)?,
        (Results::Trajectory(t), TrajectoryScores) => {
            builders::trajectory_scores(t, job.score.unwrap_or_default(), job.filter)?
        }
        (Results::Trajectory(t), TrajectoryKernels) => builders::trajectory_kernels(t)?,
        (Results::Trajectory(t), TrajectoryTargeting) => builders::trajectory_targeting(t)?,
        (Results::Trajectory(t), TrajectoryCompression) => builders::trajectory_compression(t, layer, filter()?, view)?,
        (Results::Train(t), Training) => builders::training_curves(t),
        (Results::Selective(s), Selective) => builders::selective_curves(s),
        (Results::Evals(points, _), Eps) => builders::accuracy_vs_eps(points),
        (r, kind) => bail!("a {} result has no {} figure", r.name(), kind.name()),
    })
}
