//! Learning-landscape maps (METHOD.md section 8): threshold step (x) by epoch (y), per layer,
//! filter and view.

use anyhow::{Result, bail};

use super::{Built, View, class_categories, listing};
use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::landscape::{CombinedMap, LandscapeResult, LayerMaps};
use crate::export::figures::{Figure, Heatmap};
use crate::export::tables::Table;
use crate::render::colormap::Colormap;
use crate::render::palette;

fn holdings(r: &LandscapeResult) -> String {
    listing(&r.maps.iter().map(|m| format!("{} {}", m.layer, m.filter)).collect::<Vec<_>>())
}

fn maps<'a>(r: &'a LandscapeResult, layer: &str, filter: FilterKind) -> Result<&'a LayerMaps> {
    match r.maps.iter().find(|m| m.layer == layer && m.filter == filter) {
        Some(m) => Ok(m),
        None => bail!("the landscape has no {filter} map of layer `{layer}`; it has {}", holdings(r)),
    }
}

/// A rows-by-steps grid from ragged rows (a cancelled run leaves rows short): missing cells NaN.
fn grid<T>(rows: &[Vec<T>], value: impl Fn(&T) -> f32) -> (usize, usize, Vec<f32>) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut values = Vec::with_capacity(rows.len() * cols);
    for row in rows {
        values.extend(row.iter().map(&value));
        values.extend(std::iter::repeat_n(f32::NAN, cols - row.len()));
    }
    (rows.len(), cols, values)
}

/// The map's frame: epochs upwards, steps to the right, and the table of its cells.
fn map(r: &LandscapeResult, title: String, rows: usize, cols: usize, values: Vec<f32>, column: &str) -> Built {
    let epochs: Vec<String> = r.checkpoints.iter().take(rows).map(|c| c.epoch.to_string()).collect();
    let mut table = Table::new(&["epoch", "step", column]);
    for (e, epoch) in epochs.iter().enumerate() {
        for s in 0..cols {
            let v = values[e * cols + s];
            if !v.is_nan() {
                table.row([epoch.clone(), s.to_string(), v.to_string()]);
            }
        }
    }
    let heatmap = Heatmap {
        title,
        rows,
        cols,
        values,
        range: [0.0, 1.0],
        colormap: Colormap::Viridis,
        x_label: "Threshold step i".into(),
        y_label: "Epoch".into(),
        row_labels: epochs,
        row0_at_bottom: true,
        ..Default::default()
    };
    (Figure::Heatmap(heatmap), table)
}

/// Accuracy of every (epoch, step) of one layer's sweeps with `filter`.
pub fn landscape_accuracy(r: &LandscapeResult, layer: &str, filter: FilterKind, view: View) -> Result<Built> {
    let m = maps(r, layer, filter)?;
    let acc = if view == View::Clean { &m.clean_accuracy } else { &m.adv_accuracy };
    let (rows, cols, values) = grid(acc, |&v| v as f32);
    let title = format!("Learning landscape of {layer}, {}: {} accuracy", filter.label(), view.name());
    let (mut fig, table) = map(r, title, rows, cols, values, &format!("{}_accuracy", view.short()));
    if let Figure::Heatmap(h) = &mut fig {
        h.colorbar_label = format!("{} accuracy", crate::export::figures::sentence_case(view.name()));
    }
    Ok((fig, table))
}

/// The class (fragile, robust, antifragile) of every (epoch, step) with `filter`.
pub fn landscape_classes(r: &LandscapeResult, layer: &str, filter: FilterKind, view: View) -> Result<Built> {
    let m = maps(r, layer, filter)?;
    let classes = if view == View::Clean { &m.class_clean } else { &m.class_adv };
    let (rows, cols, values) = grid(classes, |&c| c.index() as f32);
    let title = format!("Learning landscape of {layer}, {}: {} classes", filter.label(), view.name());
    let (mut fig, table) = map(r, title, rows, cols, values, "class_index");
    if let Figure::Heatmap(h) = &mut fig {
        h.categories = Some(class_categories());
        h.range = [0.0, 2.0];
    }
    Ok((fig, table))
}

/// Influential cells of one layer: fragile under any filter.
pub fn landscape_influential(r: &LandscapeResult, layer: &str, view: View) -> Result<Built> {
    let Some(c): Option<&CombinedMap> = r.combined.iter().find(|c| c.layer == layer) else {
        let layers: Vec<String> = r.combined.iter().map(|c| c.layer.clone()).collect();
        bail!("the landscape has no combined map of layer `{layer}`; it has {}", listing(&layers));
    };
    let cells = if view == View::Clean { &c.influential_clean } else { &c.influential_adv };
    let (rows, cols, values) = grid(cells, |&b| if b { 1.0 } else { 0.0 });
    let title = format!("Learning landscape of {layer}: influential steps ({})", view.name());
    let (mut fig, table) = map(r, title, rows, cols, values, "influential");
    if let Figure::Heatmap(h) = &mut fig {
        h.categories = Some(vec![
            ("Not influential".into(), palette::lighten(palette::INK, 0.85)),
            (
                "Influential (fragile under a filter)".into(),
                palette::class(crate::engine::analysis::scores::Class::Fragile),
            ),
        ]);
    }
    Ok((fig, table))
}
