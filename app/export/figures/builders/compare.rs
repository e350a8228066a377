//! Comparisons of runs through training (METHOD.md section 8, "Through training"): one line
//! per run on shared axes, and per-run figures brought to one scale.

use anyhow::{Result, bail};

use super::Built;
use super::trajectory::{Score, epoch_points, layer_scores};
use crate::engine::analysis::masks::GLOBAL;
use crate::engine::analysis::trajectory::TrajectoryResult;
use crate::export::figures::{Figure, LinePlot, Series};
use crate::export::tables::Table;

fn run_series(i: usize, r: &TrajectoryResult, values: &[Option<f64>]) -> Series {
    Series { name: r.run.label(), points: epoch_points(&r.epochs, values), colour: i, dashed: false, markers: true }
}

/// One value per epoch and run as a line plot and its table.
fn per_epoch(
    runs: &[&TrajectoryResult],
    title: String,
    y_label: &str,
    column: &str,
    values: impl Fn(&TrajectoryResult) -> Vec<Option<f64>>,
) -> Built {
    let mut table = Table::new(&["run", "epoch", column]);
    let mut series = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let v = values(r);
        for (epoch, x) in r.epochs.iter().zip(&v) {
            table.row([r.run.label(), epoch.to_string(), x.map(|x| x.to_string()).unwrap_or_default()]);
        }
        series.push(run_series(i, r, &v));
    }
    let plot = LinePlot {
        title,
        x_label: "Epoch".into(),
        x_whole: true,
        y_label: y_label.into(),
        series,
        ..Default::default()
    };
    (Figure::Line(plot), table)
}

/// The whole network's score (the global sweep, mean over h1, h2 and h3) per epoch, a line per
/// run: architectures compare even when their layers do not.
pub fn compare_global_scores(runs: &[&TrajectoryResult], score: Score) -> Result<Built> {
    let missing: Vec<String> =
        runs.iter().filter(|r| layer_scores(r, GLOBAL, score, None).is_none()).map(|r| r.run.label()).collect();
    if !missing.is_empty() {
        bail!("no global h1, h2 and h3 scores in {}", missing.join(", "));
    }
    let title = format!("Global {} through training", score.symbol());
    let y_label = format!("{} of the whole network (mean of h1, h2, h3)", score.symbol());
    let values = |r: &TrajectoryResult| layer_scores(r, GLOBAL, score, None).unwrap_or_default();
    Ok(per_epoch(runs, title, &y_label, score.symbol(), values))
}

/// The fraction of fragile kernels of each run's nodal-dropout layer per epoch.
pub fn compare_fragile_fraction(runs: &[&TrajectoryResult]) -> Built {
    per_epoch(
        runs,
        "Fragile kernels through training".into(),
        "Fraction of kernels fragile (A_k < mean)",
        "fragile_fraction",
        |r| r.kernels.fragile_fraction.iter().map(|&f| Some(f)).collect(),
    )
}

/// How much the local S_adv scores still move between checkpoints: convergence, per run.
pub fn compare_score_change(runs: &[&TrajectoryResult]) -> Built {
    per_epoch(
        runs,
        "Convergence of the layer scores through training".into(),
        "Mean |ΔS_adv| since the previous checkpoint",
        "score_change",
        // The first checkpoint has no previous one.
        |r| std::iter::once(None).chain(r.score_change.iter().copied()).collect(),
    )
}

/// Fragile fraction at the last checkpoint against the network's size, a point per run: do
/// larger networks have proportionally more fragile kernels?
pub fn compare_fragile_vs_size(runs: &[&TrajectoryResult]) -> Built {
    let mut table = Table::new(&["run", "parameters", "epoch", "fragile_fraction", "mean_fragile_fraction"]);
    let mut series = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let (Some(&last), Some(&epoch)) = (r.fragile_fraction.last(), r.epochs.last()) else { continue };
        let mean = r.fragile_fraction.iter().sum::<f64>() / r.fragile_fraction.len() as f64;
        table.row([r.run.label(), r.run.parameters.to_string(), epoch.to_string(), last.to_string(), mean.to_string()]);
        series.push(Series {
            name: format!("{} (epoch {epoch})", r.run.label()),
            points: vec![[r.run.parameters as f64, last]],
            colour: i,
            dashed: false,
            markers: true,
        });
    }
    let plot = LinePlot {
        title: "Fragile kernels against network size (last checkpoint)".into(),
        x_label: "Trainable parameters".into(),
        y_label: "Fraction of kernels fragile".into(),
        series,
        y_range: Some([0.0, 1.0]),
        ..Default::default()
    };
    (Figure::Line(plot), table)
}

/// The same figure for every run, each titled with its run, all brought to one scale; a run
/// the figure cannot be drawn for gives its error in its place.
pub fn per_run(runs: &[&TrajectoryResult], build: impl Fn(&TrajectoryResult) -> Result<Built>) -> Vec<Result<Built>> {
    let mut built: Vec<Result<Built>> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            build(r).map(|(mut figure, table)| {
                *figure.title_mut() = format!("Run {}, {}: {}", i + 1, r.run.label(), figure.title());
                (figure, table)
            })
        })
        .collect();
    let mut figures: Vec<&mut Figure> = built.iter_mut().filter_map(|b| b.as_mut().ok()).map(|(f, _)| f).collect();
    align(&mut figures);
    built
}

/// Gives every line plot of `figures` the same axes: the union of their data ranges (fixed
/// ranges kept in the union), so that the same figure of several runs reads on one scale.
pub fn align(figures: &mut [&mut Figure]) {
    let mut x = [f64::INFINITY, f64::NEG_INFINITY];
    let mut y = x;
    let mut y2 = x;
    let widen = |r: &mut [f64; 2], v: f64| {
        if v.is_finite() {
            r[0] = r[0].min(v);
            r[1] = r[1].max(v);
        }
    };
    for f in figures.iter() {
        let Figure::Line(p) = &**f else { continue };
        for s in &p.series {
            for pt in &s.points {
                widen(&mut x, pt[0]);
                widen(&mut y, pt[1]);
            }
        }
        for (v, _) in &p.hlines {
            widen(&mut y, *v);
        }
        for s in p.y2.iter().flat_map(|(_, s)| s) {
            for pt in &s.points {
                widen(&mut x, pt[0]);
                widen(&mut y2, pt[1]);
            }
        }
        for (range, fixed) in [(&mut x, p.x_range), (&mut y, p.y_range), (&mut y2, p.y2_range)] {
            for v in fixed.into_iter().flatten() {
                widen(range, v);
            }
        }
    }
    let span = |r: [f64; 2]| (r[0] <= r[1]).then(|| if r[0] == r[1] { [r[0] - 0.5, r[1] + 0.5] } else { r });
    for f in figures.iter_mut() {
        if let Figure::Line(p) = &mut **f {
            p.x_range = span(x);
            p.y_range = span(y);
            if p.y2.is_some() {
                p.y2_range = span(y2);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot(points: Vec<[f64; 2]>, hline: Option<f64>) -> Figure {
        let series = vec![Series { points, ..Default::default() }];
        Figure::Line(LinePlot {
            series,
            hlines: hline.into_iter().map(|v| (v, String::new())).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn aligned_plots_share_the_union_of_their_ranges() {
        let mut a = plot(vec![[1.0, 0.2], [3.0, 0.5], [4.0, f64::NAN]], Some(-0.1));
        let mut b = plot(vec![[2.0, 1.5], [5.0, 0.9]], None);
        align(&mut [&mut a, &mut b]);
        for f in [&a, &b] {
            let Figure::Line(p) = f else { unreachable!() };
            assert_eq!(p.x_range, Some([1.0, 5.0]));
            assert_eq!(p.y_range, Some([-0.1, 1.5]));
        }
        // One point gives a range around it, not an empty one.
        let mut c = plot(vec![[7.0, 0.5]], None);
        align(&mut [&mut c]);
        let Figure::Line(p) = &c else { unreachable!() };
        assert_eq!(p.x_range, Some([6.5, 7.5]));
    }
}
