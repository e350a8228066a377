//! An ONNX graph ready to run: nodes in order over numbered value slots, cut into stages
//! wherever a single value carries everything forward (between residual blocks, say), so
//! that a sweep reuses the work before the filtered layer as on native networks.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use candle_core::{Device, Result as CResult, Tensor};

use super::ops::{self, Op};
use super::value::Value;
use crate::engine::model::layers::ForwardCtx;
use crate::engine::model::{Body, GraphBuilder, NodeId, Stage};

pub struct Node {
    pub op: Op,
    pub name: String,
    /// The PyTorch module it belongs to, where the exporter said.
    pub module: Option<String>,
    pub op_type: String,
    /// Slots read (None: an optional input left out).
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<usize>,
}

/// Nodes and constants shared by the stages.
pub struct Program {
    pub nodes: Vec<Node>,
    /// Initializers and other values fixed at load, by slot.
    pub constants: Vec<Option<Value>>,
    /// After which node each slot is last read (usize::MAX: the graph's output).
    last_use: Vec<usize>,
    pub device: Device,
}

impl Program {
    pub fn new(nodes: Vec<Node>, constants: Vec<Option<Value>>, outputs: &[usize], device: Device) -> Self {
        let mut last_use = vec![0; constants.len()];
        for (k, n) in nodes.iter().enumerate() {
            for &i in n.inputs.iter().flatten() {
                last_use[i] = k;
            }
        }
        for &o in outputs {
            last_use[o] = usize::MAX;
        }
        Self { nodes, constants, last_use, device }
    }

    /// Runs `range` of nodes with `input` in slot `from`; returns slot `to`.
    fn run(
        &self,
        range: Range<usize>,
        from: usize,
        to: usize,
        input: &Tensor,
        ctx: &mut ForwardCtx,
    ) -> CResult<Tensor> {
        match self.execute(range, vec![(from, Value::Float(input.clone()))], &[to], ctx)?.pop() {
            Some(Value::Float(t)) => Ok(t),
            Some(Value::Int(i)) => i.to_float(&self.device),
            None => Err(candle_core::Error::Msg(format!("the graph never computes slot {to}"))),
        }
    }

    /// Runs every node on `inputs` (slot, value) and returns the values of `outputs`.
    pub fn run_all(&self, inputs: Vec<(usize, Value)>, outputs: &[usize], ctx: &mut ForwardCtx) -> CResult<Vec<Value>> {
        self.execute(0..self.nodes.len(), inputs, outputs, ctx)
    }

    fn execute(
        &self,
        range: Range<usize>,
        inputs: Vec<(usize, Value)>,
        keep: &[usize],
        ctx: &mut ForwardCtx,
    ) -> CResult<Vec<Value>> {
        let mut slots: Vec<Option<Value>> = vec![None; self.constants.len()];
        for (slot, v) in inputs {
            slots[slot] = Some(v);
        }
        for k in range {
            let node = &self.nodes[k];
            let outs = {
                let ins: Vec<Option<&Value>> = node
                    .inputs
                    .iter()
                    .map(|i| i.and_then(|i| slots[i].as_ref().or(self.constants[i].as_ref())))
                    .collect();
                if let Some(missing) = node.inputs.iter().zip(&ins).find_map(|(i, v)| i.filter(|_| v.is_none())) {
                    return Err(candle_core::Error::Msg(format!(
                        "node `{}` ({}) reads slot {missing} before it is computed",
                        node.name, node.op_type
                    )));
                }
                ops::run(&node.op, &ins, ctx, &self.device, node.outputs.len())
                    .map_err(|m| candle_core::Error::Msg(format!("node `{}` ({}): {m}", node.name, node.op_type)))?
            };
            for (&slot, v) in node.outputs.iter().zip(outs) {
                slots[slot] = Some(v);
            }
            // Free what no later node reads.
            for &i in node.inputs.iter().flatten() {
                if self.last_use[i] == k && !keep.contains(&i) {
                    slots[i] = None;
                }
            }
        }
        keep.iter()
            .map(|&s| {
                slots[s]
                    .clone()
                    .or_else(|| self.constants[s].clone())
                    .ok_or_else(|| candle_core::Error::Msg(format!("the graph never computes slot {s}")))
            })
            .collect()
    }
}

pub struct Segment {
    program: Arc<Program>,
    range: Range<usize>,
    from: usize,
    to: usize,
}

impl Stage for Segment {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        self.program.run(self.range.clone(), self.from, self.to, x, ctx)
    }
    fn contains(&self, name: &str) -> bool {
        self.program.nodes[self.range.clone()].iter().any(|n| n.op.contains(name))
    }

    /// Follows each computed value back to the layer or join it comes from. Values made
    /// only from constants and shapes (the exporters' shape arithmetic) come from none, so
    /// `Reshape(x, Shape(x)...)` reads one branch; a node reading values of two or more
    /// origins is where branches meet.
    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        let mut origin: HashMap<usize, NodeId> = HashMap::from([(self.from, x)]);
        for node in &self.program.nodes[self.range.clone()] {
            if matches!(node.op, Op::Shape { .. }) {
                continue;
            }
            let sources: Vec<NodeId> = node.inputs.iter().flatten().filter_map(|s| origin.get(s).copied()).collect();
            let Some(&first) = sources.first() else { continue };
            let out = match &node.op {
                Op::Conv { conv, .. } => conv.describe(g, first),
                Op::ConvBn { unit, .. } => unit.describe(g, first),
                Op::Linear(l) => l.describe(g, first),
                Op::BatchNorm(b) => b.describe(g, first),
                _ => {
                    let module = node.module.as_deref().unwrap_or(&node.name);
                    g.merge(&node.op_type.to_ascii_lowercase(), module, &sources)
                }
            };
            for &o in &node.outputs {
                origin.insert(o, out);
            }
        }
        origin.get(&self.to).copied().unwrap_or(x)
    }
}

pub struct Graph {
    segments: Vec<Segment>,
}

impl Graph {
    /// Cuts the program after every node where only one computed value is still needed.
    pub fn new(program: Program, input: usize, output: usize) -> Self {
        let program = Arc::new(program);
        let computed = |slot: usize| program.constants[slot].is_none();
        let mut segments = Vec::new();
        let (mut start, mut from) = (0, input);
        let mut live: Vec<usize> = vec![input];
        for (k, node) in program.nodes.iter().enumerate() {
            live.extend(node.outputs.iter().copied());
            live.retain(|&s| computed(s) && program.last_use[s] > k);
            live.sort_unstable();
            live.dedup();
            let last = k + 1 == program.nodes.len();
            if let ([only], false) = (live.as_slice(), last) {
                segments.push(Segment { program: program.clone(), range: start..k + 1, from, to: *only });
                (start, from) = (k + 1, *only);
            }
        }
        segments.push(Segment { program: program.clone(), range: start..program.nodes.len(), from, to: output });
        Self { segments }
    }
}

impl Body for Graph {
    fn stages(&self) -> Vec<&dyn Stage> {
        self.segments.iter().map(|s| s as &dyn Stage).collect()
    }
}
