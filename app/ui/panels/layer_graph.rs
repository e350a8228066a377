//! The model panel's layer table drawn as a graph: one row per node (the input, each
//! layer in forward order, each join of branches), a dot per row in a gutter on the left,
//! and a line for every edge. An edge between neighbouring rows runs down the spine; one
//! that skips rows (a residual shortcut, a parallel branch) gets its own lane beside it.

use egui::{Color32, Pos2, Rect, Sense, Stroke, pos2, vec2};

use crate::engine::model::graph::{ModelGraph, NodeId, NodeKind};

/// Horizontal room per lane, in points.
const LANE: f32 = 9.0;
const DOT: f32 = 3.0;

/// Lanes for the edges that skip rows: each (from, to, lane), lanes numbered from 1 (the
/// spine is 0); edges whose row spans overlap get different lanes.
pub fn lanes(graph: &ModelGraph) -> Vec<(NodeId, NodeId, usize)> {
    let mut ends: Vec<NodeId> = Vec::new(); // the last row each lane is busy to
    graph
        .skips()
        .into_iter()
        .map(|(from, to)| {
            let lane = match ends.iter().position(|&end| end <= from) {
                Some(l) => {
                    ends[l] = to;
                    l
                }
                None => {
                    ends.push(to);
                    ends.len() - 1
                }
            };
            (from, to, lane + 1)
        })
        .collect()
}

/// The gutter's width for `lane_count` lanes.
pub fn width(lane_count: usize) -> f32 {
    LANE * (lane_count as f32 + 1.0) + DOT
}

/// Allocates one row's gutter cell and returns its rect, to draw into once every row is laid out.
pub fn cell(ui: &mut egui::Ui, width: f32) -> Rect {
    ui.allocate_exact_size(vec2(width, ui.spacing().interact_size.y), Sense::hover()).0
}

/// Draws the edges and dots into the cells laid out (`cells[node]`, None for rows not shown).
pub fn paint(
    ui: &egui::Ui,
    graph: &ModelGraph,
    cells: &[Option<Rect>],
    lanes: &[(NodeId, NodeId, usize)],
    dot: impl Fn(NodeId) -> Color32,
) {
    let painter = ui.painter();
    let line = Stroke::new(1.2, ui.visuals().weak_text_color());
    let spine = |r: Rect| r.left() + DOT + 1.0;
    let at = |id: NodeId| cells.get(id).copied().flatten();
    // Edges between neighbouring rows run down the spine; the others (`lanes`) beside it.
    for (i, n) in graph.nodes.iter().enumerate().skip(1) {
        if let (true, Some(from), Some(to)) = (n.inputs.contains(&(i - 1)), at(i - 1), at(i)) {
            painter.line_segment([pos2(spine(to), from.center().y), pos2(spine(to), to.center().y)], line);
        }
    }
    for &(s, i, lane) in lanes {
        let (Some(from), Some(to)) = (at(s), at(i)) else { continue };
        let (x, lx) = (spine(to), spine(to) + LANE * lane as f32);
        let points: Vec<Pos2> = vec![
            pos2(x, from.center().y),
            pos2(lx, from.center().y + 3.0),
            pos2(lx, to.center().y - 3.0),
            pos2(x, to.center().y),
        ];
        painter.add(egui::Shape::line(points, line));
    }
    for (i, n) in graph.nodes.iter().enumerate() {
        let Some(r) = at(i) else { continue };
        let c = pos2(spine(r), r.center().y);
        match n.kind {
            NodeKind::Merge(_) => {
                painter.circle(c, DOT + 0.5, ui.visuals().panel_fill, Stroke::new(1.2, ui.visuals().text_color()));
            }
            _ => {
                painter.circle_filled(c, DOT, dot(i));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::GraphBuilder;

    #[test]
    fn overlapping_skips_take_separate_lanes() {
        let (mut g, x) = GraphBuilder::new();
        let a = g.layer("a", x);
        let b = g.layer("b", a);
        let s1 = g.merge("add", "one", &[b, x]); // skips from the input
        let c = g.layer("c", s1);
        let d = g.layer("d", s1); // a parallel branch
        let m = g.merge("concat", "two", &[c, d, x]);
        let graph = g.finish(m);
        let l = lanes(&graph);
        // (0,3) and (0,6) overlap; (3,5) starts where (0,3) ends and shares its lane; (4,6)
        // overlaps both others.
        assert_eq!(l, [(0, 3, 1), (0, 6, 2), (3, 5, 1), (4, 6, 3)]);
    }
}
