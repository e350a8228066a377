//! Figures of nodal dropout (METHOD.md section 7): accuracy per removed kernel and the attack's
//! displacement per kernel.

use super::{Built, cell};
use crate::engine::analysis::dropout::DropoutResult;
use crate::engine::analysis::scores::Class;
use crate::export::figures::{BarPlot, Figure};
use crate::export::tables::Table;
use crate::render::palette;

/// Bar colours of fragile (A_k < mean) and null (A_k >= baseline) kernels.
const FRAGILE: [u8; 3] = palette::class(Class::Fragile);
const NULL: [u8; 3] = palette::SERIES[palette::NULL_KERNEL];

fn table(r: &DropoutResult) -> Table {
    let mut t = Table::new(&["kernel", "correct", "accuracy", "fragile", "null", "d"]);
    for k in 0..r.accuracy_per_kernel.len() {
        t.row([
            k.to_string(),
            r.correct_per_kernel.get(k).map(|c| c.to_string()).unwrap_or_default(),
            r.accuracy_per_kernel[k].to_string(),
            r.fragile.contains(&k).to_string(),
            r.null.contains(&k).to_string(),
            cell(r.d_per_kernel.get(k).copied()),
        ]);
    }
    t
}

/// Kernels as bar categories, coloured fragile or null, with the legend of those colours.
struct Kernels {
    names: Vec<String>,
    colours: Vec<Option<[u8; 3]>>,
    legend: Vec<(String, [u8; 3])>,
    /// The legend name of the uncoloured bars; empty when every kernel is fragile or null.
    others: String,
}

fn kernels(r: &DropoutResult, n: usize) -> Kernels {
    let colour = |k: usize| {
        if r.fragile.contains(&k) {
            Some(FRAGILE)
        } else if r.null.contains(&k) {
            Some(NULL)
        } else {
            None
        }
    };
    let mut legend = vec![("Fragile kernel (A_k < mean)".to_string(), FRAGILE)];
    if !r.null.is_empty() {
        legend.push(("Null kernel (A_k ≥ baseline)".to_string(), NULL));
    }
    let colours: Vec<_> = (0..n).map(colour).collect();
    let others = if colours.iter().any(Option::is_none) { "Other kernels".to_string() } else { String::new() };
    Kernels { names: (0..n).map(|k| k.to_string()).collect(), colours, legend, others }
}

/// A_k, the clean accuracy with kernel k removed, per kernel, with the mean and the baseline.
pub fn dropout_accuracy(r: &DropoutResult) -> Built {
    let acc = &r.accuracy_per_kernel;
    let k = kernels(r, acc.len());
    // The interesting differences are a fraction of a percent: zoom in on them.
    let lo = acc.iter().copied().chain([r.mean, r.baseline_accuracy]).fold(f64::INFINITY, f64::min);
    let hi = acc.iter().copied().chain([r.mean, r.baseline_accuracy]).fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.15).max(0.002);
    let plot = BarPlot {
        title: format!("Nodal dropout of {}: accuracy with one kernel removed", r.layer),
        categories: k.names,
        x_label: "Kernel k".into(),
        y_label: "Clean accuracy A_k".into(),
        series: vec![(k.others, acc.clone(), palette::BARS)],
        hlines: vec![
            (r.mean, format!("Mean {:.4}", r.mean)),
            (r.baseline_accuracy, format!("Baseline {:.4}", r.baseline_accuracy)),
        ],
        y_range: Some([(lo - pad).max(0.0), (hi + pad).min(1.0)]),
        bar_colours: k.colours,
        legend_extra: k.legend,
        ..Default::default()
    };
    (Figure::Bar(plot), table(r))
}

/// d_k, how far the attack moves each kernel's output, with d_F (fragile kernels) and d_N (the
/// others): the attack targets fragile kernels when d_F > d_N.
pub fn dropout_targeting(r: &DropoutResult) -> Built {
    let k = kernels(r, r.d_per_kernel.len());
    let mut hlines = Vec::new();
    if let Some(d) = r.d_fragile {
        hlines.push((d, format!("d_F {d:.4}")));
    }
    if let Some(d) = r.d_other {
        hlines.push((d, format!("d_N {d:.4}")));
    }
    let verdict = if r.targeted { "targets" } else { "does not target" };
    let plot = BarPlot {
        title: format!("Attack on {}: the attack {verdict} fragile kernels", r.layer),
        categories: k.names,
        x_label: "Kernel k".into(),
        y_label: "Mean |z_k(x_adv) − z_k(x)|".into(),
        series: vec![(k.others, r.d_per_kernel.clone(), palette::BARS)],
        hlines,
        bar_colours: k.colours,
        legend_extra: k.legend,
        ..Default::default()
    };
    (Figure::Bar(plot), table(r))
}
