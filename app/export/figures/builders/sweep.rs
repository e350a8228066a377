//! Figures of sweeps: accuracy against threshold, the compression view, per-layer scores.

use anyhow::{Result, bail};

use super::{Built, listing};
use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::masks::GLOBAL;
use crate::engine::analysis::scores::Class;
use crate::engine::analysis::sweep::{SweepRecord, SweepResult};
use crate::export::figures::{BarPlot, Figure, LinePlot, Marker, Series};
use crate::export::tables::Table;
use crate::render::palette;

/// "features.0 (h1, h2, h3), features.3 (h1)": what a result holds, for error messages.
pub(super) fn holdings(r: &SweepResult) -> String {
    let mut layers: Vec<(String, Vec<&str>)> = Vec::new();
    for rec in &r.records {
        match layers.iter_mut().find(|(l, _)| *l == rec.layer) {
            Some((_, f)) => f.push(rec.filter.name()),
            None => layers.push((rec.layer.clone(), vec![rec.filter.name()])),
        }
    }
    listing(&layers.iter().map(|(l, f)| format!("{l} ({})", f.join(", "))).collect::<Vec<_>>())
}

/// Layers of a sweep in the order they were swept.
pub fn layers(r: &SweepResult) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rec in &r.records {
        if !out.contains(&rec.layer) {
            out.push(rec.layer.clone());
        }
    }
    out
}

fn record<'a>(r: &'a SweepResult, layer: &str, filter: FilterKind) -> Result<&'a SweepRecord> {
    match r.records.iter().find(|x| x.layer == layer && x.filter == filter) {
        Some(rec) => {
            rec.check_consistent().map(|()| rec).map_err(|e| anyhow::anyhow!("the results are inconsistent: {e}"))
        }
        None => bail!("the sweep has no {filter} record of layer `{layer}`; it has {}", holdings(r)),
    }
}

/// Title part naming a layer, or the whole network for a global sweep.
fn scope_name(layer: &str) -> String {
    if layer == GLOBAL { "All layers (global sweep)".into() } else { layer.to_string() }
}

fn series(name: &str, points: Vec<[f64; 2]>, colour: usize, dashed: bool, markers: bool) -> Series {
    Series { name: name.into(), points, colour, dashed, markers }
}

/// Clean and adversarial accuracy against the threshold a_i of one (layer, filter) sweep, the
/// fraction retained rho on the second axis, and the current threshold as a marker.
pub fn sweep_curves(r: &SweepResult, layer: &str, filter: FilterKind, current: Option<f64>) -> Result<Built> {
    let rec = record(r, layer, filter)?;
    let done = rec.clean_correct.len();
    let pts = |ys: &[f64]| rec.alphas.iter().zip(ys).take(done).map(|(&a, &y)| [a, y]).collect::<Vec<_>>();
    let mut table =
        Table::new(&["step", "alpha", "removed", "rho", "clean_accuracy", "adv_accuracy", "class_clean", "class_adv"]);
    for i in 0..done {
        table.row([
            i.to_string(),
            rec.alphas[i].to_string(),
            rec.removed[i].to_string(),
            rec.rho[i].to_string(),
            rec.clean_accuracy[i].to_string(),
            rec.adv_accuracy[i].to_string(),
            rec.step_class_clean[i].name().to_string(),
            rec.step_class_adv[i].name().to_string(),
        ]);
    }
    let plot = LinePlot {
        title: format!("{}, {}: accuracy against threshold", scope_name(layer), filter.label()),
        x_label: "Threshold a".into(),
        y_label: "Accuracy".into(),
        series: vec![
            series("Clean accuracy", pts(&rec.clean_accuracy), palette::CLEAN, false, true),
            series("Adversarial accuracy", pts(&rec.adv_accuracy), palette::ADVERSARIAL, false, true),
        ],
        y2: Some((
            "Fraction retained ρ".into(),
            vec![series("Fraction retained ρ", pts(&rec.rho), palette::RETAINED, true, false)],
        )),
        // Both axes are fractions: the same scale lets rho be read against the accuracies.
        y2_range: Some([0.0, 1.0]),
        markers: current.map(|a| Marker { x: a, label: format!("a = {a:.4}") }).into_iter().collect(),
        hlines: Vec::new(),
        x_range: None,
        y_range: Some([0.0, 1.0]),
        x_whole: false,
    };
    Ok((Figure::Line(plot), table))
}

/// Filters of the compression view (METHOD.md section 9).
const COMPRESSION_FILTERS: [FilterKind; 3] = [FilterKind::H1, FilterKind::H2, FilterKind::H0];

/// The compression view of one layer (or "global"): normalised clean and adversarial accuracy
/// against the fraction retained rho for h1, h2 and h0, with the diagonal P^ = rho.
pub fn compression(r: &SweepResult, layer: &str) -> Result<Built> {
    let recs: Vec<&SweepRecord> = COMPRESSION_FILTERS
        .iter()
        .filter_map(|&f| r.records.iter().find(|x| x.layer == layer && x.filter == f))
        .filter(|x| !x.clean_correct.is_empty())
        .collect();
    if recs.is_empty() {
        bail!(
            "the compression view of `{layer}` needs an h1, h2 or h0 sweep of it (run sweep with --filters h0,h1,h2); \
             the sweep has {}",
            holdings(r)
        );
    }
    let b = &r.baseline;
    // Below 1e-6 the baseline is not divided by (METHOD.md section 5): the view shows raw accuracy.
    let norm = |acc: f64, base: f64| if base < 1e-6 { acc } else { acc / base };
    let mut table = Table::new(&["filter", "step", "alpha", "rho", "clean_normalised", "adv_normalised"]);
    let mut plotted = Vec::new();
    for rec in &recs {
        let done = rec.clean_correct.len();
        let mut clean = Vec::with_capacity(done);
        let mut adv = Vec::with_capacity(done);
        for i in 0..done {
            let (c, a) = (norm(rec.clean_accuracy[i], b.clean_accuracy), norm(rec.adv_accuracy[i], b.adv_accuracy));
            clean.push([rec.rho[i], c]);
            adv.push([rec.rho[i], a]);
            table.row([
                rec.filter.to_string(),
                i.to_string(),
                rec.alphas[i].to_string(),
                rec.rho[i].to_string(),
                c.to_string(),
                a.to_string(),
            ]);
        }
        let colour = palette::filter(rec.filter);
        plotted.push(series(&format!("{} clean", rec.filter), clean, colour, false, false));
        plotted.push(series(&format!("{} adversarial", rec.filter), adv, colour, true, false));
    }
    plotted.push(series("P / P_base = ρ", vec![[0.0, 0.0], [1.0, 1.0]], palette::RETAINED, true, false));
    let plot = LinePlot {
        title: format!("{}: accuracy against weights retained", scope_name(layer)),
        x_label: "Fraction of weights retained ρ".into(),
        y_label: "Normalised accuracy P / P_base".into(),
        series: plotted,
        x_range: Some([0.0, 1.0]),
        ..Default::default()
    };
    Ok((Figure::Line(plot), table))
}

/// Per-layer S_clean, S_adv and S_diff as grouped bars, layer labels in their class colour.
/// `filter` None averages over the complete h1, h2 and h3 records of each layer (the basis of
/// the layer classes), or over every complete record when a layer has none of those.
pub fn layer_scores(r: &SweepResult, filter: Option<FilterKind>) -> Result<Built> {
    let mut categories = Vec::new();
    let mut values: [Vec<f64>; 3] = Default::default();
    let mut classes = Vec::new();
    let mut table = Table::new(&["layer", "s_clean", "s_adv", "s_diff", "records", "class"]);
    for layer in layers(r) {
        let complete: Vec<&SweepRecord> =
            r.records.iter().filter(|x| x.layer == layer && x.s_clean.is_some() && x.s_adv.is_some()).collect();
        let chosen: Vec<&SweepRecord> = match filter {
            Some(f) => complete.iter().copied().filter(|x| x.filter == f).collect(),
            None if complete.iter().any(|x| FilterKind::PAPER.contains(&x.filter)) => {
                complete.iter().copied().filter(|x| FilterKind::PAPER.contains(&x.filter)).collect()
            }
            None => complete,
        };
        if chosen.is_empty() {
            continue;
        }
        let mean = |get: fn(&SweepRecord) -> Option<f64>| {
            chosen.iter().filter_map(|x| get(x)).sum::<f64>() / chosen.len() as f64
        };
        let s = [mean(|x| x.s_clean), mean(|x| x.s_adv), mean(|x| x.s_diff)];
        let class = r.layer_classes.iter().find(|c| c.layer == layer).map(|c| c.class);
        let names: Vec<&str> = chosen.iter().map(|x| x.filter.name()).collect();
        table.row([
            layer.clone(),
            s[0].to_string(),
            s[1].to_string(),
            s[2].to_string(),
            names.join(" "),
            class.map(|c| c.name().to_string()).unwrap_or_default(),
        ]);
        for (v, x) in values.iter_mut().zip(s) {
            v.push(x);
        }
        classes.push(class.map(Class::index));
        categories.push(layer);
    }
    if categories.is_empty() {
        let which = filter.map_or(String::new(), |f| format!("{f} "));
        bail!("the sweep has no complete {which}record, so no scores; it has {}", holdings(r));
    }
    let basis = filter.map_or("mean over h1, h2 and h3".into(), |f| f.label().to_string());
    let [clean, adv, diff] = values;
    let plot = BarPlot {
        title: format!("Filtering scores per layer ({basis})"),
        categories,
        x_label: "Layer".into(),
        y_label: "Score".into(),
        series: vec![
            ("S_clean".into(), clean, palette::CLEAN),
            ("S_adv".into(), adv, palette::ADVERSARIAL),
            ("S_diff".into(), diff, palette::SCORE_DIFF),
        ],
        category_class: classes,
        ..Default::default()
    };
    Ok((Figure::Bar(plot), table))
}
