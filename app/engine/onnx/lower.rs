//! From an ONNX `GraphProto` to a runnable [`Program`]: every node checked against the
//! supported operators, the weights of convolutions, linear layers and batch norms handed
//! to the engine's layers (so they are filterable parameters, named as PyTorch named
//! them where the exporter kept the name), and the usual chains fused as on native
//! networks (convolution, batch norm and activation; add and ReLU).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use candle_core::{Device, Tensor};

use super::graph::{Node, Program};
use super::ops::{Binary, Op, PadMode, Unary};
use super::proto::{AttributeProto, GraphProto, NodeProto, TensorProto, data_type};
use super::value::{self, Ints, Value};
use crate::engine::card::Activation;
use crate::engine::checkpoint::StateDict;
use crate::engine::model::blocks::ConvBn;
use crate::engine::model::layers::{BatchNorm2d, Conv2d, ConvGeometry, Linear};
use crate::engine::model::ops::{Axis, Pool2d};
use crate::engine::model::params::{Loader, ParamStore};

type R<T> = std::result::Result<T, String>;

/// The operators of the default domain that the explorer runs.
pub const SUPPORTED: [&str; 46] = [
    "Conv",
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Relu",
    "LeakyRelu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Gelu",
    "Erf",
    "Tanh",
    "Softmax",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "BatchNormalization",
    "LayerNormalization",
    "Flatten",
    "Reshape",
    "Transpose",
    "Concat",
    "Split",
    "Slice",
    "Gather",
    "Squeeze",
    "Unsqueeze",
    "Shape",
    "Constant",
    "ConstantOfShape",
    "Expand",
    "Pad",
    "ReduceMean",
    "Pow",
    "Sqrt",
    "Identity",
    "Dropout",
    "Cast",
    "Equal",
    "Where",
    "Mod",
    "Range",
];

/// Opsets of the default domain that load (PyTorch's exporters write 13 to 20).
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=20;

/// The lowered graph: its program, the slots of its inputs (those not initializers, with
/// their declared shapes) and outputs, and the parameters.
pub struct Lowered {
    pub program: Program,
    pub inputs: Vec<GraphInput>,
    pub outputs: Vec<usize>,
    pub params: ParamStore,
    pub notes: Vec<String>,
}

pub struct GraphInput {
    pub name: String,
    pub slot: usize,
    /// The element type (`TensorProto.DataType`; 0 when not declared).
    pub elem_type: i32,
    /// Declared sizes: a number, or None where symbolic or absent.
    pub dims: Option<Vec<Option<usize>>>,
}

struct Attrs<'a> {
    list: &'a [AttributeProto],
}

impl<'a> Attrs<'a> {
    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.list.iter().find(|a| a.name == name)
    }
    fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).map_or(default, |a| a.i)
    }
    fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }
    fn float(&self, name: &str, default: f32) -> f32 {
        self.get(name).map_or(default, |a| a.f)
    }
    fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }
    fn tensor(&self, name: &str) -> Option<&'a TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }
}

/// The PyTorch module path in a TorchScript exporter's node name
/// (`/layer1/layer1.0/conv1/Conv` is `layer1.0.conv1`).
fn module_path(node_name: &str) -> Option<String> {
    let parts: Vec<&str> = node_name.split('/').filter(|p| !p.is_empty()).collect();
    let (_, scopes) = parts.split_last()?;
    // A scope is an attribute name (`conv1`), or a container's child named after the
    // container's own scope (`layer1.0` in `layer1`, `conv.0.0` in `conv.0`): then it
    // replaces that tail of the path.
    let mut acc = String::new();
    for s in scopes {
        let segments: Vec<&str> = acc.split('.').filter(|p| !p.is_empty()).collect();
        let tail = (0..segments.len()).find(|&i| s.starts_with(&format!("{}.", segments[i..].join("."))));
        acc = match tail {
            Some(0) => s.to_string(),
            Some(i) => format!("{}.{s}", segments[..i].join(".")),
            None if acc.is_empty() => s.to_string(),
            None => format!("{acc}.{s}"),
        };
    }
    (!acc.is_empty()).then_some(acc)
}

/// The PyTorch module a node belongs to: from the TorchScript exporter's node name, or
/// the dynamo exporter's `pkg.torch.onnx.name_scopes` metadata (a Python list of the
/// enclosing modules' paths, then the op's own name).
pub(super) fn module_of(n: &NodeProto) -> Option<String> {
    module_path(&n.name).or_else(|| {
        let scopes = n.metadata_props.iter().find(|p| p.key == "pkg.torch.onnx.name_scopes")?;
        let list = scopes.value.trim().strip_prefix('[')?.strip_suffix(']')?;
        let names: Vec<&str> = list.split(',').map(|s| s.trim().trim_matches(|c| c == '\'' || c == '"')).collect();
        let (_op, modules) = names.split_last()?;
        modules.iter().rev().find(|m| !m.is_empty()).map(|m| m.to_string())
    })
}

struct Builder<'a> {
    g: &'a GraphProto,
    device: Device,
    slots: HashMap<String, usize>,
    inits: HashMap<String, Value>,
    consumers: HashMap<String, Vec<usize>>,
    pairs: Vec<(String, Tensor)>,
    names: HashSet<String>,
    used_as_param: HashSet<String>,
    /// The layer each parameter initializer belongs to.
    layer_names: HashMap<String, String>,
    /// Transposed weights (a Transpose of an initializer read only as a MatMul's weight), and
    /// the initializer each transposes.
    transposed: HashMap<String, String>,
}

pub fn lower(g: &GraphProto, folder: &Path, device: &Device) -> R<Lowered> {
    if !g.sparse_initializer.is_empty() {
        return Err("the graph has sparse initializers, which are not supported".into());
    }
    let mut inits = HashMap::new();
    for t in &g.initializer {
        let v = value::decode(t, folder, device).map_err(|m| format!("initializer `{}`: {m}", t.name))?;
        inits.insert(t.name.clone(), v);
    }
    // The TorchScript exporter shares equal initializers through Identity nodes: their
    // outputs are initializers too, so that a batch norm reading one keeps its parameters.
    for n in &g.node {
        if let ("Identity", [i], [o]) = (n.op_type.as_str(), n.input.as_slice(), n.output.as_slice())
            && let Some(v) = inits.get(i).cloned()
        {
            inits.entry(o.clone()).or_insert(v);
        }
    }
    let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
    for (k, n) in g.node.iter().enumerate() {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            consumers.entry(i.clone()).or_default().push(k);
        }
    }
    // The TorchScript exporter writes a linear layer on a rank-3 input as
    // `MatMul(x, Transpose(W))`: the transposed weight is an initializer too, named after W.
    let mut transposed: HashMap<String, String> = HashMap::new();
    for n in &g.node {
        if let ("Transpose", [i], [o]) = (n.op_type.as_str(), n.input.as_slice(), n.output.as_slice())
            && let Some(Value::Float(w)) = inits.get(i)
            && w.rank() == 2
            && (Attrs { list: &n.attribute }).ints("perm").is_none_or(|p| p == [1, 0])
            && let Some([k]) = consumers.get(o).map(Vec::as_slice)
            && g.node[*k].op_type == "MatMul"
            && g.node[*k].input.get(1) == Some(o)
            && !g.output.iter().any(|out| &out.name == o)
        {
            let t = w.t().and_then(|t| t.contiguous()).map_err(|e| format!("initializer `{i}`: {e}"))?;
            inits.insert(o.clone(), Value::Float(t));
            transposed.insert(o.clone(), i.clone());
        }
    }
    let mut b = Builder {
        g,
        device: device.clone(),
        slots: HashMap::new(),
        inits,
        consumers,
        pairs: Vec::new(),
        names: HashSet::new(),
        used_as_param: HashSet::new(),
        layer_names: HashMap::new(),
        transposed,
    };
    for n in &g.node {
        check_node(n)?;
    }
    let real: Vec<_> = g.input.iter().filter(|i| !b.inits.contains_key(&i.name)).collect();
    let inputs: Vec<GraphInput> = real
        .into_iter()
        .map(|i| {
            let tensor = i.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
            let dims = tensor.and_then(|t| t.shape.as_ref()).map(|s| {
                s.dim
                    .iter()
                    .map(|d| usize::try_from(d.dim_value).ok().filter(|&v| v > 0 && d.dim_param.is_empty()))
                    .collect()
            });
            GraphInput {
                name: i.name.clone(),
                slot: b.slot(&i.name),
                elem_type: tensor.map_or(0, |t| t.elem_type),
                dims,
            }
        })
        .collect();
    // Plan: which nodes are fused into which, decided before any parameter is taken.
    let plan = b.plan()?;
    let mut loader = Loader::new(StateDict::from_pairs(std::mem::take(&mut b.pairs)));
    let mut nodes = Vec::new();
    for step in plan {
        nodes.push(b.build(step, &mut loader)?);
    }
    let outputs = g
        .output
        .iter()
        .map(|o| match b.slots.get(&o.name) {
            Some(&s) => Ok(s),
            None if b.inits.contains_key(&o.name) => Ok(b.slot(&o.name)),
            None => Err(format!("no node computes the graph's output `{}`", o.name)),
        })
        .collect::<R<Vec<usize>>>()?;
    let mut constants: Vec<Option<Value>> = vec![None; b.slots.len()];
    for (name, v) in std::mem::take(&mut b.inits) {
        if let Some(&s) = b.slots.get(&name)
            && !b.used_as_param.contains(&name)
        {
            constants[s] = Some(v);
        }
    }
    let notes = loader.take_notes();
    let params = loader.finish().map_err(|e| e.to_string())?;
    Ok(Lowered { program: Program::new(nodes, constants, &outputs, device.clone()), inputs, outputs, params, notes })
}

fn check_node(n: &NodeProto) -> R<()> {
    let node = if n.name.is_empty() { n.output.first().cloned().unwrap_or_default() } else { n.name.clone() };
    if !(n.domain.is_empty() || n.domain == "ai.onnx") {
        return Err(format!(
            "node `{node}` is `{}` of domain `{}`: only the default ONNX domain is supported",
            n.op_type, n.domain
        ));
    }
    if !SUPPORTED.contains(&n.op_type.as_str()) {
        return Err(format!(
            "node `{node}` is a `{}`, which the explorer does not run. Supported: {}",
            n.op_type,
            SUPPORTED.join(", ")
        ));
    }
    if n.attribute.iter().any(|a| !a.ref_attr_name.is_empty()) {
        return Err(format!("node `{node}` refers to function attributes, which are not supported"));
    }
    Ok(())
}

/// One node to build: the first node's index and the nodes fused after it.
struct Step {
    first: usize,
    /// A batch norm that follows the convolution.
    bn: Option<usize>,
    /// An activation that follows (ReLU or ReLU6) and its node.
    act: Option<(Activation, usize)>,
    /// The Add of a bias initializer after a linear MatMul, and the bias.
    bias: Option<(usize, String)>,
}

impl Builder<'_> {
    fn slot(&mut self, name: &str) -> usize {
        let n = self.slots.len();
        *self.slots.entry(name.to_string()).or_insert(n)
    }

    fn node_name(&self, k: usize) -> String {
        let n = &self.g.node[k];
        if n.name.is_empty() { format!("{} #{k}", n.op_type) } else { n.name.clone() }
    }

    /// The single node reading `value`, if only one does and the value is not the output.
    fn sole_consumer(&self, value: &str) -> Option<usize> {
        if self.g.output.iter().any(|o| o.name == value) {
            return None;
        }
        match self.consumers.get(value).map(Vec::as_slice) {
            Some([k]) => Some(*k),
            _ => None,
        }
    }

    fn is_init(&self, name: &str) -> bool {
        self.inits.contains_key(name)
    }

    /// Decides the fusions and registers the parameters' tensors under their layer names.
    fn plan(&mut self) -> R<Vec<Step>> {
        let mut steps = Vec::new();
        let mut fused: HashSet<usize> = HashSet::new();
        for k in 0..self.g.node.len() {
            if fused.contains(&k) {
                continue;
            }
            let n = &self.g.node[k];
            // An Identity of an initializer is an initializer under another name, and a
            // transposed weight one already transposed (see `lower`).
            let aliased = matches!(n.op_type.as_str(), "Identity" | "Transpose")
                && n.input.first().is_some_and(|i| self.is_init(i))
                && (n.op_type == "Identity" || n.output.first().is_some_and(|o| self.transposed.contains_key(o)));
            if aliased {
                continue;
            }
            let mut step = Step { first: k, bn: None, act: None, bias: None };
            let out = n.output.first().cloned().unwrap_or_default();
            let then = self.sole_consumer(&out);
            match n.op_type.as_str() {
                "Conv" if self.conv_params(n) => {
                    let mut tail = out.clone();
                    if let Some(j) = then
                        .filter(|&j| self.g.node[j].op_type == "BatchNormalization" && self.bn_params(&self.g.node[j]))
                    {
                        step.bn = Some(j);
                        tail = self.g.node[j].output.first().cloned().unwrap_or_default();
                    }
                    if let Some(j) = self.sole_consumer(&tail)
                        && let Some(act) = self.activation_of(j)
                        && (step.bn.is_some() || act == Activation::Relu)
                    {
                        step.act = Some((act, j));
                    }
                }
                "Add" => {
                    if let Some(j) = then.filter(|&j| self.g.node[j].op_type == "Relu") {
                        step.act = Some((Activation::Relu, j));
                    }
                }
                "MatMul" if self.linear_form(k).is_some() => {
                    step.bias = then.and_then(|j| Some((j, self.bias_of_add(j, &out, &n.input[1])?)));
                }
                _ => {}
            }
            fused.extend(step.bn.iter().chain(step.act.iter().map(|a| &a.1)).chain(step.bias.iter().map(|b| &b.0)));
            steps.push(step);
        }
        for s in &steps {
            self.register(s)?;
        }
        Ok(steps)
    }

    /// The bias initializer of node `j` when it is `Add(out, bias)` (either order) with a
    /// vector as long as the rows of `weight` (`[in, out]`, as MatMul reads it), read by no
    /// other node.
    fn bias_of_add(&self, j: usize, out: &str, weight: &str) -> Option<String> {
        let add = &self.g.node[j];
        if add.op_type != "Add" || add.input.len() != 2 {
            return None;
        }
        let other = if add.input[0] == out { &add.input[1] } else { &add.input[0] };
        let features = *self.init_dims(weight)?.last()?;
        let fits = matches!(self.inits.get(other), Some(Value::Float(b)) if b.dims() == [features])
            && self.consumers.get(other).is_some_and(|c| c.len() == 1);
        (add.input.contains(&out.to_string()) && fits).then(|| other.clone())
    }

    fn conv_params(&self, n: &NodeProto) -> bool {
        n.input.get(1).is_some_and(|w| self.is_init(w))
            && n.input.get(2).is_none_or(|b| b.is_empty() || self.is_init(b))
    }

    fn bn_params(&self, n: &NodeProto) -> bool {
        n.input.len() == 5 && n.input[1..].iter().all(|i| self.is_init(i))
    }

    /// ReLU, or a Clip from 0 to 6 (how ReLU6 exports).
    fn activation_of(&self, k: usize) -> Option<Activation> {
        let n = &self.g.node[k];
        match n.op_type.as_str() {
            "Relu" => Some(Activation::Relu),
            "Clip" => {
                let bound = |i: usize| self.inits.get(n.input.get(i)?)?.first().ok().flatten();
                (bound(1) == Some(0.0) && bound(2) == Some(6.0)).then_some(Activation::Relu6)
            }
            _ => None,
        }
    }

    /// A unique layer name: the weight's name less `.weight`, else the node's module path.
    fn layer_name(&mut self, weight: &str, node: usize, kind: &str) -> String {
        let base = weight
            .strip_suffix(".weight")
            .map(str::to_string)
            .or_else(|| module_of(&self.g.node[node]))
            .unwrap_or_else(|| format!("{kind}{node}"));
        let mut name = base.clone();
        let mut k = 2;
        while !self.names.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    }

    fn take_param(&mut self, init: &str, key: String, transpose: bool) -> R<()> {
        if !self.used_as_param.insert(init.to_string()) {
            return Err(format!("initializer `{init}` is the weight of two layers; shared weights are not supported"));
        }
        let t = match self.inits.get(init) {
            Some(Value::Float(t)) => t.clone(),
            _ => return Err(format!("initializer `{init}` is not a float tensor")),
        };
        let t = if transpose { t.t().and_then(|t| t.contiguous()).map_err(|e| e.to_string())? } else { t };
        if let Some((layer, _)) = key.rsplit_once('.') {
            self.layer_names.insert(init.to_string(), layer.to_string());
        }
        self.pairs.push((key, t));
        Ok(())
    }

    fn register(&mut self, s: &Step) -> R<()> {
        let n = &self.g.node[s.first];
        match n.op_type.as_str() {
            "Conv" if self.conv_params(n) => {
                let layer = self.layer_name(&n.input[1], s.first, "conv");
                self.take_param(&n.input[1].clone(), format!("{layer}.weight"), false)?;
                if let Some(b) = n.input.get(2).filter(|b| !b.is_empty()).cloned() {
                    self.take_param(&b, format!("{layer}.bias"), false)?;
                }
                if let Some(j) = s.bn {
                    self.register_bn(j)?;
                }
            }
            "BatchNormalization" if self.bn_params(n) => self.register_bn(s.first)?,
            "Gemm" | "MatMul" => {
                let Some((transpose, bias)) = self.linear_form(s.first) else { return Ok(()) };
                let w = n.input[1].clone();
                let source = self.transposed.get(&w).cloned().unwrap_or_else(|| w.clone());
                let layer = self.layer_name(&source, s.first, "linear");
                self.take_param(&w, format!("{layer}.weight"), transpose)?;
                if let Some(b) = bias.or_else(|| s.bias.as_ref().map(|b| b.1.clone())) {
                    self.take_param(&b, format!("{layer}.bias"), false)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn register_bn(&mut self, k: usize) -> R<()> {
        let n = &self.g.node[k];
        let layer = self.layer_name(&n.input[1], k, "bn");
        for (i, part) in [(1, "weight"), (2, "bias"), (3, "running_mean"), (4, "running_var")] {
            self.take_param(&n.input[i].clone(), format!("{layer}.{part}"), false)?;
        }
        Ok(())
    }

    /// A Gemm or MatMul that is a linear layer: weight an initializer, (for Gemm) alpha and
    /// beta 1, A not transposed, C an initializer vector or absent. Returns whether the weight
    /// is stored `[in, out]` (to transpose) and the bias initializer.
    fn linear_form(&self, k: usize) -> Option<(bool, Option<String>)> {
        let n = &self.g.node[k];
        let w = n.input.get(1)?;
        let rank2 = matches!(self.inits.get(w), Some(Value::Float(t)) if t.rank() == 2);
        if !rank2 {
            return None;
        }
        if n.op_type == "MatMul" {
            return Some((true, None));
        }
        let a = Attrs { list: &n.attribute };
        if a.float("alpha", 1.0) != 1.0 || a.float("beta", 1.0) != 1.0 || a.int("transA", 0) != 0 {
            return None;
        }
        let bias = match n.input.get(2).filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => match self.inits.get(c) {
                Some(Value::Float(t)) if t.rank() == 1 => Some(c.clone()),
                _ => return None,
            },
        };
        Some((a.int("transB", 0) == 0, bias))
    }

    fn build(&mut self, s: Step, l: &mut Loader) -> R<Node> {
        let n = &self.g.node[s.first];
        let name = self.node_name(s.first);
        let last = s.act.map(|a| a.1).or(s.bn).or(s.bias.as_ref().map(|b| b.0)).unwrap_or(s.first);
        let outputs_of = self.g.node[last].output.clone();
        let op = self.op(s.first, &s, l).map_err(|m| format!("node `{name}` ({}): {m}", n.op_type))?;
        let inputs: Vec<Option<usize>> = n
            .input
            .iter()
            .map(|i| {
                // A layer's weights live in the layer, not in a slot.
                if i.is_empty() || self.used_as_param.contains(i) {
                    return Ok(None);
                }
                match self.slots.get(i) {
                    Some(&s) => Ok(Some(s)),
                    None if self.is_init(i) => Ok(Some(self.slot(i))),
                    None => Err(format!("node `{name}` reads `{i}`, which no earlier node computes")),
                }
            })
            .collect::<R<_>>()?;
        // Operators with more than one output compute the extra ones only where listed.
        let multi = ["Split", "LayerNormalization", "Dropout"];
        for o in outputs_of.iter().skip(1) {
            let read = self.consumers.contains_key(o) || self.g.output.iter().any(|g| &g.name == o);
            if !o.is_empty() && read && !multi.contains(&n.op_type.as_str()) {
                return Err(format!("node `{name}` ({}): its output `{o}` is read, which is not supported", n.op_type));
            }
        }
        let outputs = outputs_of.iter().map(|o| self.slot(o)).collect();
        Ok(Node { op, name, module: module_of(n), op_type: n.op_type.clone(), inputs, outputs })
    }

    fn op(&mut self, k: usize, s: &Step, l: &mut Loader) -> R<Op> {
        let n = &self.g.node[k];
        let a = Attrs { list: &n.attribute };
        Ok(match n.op_type.as_str() {
            "Conv" if !self.conv_params(n) => {
                let (geo, pad) = conv_geometry(&a, None)?;
                let [pt, pl] = geo.padding;
                let pad = pad.unwrap_or([pt, pl, pt, pl]);
                Op::ConvDyn { stride: geo.stride[0], dilation: geo.dilation[0], groups: geo.groups, pad }
            }
            "Conv" => {
                let layer = self.layer_of(&n.input[1]);
                let (geo, pad) = conv_geometry(&a, self.init_dims(&n.input[1]).as_deref())?;
                let conv = Conv2d::load(l, &layer, geo, None).map_err(|e| e.to_string())?;
                match s.bn {
                    Some(j) => {
                        let bn = self.load_bn(j, conv.out_channels(), l)?;
                        Op::ConvBn { unit: ConvBn { conv, bn, act: s.act.map(|a| a.0) }, pad }
                    }
                    None => Op::Conv { conv, pad, relu: s.act.is_some() },
                }
            }
            "BatchNormalization" if a.int("training_mode", 0) != 0 => {
                return Err("training_mode 1 is not supported (export in evaluation mode)".into());
            }
            "BatchNormalization" if !self.bn_params(n) => Op::BatchNormDyn { eps: a.float("epsilon", 1e-5) as f64 },
            "BatchNormalization" => {
                let channels = self.init_dims(&n.input[1]).and_then(|d| d.first().copied()).unwrap_or(0);
                Op::BatchNorm(self.load_bn(k, channels, l)?)
            }
            "Gemm" | "MatMul" => match self.linear_form(k) {
                Some(_) => {
                    let layer = self.layer_of(&n.input[1]);
                    Op::Linear(Linear::load(l, &layer, None).map_err(|e| e.to_string())?)
                }
                None if n.op_type == "MatMul" => Op::MatMul,
                None => Op::Gemm {
                    alpha: a.float("alpha", 1.0),
                    beta: a.float("beta", 1.0),
                    trans_a: a.int("transA", 0) != 0,
                    trans_b: a.int("transB", 0) != 0,
                },
            },
            "Add" if s.act.is_some() => Op::AddRelu,
            "Add" => Op::Binary(Binary::Add),
            "Sub" => Op::Binary(Binary::Sub),
            "Mul" => Op::Binary(Binary::Mul),
            "Div" => Op::Binary(Binary::Div),
            "Relu" => Op::Unary(Unary::Relu),
            "LeakyRelu" => Op::Unary(Unary::LeakyRelu(a.float("alpha", 0.01))),
            "Sigmoid" => Op::Unary(Unary::Sigmoid),
            "HardSigmoid" => Op::Unary(Unary::HardSigmoid { alpha: a.float("alpha", 0.2), beta: a.float("beta", 0.5) }),
            "HardSwish" => Op::Unary(Unary::HardSwish),
            "Tanh" => Op::Unary(Unary::Tanh),
            "Erf" => Op::Unary(Unary::Erf),
            "Sqrt" => Op::Unary(Unary::Sqrt),
            "Gelu" => match a.string("approximate").as_deref() {
                None | Some("none") => Op::Unary(Unary::Gelu { tanh: false }),
                Some("tanh") => Op::Unary(Unary::Gelu { tanh: true }),
                Some(other) => return Err(format!("approximate `{other}` is not one of none, tanh")),
            },
            "Pow" => Op::Pow,
            "Clip" => Op::Clip,
            "Softmax" => Op::Softmax(a.int("axis", -1)),
            "MaxPool" | "AveragePool" => {
                let (pool, pad) = pool_geometry(&a)?;
                if n.op_type == "MaxPool" {
                    Op::MaxPool { pool, pad }
                } else {
                    Op::AveragePool { pool, pad, count_pad: a.int("count_include_pad", 0) != 0 }
                }
            }
            "GlobalAveragePool" => Op::GlobalAveragePool,
            "LayerNormalization" => Op::LayerNorm { axis: a.int("axis", -1), eps: a.float("epsilon", 1e-5) as f64 },
            "Flatten" => Op::Flatten(a.int("axis", 1)),
            "Reshape" => Op::Reshape { allow_zero: a.int("allowzero", 0) != 0 },
            "Transpose" => Op::Transpose(a.ints("perm")),
            "Concat" => Op::Concat(a.int("axis", 0)),
            "Split" => Op::Split {
                axis: a.int("axis", 0),
                sizes: a.ints("split"),
                outputs: a.int("num_outputs", n.output.len() as i64).max(1) as usize,
            },
            "Slice" => Op::Slice,
            "Gather" => Op::Gather(a.int("axis", 0)),
            "Squeeze" => Op::Squeeze(a.ints("axes")),
            "Unsqueeze" => Op::Unsqueeze(a.ints("axes")),
            "Shape" => Op::Shape { start: a.int("start", 0), end: a.get("end").map(|x| x.i) },
            "Constant" => Op::Constant(self.constant(&a)?),
            "ConstantOfShape" => Op::ConstantOfShape(match a.tensor("value") {
                Some(t) => value::decode(t, Path::new("."), &self.device)?,
                None => {
                    Value::Float(Tensor::zeros(1, candle_core::DType::F32, &self.device).map_err(|e| e.to_string())?)
                }
            }),
            "Expand" => Op::Expand,
            "Pad" => {
                let mode = match a.string("mode").as_deref() {
                    None | Some("constant") => PadMode::Constant,
                    Some("reflect") => PadMode::Reflect,
                    Some("edge") => PadMode::Edge,
                    Some("wrap") => PadMode::Wrap,
                    Some(m) => return Err(format!("pad mode `{m}` is not one of constant, reflect, edge, wrap")),
                };
                Op::Pad { value_attr: a.float("value", 0.0), mode }
            }
            "ReduceMean" => Op::ReduceMean {
                axes: a.ints("axes"),
                keep: a.int("keepdims", 1) != 0,
                noop_with_empty_axes: a.int("noop_with_empty_axes", 0) != 0,
            },
            "Identity" => Op::Identity,
            "Equal" => Op::Equal,
            "Where" => Op::Where,
            "Mod" => Op::Mod { fmod: a.int("fmod", 0) != 0 },
            "Range" => Op::Range,
            "Dropout" => Op::Dropout,
            "Cast" => match a.int("to", 0) {
                x if [data_type::FLOAT, data_type::DOUBLE, data_type::FLOAT16].contains(&(x as i32)) => Op::Cast(true),
                x if [data_type::INT64, data_type::INT32, data_type::INT8, data_type::UINT8, data_type::BOOL]
                    .contains(&(x as i32)) =>
                {
                    Op::Cast(false)
                }
                x => return Err(format!("Cast to element type {x} is not supported")),
            },
            other => return Err(format!("`{other}` cannot run here")),
        })
    }

    /// The layer whose weight is the initializer `init` (registered in `plan`).
    fn layer_of(&self, init: &str) -> String {
        self.layer_names.get(init).cloned().unwrap_or_default()
    }

    fn init_dims(&self, name: &str) -> Option<Vec<usize>> {
        self.inits.get(name).map(Value::dims)
    }

    fn load_bn(&self, k: usize, channels: usize, l: &mut Loader) -> R<BatchNorm2d> {
        let n = &self.g.node[k];
        let a = Attrs { list: &n.attribute };
        let layer = self.layer_of(&n.input[1]);
        let momentum = 1.0 - a.float("momentum", 0.9) as f64;
        BatchNorm2d::load(l, &layer, channels, a.float("epsilon", 1e-5) as f64, momentum).map_err(|e| e.to_string())
    }

    fn constant(&self, a: &Attrs) -> R<Value> {
        if let Some(t) = a.tensor("value") {
            return value::decode(t, Path::new("."), &self.device);
        }
        if let Some(x) = a.get("value_float") {
            return Tensor::new(x.f, &self.device).map(Value::Float).map_err(|e| e.to_string());
        }
        if let Some(x) = a.get("value_floats") {
            return Tensor::new(x.floats.as_slice(), &self.device).map(Value::Float).map_err(|e| e.to_string());
        }
        if let Some(x) = a.get("value_int") {
            return Ok(Value::Int(Ints::scalar(x.i)));
        }
        if let Some(x) = a.get("value_ints") {
            return Ok(Value::Int(Ints::vector(x.ints.clone())));
        }
        Err("a Constant without a supported value (value, value_float(s), value_int(s))".into())
    }
}

/// Convolution geometry; asymmetric padding becomes an explicit pad before it.
fn conv_geometry(a: &Attrs, weight: Option<&[usize]>) -> R<(ConvGeometry, Option<[usize; 4]>)> {
    if weight.is_some_and(|w| w.len() != 4) {
        return Err(format!("only 2-D convolutions are supported (weight shape {weight:?})"));
    }
    let pair = |name: &str, default: i64| -> R<[usize; 2]> {
        match a.ints(name).as_deref() {
            None => Ok([default as usize; 2]),
            Some([x, y]) if *x >= 0 && *y >= 0 => Ok([*x as usize, *y as usize]),
            Some(v) => Err(format!("`{name}` {v:?} is not two non-negative sizes")),
        }
    };
    let stride = pair("strides", 1)?;
    let dilation = pair("dilations", 1)?;
    if stride[0] != stride[1] || dilation[0] != dilation[1] {
        return Err(format!("strides {stride:?} and dilations {dilation:?} must be square"));
    }
    let kernel = match (weight, a.ints("kernel_shape").as_deref()) {
        (Some(w), _) => Some([w[2], w[3]]),
        (None, Some([h, w])) if *h > 0 && *w > 0 => Some([*h as usize, *w as usize]),
        _ => None,
    };
    let pads = pads4(a, kernel, dilation, stride)?;
    let groups = usize::try_from(a.int("group", 1)).map_err(|_| "a negative group count".to_string())?;
    let (padding, pre) = match pads {
        [t, l, b, r] if t == b && l == r => ([t, l], None),
        p => ([0, 0], Some(p)),
    };
    Ok((ConvGeometry { stride, padding, dilation, groups }, pre))
}

/// `pads` as `[top, left, bottom, right]`, for a window of `kernel` (dilated) moved by
/// `stride`. auto_pad SAME (the TorchScript exporter's `padding="same"`) at stride 1 pads
/// `(kernel - 1) * dilation` in all, the odd one at the end (UPPER) or start (LOWER); at
/// other strides it depends on the input size and is refused.
fn pads4(a: &Attrs, kernel: Option<[usize; 2]>, dilation: [usize; 2], stride: [usize; 2]) -> R<[usize; 4]> {
    match a.string("auto_pad").as_deref() {
        None | Some("NOTSET") => {}
        Some("VALID") => return Ok([0; 4]),
        Some(mode @ ("SAME_UPPER" | "SAME_LOWER")) => {
            let kernel = kernel.ok_or_else(|| format!("auto_pad `{mode}` needs the kernel's size"))?;
            if stride != [1, 1] {
                return Err(format!(
                    "auto_pad `{mode}` with strides {stride:?} pads by the input's size: export with explicit pads"
                ));
            }
            let total = |i: usize| (kernel[i].saturating_sub(1)).saturating_mul(dilation[i]);
            let (h, w) = (total(0), total(1));
            return Ok(match mode {
                "SAME_UPPER" => [h / 2, w / 2, h - h / 2, w - w / 2],
                _ => [h - h / 2, w - w / 2, h / 2, w / 2],
            });
        }
        Some(other) => return Err(format!("auto_pad `{other}` is not supported (export with explicit pads)")),
    }
    match a.ints("pads").as_deref() {
        None => Ok([0; 4]),
        Some([t, l, b, r]) if [t, l, b, r].iter().all(|&&v| v >= 0) => {
            Ok([*t as usize, *l as usize, *b as usize, *r as usize])
        }
        Some(v) => Err(format!("`pads` {v:?} is not four non-negative sizes")),
    }
}

fn pool_geometry(a: &Attrs) -> R<(Pool2d, Option<[usize; 4]>)> {
    let kernel = match a.ints("kernel_shape").as_deref() {
        Some([h, w]) if *h > 0 && *w > 0 => [*h as usize, *w as usize],
        v => return Err(format!("`kernel_shape` {v:?} is not two positive sizes (2-D pooling only)")),
    };
    let stride = match a.ints("strides").as_deref() {
        None => [1, 1],
        Some([h, w]) if *h > 0 && *w > 0 => [*h as usize, *w as usize],
        Some(v) => return Err(format!("`strides` {v:?} is not two positive sizes")),
    };
    if a.ints("dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
        return Err("dilated pooling is not supported".into());
    }
    let pads = pads4(a, Some(kernel), [1, 1], stride)?;
    let ceil_mode = a.int("ceil_mode", 0) != 0;
    let (sym, pre) = match pads {
        [t, l, b, r] if t == b && l == r => ([t, l], None),
        p => ([0, 0], Some(p)),
    };
    let axis = |i: usize| Axis { kernel: kernel[i], stride: stride[i], padding: sym[i] };
    Ok((Pool2d { h: axis(0), w: axis(1), ceil_mode }, pre))
}

#[cfg(test)]
mod tests {
    use super::module_path;

    #[test]
    fn module_paths_follow_pytorch_names() {
        for (node, want) in [
            ("/conv1/Conv", Some("conv1")),
            ("/layer1/layer1.0/conv1/Conv", Some("layer1.0.conv1")),
            ("/layer2/layer2.0/downsample/downsample.0/Conv", Some("layer2.0.downsample.0")),
            ("/features/features.0/Conv", Some("features.0")),
            ("/features/features.1/conv/conv.0/conv.0.0/Conv", Some("features.1.conv.0.0")),
            ("/block/conv/Conv", Some("block.conv")),
            ("node_Conv_291", None),
            ("", None),
        ] {
            assert_eq!(module_path(node).as_deref(), want, "{node}");
        }
    }
}
