//! "Export figure…": each view as a figure builder (run on the worker) with its config,
//! through the figure builders of `export::figures`.

use anyhow::{Result, anyhow};
use serde_json::{Value, json};

use super::actions::FigureId;
use super::app::ExplorerApp;
use super::panels::curves::sweep_set;
use super::settings::{ComparePlot, ViewMode};
use crate::engine::analysis::scores::Class;
use crate::engine::analysis::trajectory::TrajectoryResult;
use crate::export::figures::builders::{self, Built, Score, View, WeightView};
use crate::export::figures::{Figure, LinePlot, Marker, Series};
use crate::export::tables::Table;
use crate::jobs::command::{ExportItem, FigureBuilder};
use crate::render::colormap::Colormap;
use crate::render::palette;

/// The view's settings, model and data, written beside every figure.
fn base_config(app: &ExplorerApp) -> Value {
    let s = &app.settings;
    json!({
        "model": app.session.model.as_ref().map(|m| m.name.clone()),
        "data": app.session.data.as_ref().map(|d| d.name.clone()),
        "layer": s.layer,
        "filter": s.filter,
        "scope": s.scope,
        "threshold": s.threshold,
        "steps": s.sweep.steps,
        "global_range": s.sweep.global_range,
        "attack": app.attack_config(),
        "evaluation_images": s.subset,
        "colormap": s.colormap,
    })
}

fn with(mut config: Value, key: &str, value: impl serde::Serialize) -> Value {
    if let (Some(map), Ok(v)) = (config.as_object_mut(), serde_json::to_value(value)) {
        map.insert(key.to_string(), v);
    }
    config
}

/// The figures a view exports: one, or for the Compare view's per-run plots one per run.
pub fn build_all(id: FigureId, app: &ExplorerApp) -> Vec<ExportItem> {
    if id != FigureId::Compare {
        return build(id, app).into_iter().collect();
    }
    let runs: Vec<TrajectoryResult> = app.session.runs.iter().map(|r| r.result.clone()).collect();
    if runs.is_empty() {
        return Vec::new();
    }
    let (plot, score) = (app.settings.compare_plot, app.settings.compare_score);
    let count = compare_figures(&runs, plot, score).len();
    let config = json!({
        "plot": plot,
        "score": score,
        "runs": app.session.runs.iter().map(|r| json!({
            "label": r.result.run.label(),
            "results": r.path,
            "config": r.result.config,
        })).collect::<Vec<Value>>(),
    });
    let runs = std::sync::Arc::new(runs);
    (0..count)
        .map(|i| {
            let runs = std::sync::Arc::clone(&runs);
            let stem = compare_figures(&runs, plot, score).swap_remove(i).0;
            let build: FigureBuilder = Box::new(move || compare_figures(&runs, plot, score).swap_remove(i).1);
            ExportItem { stem, build, config: config.clone() }
        })
        .collect()
}

/// The Compare view's figures for `plot`: one with a line (or point) per run, or for the
/// layer scores one per run on one scale. Each with its file stem.
pub fn compare_figures(runs: &[TrajectoryResult], plot: ComparePlot, score: Score) -> Vec<(String, Result<Built>)> {
    let all: Vec<&TrajectoryResult> = runs.iter().collect();
    let symbol = score.slug();
    match plot {
        ComparePlot::GlobalScores => {
            vec![(format!("compare-global-{symbol}"), builders::compare_global_scores(&all, score))]
        }
        ComparePlot::FragileFraction => {
            vec![("compare-fragile-fraction".into(), Ok(builders::compare_fragile_fraction(&all)))]
        }
        ComparePlot::Convergence => vec![("compare-score-change".into(), Ok(builders::compare_score_change(&all)))],
        ComparePlot::FragileVsSize => {
            vec![("compare-fragile-vs-size".into(), Ok(builders::compare_fragile_vs_size(&all)))]
        }
        ComparePlot::LayerScores => builders::per_run(&all, |r| builders::trajectory_scores(r, score, None))
            .into_iter()
            .enumerate()
            .map(|(i, built)| (format!("compare-run{}-scores-{symbol}", i + 1), built))
            .collect(),
    }
}

/// The figure of a view with its config, or None when the view has nothing to show yet.
pub fn build(id: FigureId, app: &ExplorerApp) -> Option<ExportItem> {
    let config = base_config(app);
    let (build, config): (FigureBuilder, Value) = match id {
        FigureId::Histogram => {
            let layer = app.session.layer.clone()?;
            let threshold = app.settings.threshold;
            (Box::new(move || Ok(histogram(&layer, threshold))), config)
        }
        FigureId::Mask => mask(app, config)?,
        FigureId::Perturbation => {
            if app.session.samples.is_empty() {
                return None;
            }
            let samples: Vec<_> = app.session.samples.iter().map(|s| s.raw.clone()).collect();
            let classes = app.session.model.as_ref().map(|m| m.classes.clone()).unwrap_or_default();
            let title = format!("Attacked samples, {}", app.settings.layer.clone().unwrap_or_default());
            (Box::new(move || builders::perturbation_grid(&title, &samples, &classes)), config)
        }
        FigureId::Sweep | FigureId::Compression | FigureId::Scores => {
            let result = app.session.sweeps.as_result()?;
            let set = sweep_set(app)?;
            let (filter, threshold) = (app.settings.filter, app.settings.threshold);
            let has = |f| result.record(&set, f).is_some();
            let build: FigureBuilder = match id {
                FigureId::Sweep if has(filter) => {
                    Box::new(move || builders::sweep_curves(&result, &set, filter, Some(threshold)))
                }
                FigureId::Compression if super::panels::curves::COMPRESSION.iter().any(|&f| has(f)) => {
                    Box::new(move || builders::compression(&result, &set))
                }
                FigureId::Scores if result.records.iter().any(|r| r.s_adv.is_some()) => {
                    Box::new(move || builders::layer_scores(&result, Some(filter)))
                }
                _ => return None,
            };
            (build, with(config, "sweep", &app.session.sweeps.config))
        }
        FigureId::Eps => {
            if app.session.eps_curve.is_empty() {
                return None;
            }
            let points: Vec<(f64, f64, f64)> = app.session.eps_curve.iter().map(|p| (p[0], p[1], p[2])).collect();
            (Box::new(move || Ok(builders::accuracy_vs_eps(&points))), config)
        }
        FigureId::Dropout | FigureId::DropoutShift => {
            let r = app.session.dropout.clone()?;
            let config = with(config, "dropout", &r.config);
            let build: FigureBuilder = if id == FigureId::Dropout {
                Box::new(move || Ok(builders::dropout_accuracy(&r)))
            } else {
                Box::new(move || Ok(builders::dropout_targeting(&r)))
            };
            (build, config)
        }
        FigureId::Landscape => {
            let r = app.session.landscape.clone().filter(|r| !r.maps.is_empty())?;
            let (layer, filter) = (app.settings.layer.clone()?, app.settings.filter);
            let config = with(config, "sweep", r.sweeps.first().map(|s| &s.config));
            (Box::new(move || builders::landscape_accuracy(&r, &layer, filter, View::Adversarial)), config)
        }
        // Several figures, made by `build_all`.
        FigureId::Compare => return None,
        FigureId::Training => {
            let r = app.session.trained.clone()?;
            let config = with(config, "selective", &r.config);
            (Box::new(move || Ok(builders::selective_curves(&r))), config)
        }
    };
    Some(ExportItem { stem: id.stem().to_string(), build, config })
}

/// The histogram of a layer's weights with the threshold marked.
fn histogram(layer: &crate::jobs::command::LayerData, threshold: f64) -> (Figure, Table) {
    let bins = layer.histogram.len().max(1);
    let width = (layer.max - layer.min) as f64 / bins as f64;
    let mut table = Table::new(&["bin_start", "bin_end", "count"]);
    let mut points = Vec::with_capacity(2 * bins);
    for (i, &c) in layer.histogram.iter().enumerate() {
        let (a, b) = (layer.min as f64 + i as f64 * width, layer.min as f64 + (i + 1) as f64 * width);
        table.row([a.to_string(), b.to_string(), c.to_string()]);
        // Drawn as steps: flat across each bin.
        points.push([a, c as f64]);
        points.push([b, c as f64]);
    }
    let plot = LinePlot {
        title: format!("Weights of {}", layer.name),
        x_label: "Weight value".into(),
        y_label: "Count".into(),
        series: vec![Series { name: "Weights".into(), points, colour: palette::BARS, dashed: false, markers: false }],
        markers: vec![Marker { x: threshold, label: "Threshold".into() }],
        ..Default::default()
    };
    (Figure::Line(plot), table)
}

/// The mask view: values (or classes) with the removed weights shaded.
fn mask(app: &ExplorerApp, config: Value) -> Option<(FigureBuilder, Value)> {
    let layer = app.session.layer.clone()?;
    let filter = app.current_filter(layer.min as f64, layer.max as f64);
    let shade = app.settings.shade_removed;
    let colormap = app.settings.colormap;
    let value_range = match colormap {
        Colormap::Diverging => [-layer.max_abs, layer.max_abs],
        _ => [layer.min, layer.max],
    };
    let classes = app.session.classes.get(&layer.name).map(|(_, c)| c.clone());
    let mode = app.settings.view_mode;
    let label = format!("Removed by {} at a = {:.4}", filter.kind.name(), filter.alpha);
    let build = move || -> Result<(Figure, Table)> {
        let removed: Vec<bool> = layer.values.iter().map(|&w| filter.removes(w)).collect();
        let decode = |k: &u8| Class::from_index(*k as usize);
        let classes: Option<Vec<Class>> = match (mode, &classes) {
            (ViewMode::ClassesClean, Some(c)) => Some(c.clean.iter().map(decode).collect()),
            (ViewMode::ClassesAdversarial, Some(c)) => Some(c.adv.iter().map(decode).collect()),
            _ => None,
        };
        builders::weight_heatmap(&WeightView {
            layer: &layer.name,
            values: &layer.values,
            shape: &layer.shape,
            range: value_range,
            colormap,
            removed: shade.then_some(removed.as_slice()),
            removed_label: &label,
            classes: classes.as_deref(),
        })
        .map_err(|e| anyhow!(e))
    };
    Some((Box::new(build), with(config, "view_mode", mode)))
}
