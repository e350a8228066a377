//! What feeds what in a network: its parameterised layers and the points where branches
//! meet (residual sums, concatenations, products), in the order the forward pass meets
//! them. Pure functions on the way (activations, pooling, reshapes) are not nodes: an
//! edge from one node to another means the second reads the first's output through them.

use serde::Serialize;

/// A node's position in [`ModelGraph::nodes`].
pub type NodeId = usize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// The image batch.
    Input,
    /// A parameterised layer, named as in the parameter store.
    Layer,
    /// Where two or more branches meet: `add`, `concat`, `mul`, `matmul`, ...
    Merge(String),
    /// The class scores.
    Output,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphNode {
    /// The layer's name; for a merge, the module it belongs to.
    pub name: String,
    pub kind: NodeKind,
    /// The nodes whose outputs this one reads, in argument order.
    pub inputs: Vec<NodeId>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelGraph {
    pub nodes: Vec<GraphNode>,
}

impl ModelGraph {
    /// Whether some node reads anything but the node before it: residual connections,
    /// parallel branches.
    pub fn branches(&self) -> bool {
        self.nodes.iter().enumerate().skip(1).any(|(i, n)| n.inputs != [i - 1])
    }

    /// The nodes that read node `id`.
    pub fn consumers(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes.iter().enumerate().filter(move |(_, n)| n.inputs.contains(&id)).map(|(i, _)| i)
    }

    /// The node of layer `name` (its first use, for a layer an ONNX graph reads twice).
    pub fn layer(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.kind == NodeKind::Layer && n.name == name)
    }

    /// A short label: the layer's name, or the merge's kind and module.
    pub fn label(&self, id: NodeId) -> String {
        let n = &self.nodes[id];
        match &n.kind {
            NodeKind::Input => "input".to_string(),
            NodeKind::Output => "output".to_string(),
            NodeKind::Layer => n.name.clone(),
            NodeKind::Merge(op) if n.name.is_empty() => op.clone(),
            NodeKind::Merge(op) => format!("{op} ({})", n.name),
        }
    }

    /// The edges (from, to) between rows that are not neighbours, sorted: the spans a
    /// drawing of the rows must route beside them.
    pub fn skips(&self) -> Vec<(NodeId, NodeId)> {
        let mut v: Vec<(NodeId, NodeId)> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.inputs.iter().filter(move |&&s| s + 1 != i).map(move |&s| (s, i)))
            .collect();
        v.sort_unstable();
        v
    }
}

/// Records a forward pass's structure: each call takes the nodes its input comes from and
/// returns the node of its output.
#[derive(Debug)]
pub struct GraphBuilder {
    nodes: Vec<GraphNode>,
}

impl GraphBuilder {
    /// A builder and the input node.
    pub fn new() -> (Self, NodeId) {
        (Self { nodes: vec![GraphNode { name: "input".into(), kind: NodeKind::Input, inputs: vec![] }] }, 0)
    }

    pub fn layer(&mut self, name: &str, from: NodeId) -> NodeId {
        self.push(name, NodeKind::Layer, vec![from])
    }

    /// Branches meeting in `op` inside module `name`. Inputs that are one node are one
    /// branch: no merge is recorded then (`x * sigmoid(x)` is an activation, not a join).
    /// A second join of the same kind in one module is named `module #2`, and so on.
    pub fn merge(&mut self, op: &str, name: &str, from: &[NodeId]) -> NodeId {
        let mut inputs: Vec<NodeId> = Vec::with_capacity(from.len());
        for &f in from {
            if !inputs.contains(&f) {
                inputs.push(f);
            }
        }
        match inputs.as_slice() {
            [one] => *one,
            _ => {
                let kind = NodeKind::Merge(op.to_string());
                let same = |n: &String| self.nodes.iter().filter(|m| m.kind == kind && &m.name == n).count();
                let mut unique = name.to_string();
                let mut k = 1;
                while same(&unique) > 0 {
                    k += 1;
                    unique = format!("{name} #{k}");
                }
                self.push(&unique, kind, inputs)
            }
        }
    }

    pub fn finish(mut self, out: NodeId) -> ModelGraph {
        self.push("output", NodeKind::Output, vec![out]);
        ModelGraph { nodes: self.nodes }
    }

    fn push(&mut self, name: &str, kind: NodeKind, inputs: Vec<NodeId>) -> NodeId {
        self.nodes.push(GraphNode { name: name.to_string(), kind, inputs });
        self.nodes.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_residual_block_records_its_shortcut() {
        let (mut g, x) = GraphBuilder::new();
        let a = g.layer("conv1", x);
        let b = g.layer("conv2", a);
        let sum = g.merge("add", "block", &[b, x]);
        let graph = g.finish(sum);
        assert_eq!(graph.nodes.len(), 5);
        assert_eq!(graph.nodes[3].inputs, [2, 0]);
        assert!(graph.branches());
        assert_eq!(graph.skips(), [(0, 3)]);
        assert_eq!(graph.label(3), "add (block)");
        assert_eq!(graph.consumers(0).collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn one_branch_is_no_merge() {
        let (mut g, x) = GraphBuilder::new();
        let a = g.layer("conv", x);
        assert_eq!(g.merge("mul", "act", &[a, a]), a);
        let b = g.layer("other", x);
        let m1 = g.merge("add", "block", &[a, b]);
        let m2 = g.merge("add", "block", &[m1, b]);
        assert_eq!(g.nodes[m2].name, "block #2");
        let graph = g.finish(m2);
        assert_eq!(graph.layer("conv"), Some(1));
    }
}
