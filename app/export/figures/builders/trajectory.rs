//! Figures of a run through training (METHOD.md section 8, "Through training"): scores per
//! epoch, fragile kernels per epoch, and the attack's targeting per epoch.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::{Built, View, listing};
use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::masks::GLOBAL;
use crate::engine::analysis::scores::Class;
use crate::engine::analysis::trajectory::{ScoreSeries, TrajectoryResult};
use crate::export::figures::{Figure, Heatmap, LinePlot, Series};
use crate::export::tables::Table;
use crate::render::palette;

/// Which filtering score a figure follows (METHOD.md section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    Clean,
    #[default]
    Adv,
    Diff,
}

impl Score {
    pub fn symbol(self) -> &'static str {
        match self {
            Score::Clean => "S_clean",
            Score::Adv => "S_adv",
            Score::Diff => "S_diff",
        }
    }

    /// The score in file names: `s-clean`, `s-adv`, `s-diff`.
    pub fn slug(self) -> String {
        self.symbol().to_lowercase().replace('_', "-")
    }

    fn of(self, s: &ScoreSeries) -> &[Option<f64>] {
        match self {
            Score::Clean => &s.s_clean,
            Score::Adv => &s.s_adv,
            Score::Diff => &s.s_diff,
        }
    }
}

/// (epoch, value) points of one value per checkpoint; a missing value breaks the line.
pub(super) fn epoch_points(epochs: &[usize], values: &[Option<f64>]) -> Vec<[f64; 2]> {
    epochs.iter().zip(values).map(|(&e, v)| [e as f64, v.unwrap_or(f64::NAN)]).collect()
}

/// The filters whose mean makes a layer's score when no filter is chosen (as its class does).
const CLASS_FILTERS: [FilterKind; 3] = [FilterKind::H1, FilterKind::H2, FilterKind::H3];

/// One layer's (or the global set's) score per checkpoint: the chosen filter's, or the mean
/// over h1, h2 and h3 (None at a checkpoint where one of them has no score).
pub(super) fn layer_scores(
    r: &TrajectoryResult,
    layer: &str,
    score: Score,
    filter: Option<FilterKind>,
) -> Option<Vec<Option<f64>>> {
    let of = |f: FilterKind| r.scores.iter().find(|s| s.layer == layer && s.filter == f).map(|s| score.of(s));
    match filter {
        Some(f) => of(f).map(<[Option<f64>]>::to_vec),
        None => {
            let all: Option<Vec<&[Option<f64>]>> = CLASS_FILTERS.iter().map(|&f| of(f)).collect();
            let all = all?;
            Some(
                (0..r.epochs.len())
                    .map(|i| {
                        let values: Option<Vec<f64>> = all.iter().map(|s| s[i]).collect();
                        values.map(|v| v.iter().sum::<f64>() / v.len() as f64)
                    })
                    .collect(),
            )
        }
    }
}

/// Every layer's score per epoch (and the global set's, dashed): which layers the attack
/// targets through training, and whether the scores settle.
pub fn trajectory_scores(r: &TrajectoryResult, score: Score, filter: Option<FilterKind>) -> Result<Built> {
    let mut layers: Vec<String> = Vec::new();
    for s in r.scores.iter().filter(|s| s.layer != GLOBAL) {
        if !layers.contains(&s.layer) {
            layers.push(s.layer.clone());
        }
    }
    layers.push(GLOBAL.into());
    let mut table = Table::new(&["epoch", "layer", "filter", score.symbol()]);
    let filter_name = filter.map_or("mean of h1, h2, h3".to_string(), |f| f.name().to_string());
    let mut series = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let Some(values) = layer_scores(r, layer, score, filter) else { continue };
        for (epoch, v) in r.epochs.iter().zip(&values) {
            table.row([
                epoch.to_string(),
                layer.clone(),
                filter_name.clone(),
                v.map(|v| v.to_string()).unwrap_or_default(),
            ]);
        }
        let global = layer == GLOBAL;
        series.push(Series {
            name: if global { "Global (every layer at once)".into() } else { layer.clone() },
            points: epoch_points(&r.epochs, &values),
            colour: if global { palette::REFERENCE } else { i },
            dashed: global,
            markers: true,
        });
    }
    if series.is_empty() {
        let held: Vec<String> = r.scores.iter().map(|s| format!("{} {}", s.layer, s.filter)).collect();
        let want = filter.map_or("h1, h2 and h3".to_string(), |f| f.name().to_string());
        bail!("the trajectory holds no {want} scores to draw; it has {}", listing(&held));
    }
    // A layer's class boundaries (METHOD.md section 5) apply to the mean S_adv.
    let tau = r.config.sweep.options.tau;
    let hlines = if score == Score::Adv && filter.is_none() {
        vec![(tau, format!("+tau {tau}: antifragile above")), (-tau, format!("−tau {tau}: fragile below"))]
    } else {
        Vec::new()
    };
    let plot = LinePlot {
        title: format!("{} through training ({filter_name})", score.symbol()),
        x_label: "Epoch".into(),
        x_whole: true,
        y_label: format!("{} (area between filtered and baseline accuracy)", score.symbol()),
        series,
        hlines,
        ..Default::default()
    };
    Ok((Figure::Line(plot), table))
}

/// Fragile, null and other kernels of the nodal-dropout layer, epoch by kernel; kernels fragile
/// at every checkpoint are starred.
pub fn trajectory_kernels(r: &TrajectoryResult) -> Result<Built> {
    let k = &r.kernels;
    if r.checkpoints.is_empty() || k.kernels == 0 {
        bail!("the trajectory holds no nodal dropout to draw (no checkpoint was finished)");
    }
    let (fragile, null, other) = (0.0, 1.0, 2.0);
    let mut values = Vec::with_capacity(r.epochs.len() * k.kernels);
    let mut table = Table::new(&["epoch", "kernel", "fragile", "null", "consistently_fragile"]);
    for (i, epoch) in r.epochs.iter().enumerate() {
        for kernel in 0..k.kernels {
            let (is_fragile, is_null) = (k.fragile[i].contains(&kernel), k.null[i].contains(&kernel));
            values.push(if is_fragile {
                fragile
            } else if is_null {
                null
            } else {
                other
            });
            table.row([
                epoch.to_string(),
                kernel.to_string(),
                is_fragile.to_string(),
                is_null.to_string(),
                r.consistently_fragile.contains(&kernel).to_string(),
            ]);
        }
    }
    let heatmap = Heatmap {
        title: format!(
            "Fragile kernels of {} through training ({} of {} fragile at every checkpoint, starred)",
            k.layer,
            r.consistently_fragile.len(),
            k.kernels
        ),
        rows: r.epochs.len(),
        cols: k.kernels,
        values,
        range: [0.0, 2.0],
        categories: Some(vec![
            ("Fragile (A_k < mean)".into(), palette::class(Class::Fragile)),
            ("Null (A_k ≥ baseline)".into(), palette::SERIES[palette::NULL_KERNEL]),
            ("Other".into(), palette::lighten(palette::INK, 0.85)),
        ]),
        x_label: "Kernel k".into(),
        y_label: "Epoch".into(),
        row_labels: r.epochs.iter().map(usize::to_string).collect(),
        col_labels: (0..k.kernels)
            .map(|c| if r.consistently_fragile.contains(&c) { format!("{c}*") } else { c.to_string() })
            .collect(),
        row0_at_bottom: true,
        ..Default::default()
    };
    Ok((Figure::Heatmap(heatmap), table))
}

/// d_F against d_N per epoch (the attack targets fragile kernels where d_F > d_N), with the
/// fragile and null fractions of the kernels on the right.
pub fn trajectory_targeting(r: &TrajectoryResult) -> Result<Built> {
    let k = &r.kernels;
    if r.checkpoints.is_empty() {
        bail!("the trajectory holds no nodal dropout to draw (no checkpoint was finished)");
    }
    let points = |v: &[Option<f64>]| epoch_points(&r.epochs, v);
    let fractions = |v: &[f64]| r.epochs.iter().zip(v).map(|(&e, f)| [e as f64, *f]).collect();
    let line = |name: &str, points, colour, dashed| Series { name: name.into(), points, colour, dashed, markers: true };
    let mut table = Table::new(&["epoch", "d_fragile", "d_other", "targeted", "fragile_fraction", "null_fraction"]);
    for (i, epoch) in r.epochs.iter().enumerate() {
        let cell = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        table.row([
            epoch.to_string(),
            cell(k.d_fragile[i]),
            cell(k.d_other[i]),
            k.targeted[i].to_string(),
            k.fragile_fraction[i].to_string(),
            k.null_fraction[i].to_string(),
        ]);
    }
    let targeted = k.targeted.iter().filter(|t| **t).count();
    let plot = LinePlot {
        title: format!(
            "Attack on {} through training: targets fragile kernels at {targeted} of {} checkpoints",
            k.layer,
            r.epochs.len()
        ),
        x_label: "Epoch".into(),
        x_whole: true,
        y_label: "Mean |z_k(x_adv) − z_k(x)|".into(),
        series: vec![
            line("d_F (fragile kernels)", points(&k.d_fragile), palette::ADVERSARIAL, false),
            line("d_N (other kernels)", points(&k.d_other), palette::CLEAN, false),
        ],
        y2: Some((
            "Fraction of kernels".into(),
            vec![
                line("Fragile fraction", fractions(&k.fragile_fraction), palette::ADVERSARIAL, true),
                line("Null fraction", fractions(&k.null_fraction), palette::NULL_KERNEL, true),
            ],
        )),
        y2_range: Some([0.0, 1.0]),
        ..Default::default()
    };
    Ok((Figure::Line(plot), table))
}

/// Accuracy against the fraction of weights retained for one layer (or `"global"`) and
/// filter, one line per checkpoint: how compressible the network is as it trains.
pub fn trajectory_compression(r: &TrajectoryResult, layer: &str, filter: FilterKind, view: View) -> Result<Built> {
    let mut table = Table::new(&["epoch", "step", "rho", &format!("{}_normalised", view.short())]);
    let mut series = Vec::new();
    for (i, c) in r.checkpoints.iter().enumerate() {
        let sweep = if layer == GLOBAL { &c.global } else { &c.sweep };
        let Some(rec) = sweep.record(layer, filter).filter(|x| !x.clean_correct.is_empty()) else { continue };
        let (acc, base) = match view {
            View::Clean => (&rec.clean_accuracy, sweep.baseline.clean_accuracy),
            View::Adversarial => (&rec.adv_accuracy, sweep.baseline.adv_accuracy),
        };
        // Below 1e-6 the baseline is not divided by (METHOD.md section 5): raw accuracy.
        let norm = |a: f64| if base < 1e-6 { a } else { a / base };
        let points: Vec<[f64; 2]> = rec.rho.iter().zip(acc).map(|(&rho, &a)| [rho, norm(a)]).collect();
        for (step, p) in points.iter().enumerate() {
            table.row([c.epoch.to_string(), step.to_string(), p[0].to_string(), p[1].to_string()]);
        }
        series.push(Series { name: format!("Epoch {}", c.epoch), points, colour: i, dashed: false, markers: false });
    }
    if series.is_empty() {
        let held: Vec<String> = r.scores.iter().map(|s| format!("{} {}", s.layer, s.filter)).collect();
        bail!("the trajectory has no {filter} sweep of `{layer}` to draw; it has {}", listing(&held));
    }
    series.push(Series {
        name: "P / P_base = ρ".into(),
        points: vec![[0.0, 0.0], [1.0, 1.0]],
        colour: palette::RETAINED,
        dashed: true,
        markers: false,
    });
    let plot = LinePlot {
        title: format!("{layer}, {}: {} accuracy against weights retained, by epoch", filter.label(), view.name()),
        x_label: "Fraction of weights retained ρ".into(),
        y_label: format!("Normalised {} accuracy P / P_base", view.name()),
        series,
        x_range: Some([0.0, 1.0]),
        ..Default::default()
    };
    Ok((Figure::Line(plot), table))
}
