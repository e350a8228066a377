//! The weight heatmap of one layer: convolution kernels tiled per output channel, linear
//! weights as a matrix, painted with a colormap or with per-weight classes.

use anyhow::{Result, bail};

use super::{Built, class_categories};
use crate::engine::analysis::scores::Class;
use crate::export::figures::{Figure, Heatmap};
use crate::export::tables::Table;
use crate::render::colormap::Colormap;

/// What to paint: one layer's weights and, optionally, what a filter or a characterisation
/// says about each of them.
#[derive(Debug, Clone, Copy)]
pub struct WeightView<'a> {
    pub layer: &'a str,
    /// Unfiltered values, in the tensor's row-major order.
    pub values: &'a [f32],
    /// `[out, in, kh, kw]` (convolution), `[out, in]` (linear); other ranks are shown as
    /// `[shape[0], rest]`.
    pub shape: &'a [usize],
    /// Values mapped to the ends of the colormap.
    pub range: [f32; 2],
    pub colormap: Colormap,
    /// Weights removed by the current filter: shaded.
    pub removed: Option<&'a [bool]>,
    /// Legend entry of the removed weights ("Removed by h1 at a = 0.05").
    pub removed_label: &'a str,
    /// Per-weight classes: painted in class colours instead of values.
    pub classes: Option<&'a [Class]>,
}

/// Where each weight lands in the picture.
struct Tiling {
    rows: usize,
    cols: usize,
    /// Cell index of every weight.
    cell: Vec<usize>,
    kernels: bool,
}

/// Convolution kernels: the `in` kernels of one output channel side by side (one block), the
/// blocks in a grid whose shape is nearest the plot's 4:3, one empty cell between kernels.
fn tile_kernels(out: usize, inp: usize, kh: usize, kw: usize) -> Tiling {
    let block_w = inp * (kw + 1) - 1;
    let aspect = |bc: usize| {
        let br = out.div_ceil(bc);
        (bc * (block_w + 1) - 1) as f64 / (br * (kh + 1) - 1) as f64
    };
    let bc = (1..=out)
        .min_by(|&a, &b| (aspect(a) / (4.0 / 3.0)).ln().abs().total_cmp(&(aspect(b) / (4.0 / 3.0)).ln().abs()));
    let bc = bc.unwrap_or(1);
    let br = out.div_ceil(bc);
    let (rows, cols) = (br * (kh + 1) - 1, bc * (block_w + 1) - 1);
    let mut cell = Vec::with_capacity(out * inp * kh * kw);
    for o in 0..out {
        let (by, bx) = ((o / bc) * (kh + 1), (o % bc) * (block_w + 1));
        for i in 0..inp {
            for y in 0..kh {
                for x in 0..kw {
                    cell.push((by + y) * cols + bx + i * (kw + 1) + x);
                }
            }
        }
    }
    Tiling { rows, cols, cell, kernels: true }
}

fn tiling(shape: &[usize], n: usize) -> Tiling {
    match *shape {
        [out, inp, kh, kw] if out * inp * kh * kw == n && n > 0 => tile_kernels(out, inp, kh, kw),
        _ => {
            let rows = shape.first().copied().filter(|&r| r > 0 && n.is_multiple_of(r)).unwrap_or(1);
            Tiling { rows, cols: n / rows, cell: (0..n).collect(), kernels: false }
        }
    }
}

/// The weight heatmap of `v.layer` and a table of every weight.
pub fn weight_heatmap(v: &WeightView) -> Result<Built> {
    let n = v.values.len();
    if n == 0 || v.shape.iter().product::<usize>() != n {
        bail!("the weights of `{}` do not match their shape {:?} ({n} values)", v.layer, v.shape);
    }
    for (what, len) in [("removed mask", v.removed.map(<[bool]>::len)), ("classes", v.classes.map(<[Class]>::len))] {
        if let Some(len) = len
            && len != n
        {
            bail!("the {what} of `{}` has {len} entries for {n} weights", v.layer);
        }
    }
    let t = tiling(v.shape, n);
    let mut values = vec![f32::NAN; t.rows * t.cols];
    let mut shaded = if v.removed.is_some() { vec![false; t.rows * t.cols] } else { Vec::new() };
    for (k, &cell) in t.cell.iter().enumerate() {
        values[cell] = match v.classes {
            Some(c) => c[k].index() as f32,
            None => v.values[k],
        };
        if let Some(r) = v.removed {
            shaded[cell] = r[k];
        }
    }

    let mut table = Table::new(&["index", "position", "value", "removed", "class"]);
    let strides: Vec<usize> = (0..v.shape.len()).map(|d| v.shape[d + 1..].iter().product()).collect();
    for k in 0..n {
        let position: Vec<String> = strides.iter().zip(v.shape).map(|(s, d)| ((k / s) % d).to_string()).collect();
        table.row([
            k.to_string(),
            position.join(" "),
            v.values[k].to_string(),
            v.removed.map(|r| r[k].to_string()).unwrap_or_default(),
            v.classes.map(|c| c[k].name().to_string()).unwrap_or_default(),
        ]);
    }

    let dims: Vec<String> = v.shape.iter().map(usize::to_string).collect();
    let what = if v.classes.is_some() { "classes" } else { "weights" };
    let (x_label, y_label) = match *v.shape {
        [_, 1, ..] if t.kernels => ("One kernel per output channel, in reading order".into(), String::new()),
        [_, inp, ..] if t.kernels => (
            format!("Blocks: the {inp} input kernels of one output channel"),
            "Output channels, in reading order".into(),
        ),
        _ => ("Input".to_string(), "Output".to_string()),
    };
    let heatmap = Heatmap {
        title: format!("{} {what} ({})", v.layer, dims.join(" × ")),
        rows: t.rows,
        cols: t.cols,
        values,
        range: if v.classes.is_some() { [0.0, 2.0] } else { v.range },
        colormap: v.colormap,
        categories: v.classes.map(|_| class_categories()),
        x_label,
        y_label,
        colorbar_label: "Weight value".into(),
        shaded,
        shaded_label: v.removed_label.to_string(),
        // Tiled kernels have no meaningful cell indices: no ticks.
        row_labels: if t.kernels { vec![String::new(); t.rows] } else { Vec::new() },
        col_labels: if t.kernels { vec![String::new(); t.cols] } else { Vec::new() },
        row0_at_bottom: false,
        equal_aspect: t.kernels,
    };
    Ok((Figure::Heatmap(heatmap), table))
}
