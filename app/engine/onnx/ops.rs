//! The ONNX operators the explorer runs, on candle tensors (so input gradients flow) and
//! on the engine's own layers where a node is one (convolutions, linear layers, batch
//! norm: the fused CPU kernels and every device's ops).

use candle_core::{Device, Tensor};

use super::value::{Ints, Value};
use crate::engine::model::layers::{BatchNorm2d, Conv2d, ForwardCtx, Linear};
use crate::engine::model::ops::{self as mops, Pool2d};
use crate::engine::model::{Grads, blocks::ConvBn};

type R<T> = std::result::Result<T, String>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PadMode {
    Constant,
    /// Mirror without repeating the edge (numpy's `reflect`).
    Reflect,
    Edge,
    /// As if the axis repeated (opset 19; PyTorch's circular padding, dynamo-exported).
    Wrap,
}

/// How an elementwise activation is computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unary {
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    HardSigmoid { alpha: f32, beta: f32 },
    HardSwish,
    Tanh,
    Erf,
    Gelu { tanh: bool },
    Sqrt,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

pub enum Op {
    /// A convolution; `pad` is an explicit zero pad `[top, left, bottom, right]` first
    /// (ONNX allows asymmetric padding, the engine's convolution does not).
    Conv {
        conv: Conv2d,
        pad: Option<[usize; 4]>,
        relu: bool,
    },
    ConvBn {
        unit: ConvBn,
        pad: Option<[usize; 4]>,
    },
    Linear(Linear),
    BatchNorm(BatchNorm2d),
    /// A convolution whose weight (and bias) come from the graph, not initializers.
    ConvDyn {
        stride: usize,
        dilation: usize,
        groups: usize,
        pad: [usize; 4],
    },
    /// Batch norm (inference) whose scale, shift and statistics come from the graph.
    BatchNormDyn {
        eps: f64,
    },
    /// Its output and a mask of ones (inference keeps everything).
    Dropout,
    Unary(Unary),
    Binary(Binary),
    /// `relu(a + b)`: a residual connection's end.
    AddRelu,
    Pow,
    Clip,
    Softmax(i64),
    MaxPool {
        pool: Pool2d,
        pad: Option<[usize; 4]>,
    },
    AveragePool {
        pool: Pool2d,
        pad: Option<[usize; 4]>,
        count_pad: bool,
    },
    GlobalAveragePool,
    LayerNorm {
        axis: i64,
        eps: f64,
    },
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    MatMul,
    Flatten(i64),
    Reshape {
        allow_zero: bool,
    },
    Transpose(Option<Vec<i64>>),
    Concat(i64),
    Split {
        axis: i64,
        sizes: Option<Vec<i64>>,
        outputs: usize,
    },
    Slice,
    Gather(i64),
    /// Axes from the attribute (opsets before 13) or the second input.
    Squeeze(Option<Vec<i64>>),
    Unsqueeze(Option<Vec<i64>>),
    Shape {
        start: i64,
        end: Option<i64>,
    },
    Constant(Value),
    ConstantOfShape(Value),
    Expand,
    Pad {
        value_attr: f32,
        mode: PadMode,
    },
    /// Axes from the attribute (before opset 18) or the second input.
    ReduceMean {
        axes: Option<Vec<i64>>,
        keep: bool,
        noop_with_empty_axes: bool,
    },
    Identity,
    /// To float (true) or to an integer type (false).
    Cast(bool),
    /// Elementwise `a == b`, as 0/1 integers.
    Equal,
    /// `cond ? a : b`, elementwise with broadcasting.
    Where,
    /// Remainder: the sign of the divisor (Python's), or of the dividend with `fmod`.
    Mod {
        fmod: bool,
    },
    /// `start, start + delta, ...` up to `limit` (exclusive): the dynamo exporter's index
    /// arithmetic (`as_strided` after a pooled mean).
    Range,
}

/// The most elements an op may make from sizes the graph computes (ConstantOfShape, Range).
const MAX_MADE: usize = 1 << 28;

impl Op {
    /// Whether the parameterised layer `name` is in this node.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Op::Conv { conv, .. } => conv.key == name,
            Op::ConvBn { unit, .. } => unit.contains(name),
            Op::Linear(l) => l.key == name,
            Op::BatchNorm(b) => b.key == name,
            _ => false,
        }
    }
}

fn e(err: candle_core::Error) -> String {
    err.to_string()
}

/// An axis counted from the end when negative, checked against `rank`.
pub fn axis(a: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if (0..r).contains(&v) { Ok(v as usize) } else { Err(format!("axis {a} is outside a rank-{rank} tensor")) }
}

fn float(v: &Value, device: &Device) -> R<Tensor> {
    v.float(device).map_err(e)
}

fn pad_zeros(x: &Tensor, pad: Option<[usize; 4]>, value: f64) -> R<Tensor> {
    let Some([t, l, b, r]) = pad else { return Ok(x.clone()) };
    if value == 0.0 {
        return x.pad_with_zeros(2, t, b).and_then(|x| x.pad_with_zeros(3, l, r)).map_err(e);
    }
    let x = mops::pad_value(x, 2, t, b, value).map_err(e)?;
    mops::pad_value(&x, 3, l, r, value).map_err(e)
}

/// Elementwise op on the host for integer operands (shape arithmetic).
fn int_binary(op: Binary, a: &Ints, b: &Ints) -> R<Ints> {
    let (dims, pairs) = broadcast_ints(a, b)?;
    let data = pairs
        .into_iter()
        .map(|(x, y)| match op {
            Binary::Add => Ok(x.wrapping_add(y)),
            Binary::Sub => Ok(x.wrapping_sub(y)),
            Binary::Mul => Ok(x.wrapping_mul(y)),
            Binary::Div if y == 0 => Err("integer division by zero".to_string()),
            Binary::Div => Ok(x.wrapping_div(y)),
        })
        .collect::<R<Vec<i64>>>()?;
    Ok(Ints { dims, data })
}

/// The broadcast shape and, per element of it, the two operands' values.
type Paired = (Vec<usize>, Vec<(i64, i64)>);

fn broadcast_ints(a: &Ints, b: &Ints) -> R<Paired> {
    let dims = broadcast_dims(&a.dims, &b.dims)?;
    let n: usize = dims.iter().product();
    let index = |src: &Ints, flat: usize| -> i64 {
        let mut rem = flat;
        let mut idx = 0;
        let mut stride = 1;
        let offset = dims.len() - src.dims.len();
        for k in (0..dims.len()).rev() {
            let coord = rem % dims[k];
            rem /= dims[k];
            if k >= offset {
                let d = src.dims[k - offset];
                idx += if d == 1 { 0 } else { coord * stride };
                stride *= d;
            }
        }
        src.data[idx]
    };
    Ok((dims.clone(), (0..n).map(|i| (index(a, i), index(b, i))).collect()))
}

/// numpy's broadcasting of two shapes.
pub fn broadcast_dims(a: &[usize], b: &[usize]) -> R<Vec<usize>> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let x = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
            let y = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
            match (x, y) {
                (x, y) if x == y => Ok(x),
                (1, y) => Ok(y),
                (x, 1) => Ok(x),
                _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
            }
        })
        .collect()
}

fn mask(t: candle_core::Result<Tensor>, like: &Tensor) -> R<Tensor> {
    t.and_then(|m| m.to_dtype(like.dtype())).map(|m| m.detach()).map_err(e)
}

/// `x` kept where `inside`, else the constant `outside` values (gradient only inside).
fn unary(u: Unary, x: &Tensor) -> R<Tensor> {
    let out = match u {
        Unary::Relu => mops::relu(x),
        Unary::LeakyRelu(alpha) => {
            // PyTorch's gradient at 0 is alpha: the positive side is strict.
            let pos = mask(x.gt(0f64), x)?;
            let neg = pos.affine(-(alpha as f64), alpha as f64).map_err(e)?;
            x.mul(&(pos + neg).map_err(e)?)
        }
        Unary::Sigmoid => candle_nn::ops::sigmoid(x),
        Unary::HardSigmoid { alpha, beta } => return hard_sigmoid(x, alpha, beta),
        Unary::HardSwish => return hard_sigmoid(x, 1.0 / 6.0, 0.5).and_then(|h| x.mul(&h).map_err(e)),
        Unary::Tanh => x.tanh(),
        Unary::Erf => x.erf(),
        Unary::Gelu { tanh: false } => x.gelu_erf(),
        Unary::Gelu { tanh: true } => x.gelu(),
        Unary::Sqrt => x.sqrt(),
    };
    out.map_err(e)
}

/// `max(0, min(1, alpha * x + beta))`, gradient alpha strictly inside, as PyTorch's.
fn hard_sigmoid(x: &Tensor, alpha: f32, beta: f32) -> R<Tensor> {
    let y = x.affine(alpha as f64, beta as f64).map_err(e)?;
    mops::hardtanh(&y, Some(0.0), Some(1.0)).map_err(e)
}

fn binary(op: Binary, a: &Tensor, b: &Tensor) -> R<Tensor> {
    let out = match op {
        Binary::Add => a.broadcast_add(b),
        Binary::Sub => a.broadcast_sub(b),
        Binary::Mul => a.broadcast_mul(b),
        Binary::Div => a.broadcast_div(b),
    };
    out.map_err(e)
}

/// Runs one node. `ins` are its inputs (None where an optional input is absent).
pub fn run(op: &Op, ins: &[Option<&Value>], ctx: &mut ForwardCtx, device: &Device, outputs: usize) -> R<Vec<Value>> {
    let need = |i: usize| -> R<&Value> { ins.get(i).copied().flatten().ok_or_else(|| format!("input {i} is missing")) };
    let x = || -> R<Tensor> { float(need(0)?, device) };
    let one = |t: Tensor| Ok(vec![Value::Float(t)]);
    match op {
        Op::Conv { conv, pad, relu } => {
            let xin = pad_zeros(&x()?, *pad, 0.0)?;
            if *relu {
                if let Some(y) = conv.forward_relu(&xin, ctx) {
                    return one(y.map_err(e)?);
                }
                return one(mops::relu(&conv.forward(&xin, ctx).map_err(e)?).map_err(e)?);
            }
            one(conv.forward(&xin, ctx).map_err(e)?)
        }
        Op::ConvBn { unit, pad } => one(unit.forward(&pad_zeros(&x()?, *pad, 0.0)?, ctx).map_err(e)?),
        Op::Linear(l) => {
            // MatMul applies to the last axis of any rank: the layer sees the rest as rows.
            let xin = x()?;
            let dims = xin.dims().to_vec();
            let Some((&features, lead)) = dims.split_last() else {
                return Err("a linear layer on a scalar".into());
            };
            let rows = xin.reshape((lead.iter().product::<usize>(), features)).map_err(e)?;
            let y = l.forward(&rows, ctx).map_err(e)?;
            let out: Vec<usize> = lead.iter().copied().chain([l.out_features()]).collect();
            one(y.reshape(out).map_err(e)?)
        }
        Op::BatchNorm(bn) => {
            let xin = x()?;
            let dims = xin.dims().to_vec();
            let as4 = match dims.len() {
                4 => xin,
                2 | 3 => xin.reshape((dims[0], dims[1], dims.get(2).copied().unwrap_or(1), 1)).map_err(e)?,
                _ => return Err(format!("batch norm of a rank-{} tensor", dims.len())),
            };
            one(bn.forward(&as4, ctx).and_then(|y| y.reshape(dims)).map_err(e)?)
        }
        Op::ConvDyn { stride, dilation, groups, pad } => {
            let xin = pad_zeros(&x()?, Some(*pad), 0.0)?;
            let w = float(need(1)?, device)?;
            if w.rank() != 4 || xin.rank() != 4 {
                return Err(format!("only 2-D convolutions are supported (weight {:?})", w.dims()));
            }
            let mut y = xin.conv2d(&w, 0, *stride, *dilation, *groups).map_err(e)?;
            if let Some(b) = ins.get(2).copied().flatten() {
                let b = float(b, device)?;
                y = y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1)).map_err(e)?).map_err(e)?;
            }
            one(y)
        }
        Op::BatchNormDyn { eps } => {
            let xin = x()?;
            let c = xin.dim(1).map_err(e)?;
            let mut shape = vec![1usize; xin.rank()];
            shape[1] = c;
            let p = |i: usize| -> R<Tensor> { float(need(i)?, device)?.reshape(shape.as_slice()).map_err(e) };
            let (scale, shift, mean, var) = (p(1)?, p(2)?, p(3)?, p(4)?);
            let inv = (var + *eps).and_then(|v| v.sqrt()).map_err(e)?;
            let y = xin.broadcast_sub(&mean).and_then(|y| y.broadcast_div(&inv)).map_err(e)?;
            one(y.broadcast_mul(&scale).and_then(|y| y.broadcast_add(&shift)).map_err(e)?)
        }
        Op::Dropout => {
            if let Some(t) = ins.get(2).copied().flatten()
                && t.ints()?.data.iter().any(|&b| b != 0)
            {
                return Err("Dropout in training mode (training_mode true) is not supported".into());
            }
            let v = need(0)?.clone();
            let mask = Value::Int(Ints { dims: v.dims(), data: vec![1; v.dims().iter().product()] });
            Ok([v, mask].into_iter().take(outputs.max(1)).collect())
        }
        Op::Unary(u) => one(unary(*u, &x()?)?),
        Op::Binary(b) => match (need(0)?, need(1)?) {
            (Value::Int(p), Value::Int(q)) => Ok(vec![Value::Int(int_binary(*b, p, q)?)]),
            (p, q) => one(binary(*b, &float(p, device)?, &float(q, device)?)?),
        },
        Op::AddRelu => {
            let (a, b) = (float(need(0)?, device)?, float(need(1)?, device)?);
            if a.dims() == b.dims() {
                return one(mops::add_relu(&a, &b).map_err(e)?);
            }
            one(mops::relu(&a.broadcast_add(&b).map_err(e)?).map_err(e)?)
        }
        Op::Pow => {
            if let (Value::Int(b), Value::Int(p)) = (need(0)?, need(1)?) {
                let (dims, pairs) = broadcast_ints(b, p)?;
                let data =
                    pairs.iter().map(|&(b, p)| if p < 0 { 0 } else { b.wrapping_pow(p.min(u32::MAX as i64) as u32) });
                return Ok(vec![Value::Int(Ints { dims, data: data.collect() })]);
            }
            let exponent = need(1)?.float(device).map_err(e)?;
            if exponent.elem_count() != 1 {
                return one(pow_tensor(&x()?, &exponent)?);
            }
            let p = Value::Float(exponent).first()?.ok_or("Pow with an empty exponent")?;
            let xin = x()?;
            let y = match p {
                2.0 => xin.sqr(),
                1.0 => Ok(xin),
                0.5 => xin.sqrt(),
                p => xin.powf(p as f64),
            };
            one(y.map_err(e)?)
        }
        Op::Clip => {
            let xin = x()?;
            // An absent or empty bound does not clamp.
            let bound = |i: usize| -> R<Option<f64>> {
                let v = ins.get(i).copied().flatten().map(Value::first).transpose()?.flatten();
                Ok(v.map(f64::from))
            };
            let (lo, hi) = (bound(1)?, bound(2)?);
            one(clip(&xin, lo, hi)?)
        }
        Op::Softmax(a) => {
            let xin = x()?;
            let d = axis(*a, xin.rank())?;
            let max = xin.max_keepdim(d).map_err(e)?.detach();
            let ex = xin.broadcast_sub(&max).and_then(|t| t.exp()).map_err(e)?;
            one(ex.broadcast_div(&ex.sum_keepdim(d).map_err(e)?).map_err(e)?)
        }
        Op::MaxPool { pool, pad } => {
            let xin = pad_zeros(&x()?, *pad, f64::NEG_INFINITY)?;
            one(mops::max_pool2d(&xin, pool).map_err(e)?)
        }
        Op::AveragePool { pool, pad, count_pad } => {
            let xin = x()?;
            let padded = pad_zeros(&xin, *pad, 0.0)?;
            let sum_like = mops::avg_pool2d(&padded, pool).map_err(e)?;
            let has_pad = pad.is_some() || pool.h.padding > 0 || pool.w.padding > 0;
            if *count_pad || !has_pad {
                return one(sum_like);
            }
            // Divide by the real elements only: the same pooling of ones gives their share.
            let ones = Tensor::ones((1, 1, xin.dim(2).map_err(e)?, xin.dim(3).map_err(e)?), xin.dtype(), xin.device())
                .map_err(e)?;
            let share = mops::avg_pool2d(&pad_zeros(&ones, *pad, 0.0)?, pool).map_err(e)?;
            one(sum_like.broadcast_div(&share).map_err(e)?)
        }
        Op::GlobalAveragePool => {
            let xin = x()?;
            if xin.rank() != 4 {
                return Err(format!("GlobalAveragePool of a rank-{} tensor", xin.rank()));
            }
            one(mops::adaptive_avg_pool2d(&xin, 1, 1).map_err(e)?)
        }
        Op::LayerNorm { axis: a, eps } => {
            let xin = x()?;
            let first = axis(*a, xin.rank())?;
            let keep: Vec<usize> = xin.dims()[..first].to_vec();
            let inner: usize = xin.dims()[first..].iter().product();
            let flat = xin.reshape(keep.iter().copied().chain([inner]).collect::<Vec<_>>()).map_err(e)?;
            let last = flat.rank() - 1;
            let mean = flat.mean_keepdim(last).map_err(e)?;
            let centred = flat.broadcast_sub(&mean).map_err(e)?;
            let var = centred.sqr().and_then(|t| t.mean_keepdim(last)).map_err(e)?;
            let std = (var + *eps).and_then(|v| v.sqrt()).map_err(e)?;
            let normed = centred.broadcast_div(&std).map_err(e)?;
            let mut y = normed.reshape(xin.dims()).map_err(e)?;
            // The optional outputs: mean and 1/std, with the normalised axes kept as 1.
            let stat_dims: Vec<usize> =
                keep.iter().copied().chain(std::iter::repeat_n(1, xin.rank() - first)).collect();
            let extra = [mean.reshape(stat_dims.as_slice()), std.recip().and_then(|s| s.reshape(stat_dims.as_slice()))];
            if let Some(scale) = ins.get(1).copied().flatten() {
                y = y.broadcast_mul(&float(scale, device)?).map_err(e)?;
            }
            if let Some(bias) = ins.get(2).copied().flatten() {
                y = y.broadcast_add(&float(bias, device)?).map_err(e)?;
            }
            let mut out = vec![Value::Float(y)];
            for t in extra.into_iter().take(outputs.saturating_sub(1)) {
                out.push(Value::Float(t.map_err(e)?));
            }
            Ok(out)
        }
        Op::Gemm { alpha, beta, trans_a, trans_b } => {
            let a = x()?;
            let b = float(need(1)?, device)?;
            let b = if ctx.grads == Grads::All { b } else { b.detach() };
            let a = if *trans_a { a.t().map_err(e)? } else { a };
            let b = if *trans_b { b.t().map_err(e)? } else { b };
            let mut y = a.matmul(&b).map_err(e)?;
            if *alpha != 1.0 {
                y = (y * *alpha as f64).map_err(e)?;
            }
            if let Some(c) = ins.get(2).copied().flatten() {
                let c = (float(c, device)? * *beta as f64).map_err(e)?;
                y = y.broadcast_add(&c).map_err(e)?;
            }
            one(y)
        }
        Op::MatMul => {
            // numpy's rule: a 1-D operand gains an axis for the product, which then goes.
            let (a, b) = (x()?, float(need(1)?, device)?);
            let (a1, b1) = (a.rank() == 1, b.rank() == 1);
            let a = if a1 { a.unsqueeze(0).map_err(e)? } else { a };
            let b = if b1 { b.unsqueeze(1).map_err(e)? } else { b };
            let mut y = a.broadcast_matmul(&b).map_err(e)?;
            if b1 {
                y = y.squeeze(y.rank() - 1).map_err(e)?;
            }
            if a1 {
                y = y.squeeze(y.rank().saturating_sub(if b1 { 1 } else { 2 })).map_err(e)?;
            }
            one(y)
        }
        Op::Flatten(a) => {
            let v = need(0)?;
            let dims = v.dims();
            let k = if *a == dims.len() as i64 { dims.len() } else { axis(*a, dims.len().max(1))? };
            let outer: usize = dims[..k].iter().product();
            let inner: usize = dims[k..].iter().product();
            reshape_value(v, &[outer, inner], device)
        }
        Op::Reshape { allow_zero } => {
            let v = need(0)?;
            let shape = need(1)?.ints()?;
            let dims = reshape_dims(&v.dims(), &shape.data, *allow_zero)?;
            reshape_value(v, &dims, device)
        }
        Op::Transpose(perm) => {
            let v = need(0)?;
            let rank = v.dims().len();
            let perm: Vec<usize> = match perm {
                Some(p) => p.iter().map(|&a| axis(a, rank)).collect::<R<_>>()?,
                None => (0..rank).rev().collect(),
            };
            let mut seen = perm.clone();
            seen.sort_unstable();
            if seen != (0..rank).collect::<Vec<_>>() {
                return Err(format!("perm {perm:?} is not a permutation of {rank} axes"));
            }
            match v {
                Value::Float(t) => one(t.permute(perm).and_then(|t| t.contiguous()).map_err(e)?),
                Value::Int(i) if rank <= 1 => Ok(vec![Value::Int(i.clone())]),
                Value::Int(_) => Err("Transpose of an integer tensor of rank above 1".into()),
            }
        }
        Op::Concat(a) => {
            let vals: Vec<&Value> = ins.iter().copied().flatten().collect();
            if vals.is_empty() {
                return Err("Concat without inputs".into());
            }
            if vals.iter().all(|v| matches!(v, Value::Int(i) if i.dims.len() <= 1)) {
                let data = vals.iter().flat_map(|v| if let Value::Int(i) = v { i.data.clone() } else { Vec::new() });
                return Ok(vec![Value::Int(Ints::vector(data.collect()))]);
            }
            let ts: Vec<Tensor> = vals.iter().map(|v| float(v, device)).collect::<R<_>>()?;
            let d = axis(*a, ts[0].rank())?;
            one(Tensor::cat(&ts, d).map_err(e)?)
        }
        Op::Split { axis: a, sizes, outputs } => {
            let xin = x()?;
            let d = axis(*a, xin.rank())?;
            let len = xin.dim(d).map_err(e)?;
            let sizes: Vec<usize> = match (sizes, ins.get(1).copied().flatten()) {
                (Some(s), _) => s.iter().map(|&v| v.max(0) as usize).collect(),
                (None, Some(v)) => v.ints()?.data.iter().map(|&v| v.max(0) as usize).collect(),
                (None, None) => {
                    let each = len.div_ceil(*outputs);
                    (0..*outputs).map(|i| each.min(len.saturating_sub(i * each))).collect()
                }
            };
            if sizes.iter().sum::<usize>() != len || sizes.len() != *outputs {
                return Err(format!("split sizes {sizes:?} do not cut axis {d} of length {len} into {outputs}"));
            }
            let mut start = 0;
            let mut out = Vec::with_capacity(sizes.len());
            for s in sizes {
                out.push(Value::Float(xin.narrow(d, start, s).map_err(e)?));
                start += s;
            }
            Ok(out)
        }
        Op::Slice => slice(ins, device),
        Op::Gather(a) => gather(need(0)?, &need(1)?.ints()?, *a, device),
        Op::Squeeze(axes) => {
            let v = need(0)?;
            let dims = v.dims();
            let axes = match (axes, ins.get(1).copied().flatten()) {
                (Some(a), _) => a.clone(),
                (None, Some(a)) => a.ints()?.data,
                (None, None) => (0..dims.len() as i64).filter(|&i| dims[i as usize] == 1).collect(),
            };
            let drop: Vec<usize> = axes.iter().map(|&a| axis(a, dims.len())).collect::<R<_>>()?;
            if let Some(&bad) = drop.iter().find(|&&d| dims[d] != 1) {
                return Err(format!("cannot squeeze axis {bad} of size {}", dims[bad]));
            }
            let new: Vec<usize> = dims.iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, &d)| d).collect();
            reshape_value(v, &new, device)
        }
        Op::Unsqueeze(axes) => {
            let v = need(0)?;
            let dims = v.dims();
            let axes = match (axes, ins.get(1).copied().flatten()) {
                (Some(a), _) => a.clone(),
                (None, None) => return Err("Unsqueeze without axes".into()),
                (None, Some(a)) => a.ints()?.data,
            };
            let rank = dims.len() + axes.len();
            let mut at: Vec<usize> = axes.iter().map(|&a| axis(a, rank)).collect::<R<_>>()?;
            at.sort_unstable();
            let mut new = dims.clone();
            for a in at {
                new.insert(a.min(new.len()), 1);
            }
            reshape_value(v, &new, device)
        }
        Op::Shape { start, end } => {
            let dims = need(0)?.dims();
            let r = dims.len() as i64;
            let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, t) = (clampi(*start), clampi(end.unwrap_or(r)));
            let data = dims[s..t.max(s)].iter().map(|&d| d as i64).collect();
            Ok(vec![Value::Int(Ints::vector(data))])
        }
        Op::Constant(v) => Ok(vec![v.clone()]),
        Op::ConstantOfShape(fill) => {
            let shape = need(0)?.ints()?;
            let dims: Vec<usize> = shape.data.iter().map(|&d| d.max(0) as usize).collect();
            let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_MADE);
            let n = n.ok_or_else(|| format!("ConstantOfShape of {dims:?} is too large"))?;
            match fill {
                Value::Int(i) => {
                    Ok(vec![Value::Int(Ints { dims, data: vec![i.data.first().copied().unwrap_or(0); n] })])
                }
                Value::Float(_) => one(Tensor::full(fill.first()?.unwrap_or(0.0), dims, device).map_err(e)?),
            }
        }
        Op::Expand => {
            let v = need(0)?;
            let shape: Vec<usize> = need(1)?.ints()?.data.iter().map(|&d| d.max(0) as usize).collect();
            let dims = broadcast_dims(&v.dims(), &shape)?;
            let t = float(v, device)?;
            one(t.broadcast_as(dims).and_then(|t| t.contiguous()).map_err(e)?)
        }
        Op::Pad { value_attr, mode } => {
            let xin = x()?;
            let pads = need(1)?.ints()?.data;
            let value = match ins.get(2).copied().flatten() {
                Some(v) => v.first()?.unwrap_or(0.0),
                None => *value_attr,
            };
            let rank = xin.rank();
            let axes: Vec<usize> = match ins.get(3).copied().flatten() {
                Some(a) => a.ints()?.data.iter().map(|&a| axis(a, rank)).collect::<R<_>>()?,
                None => (0..rank).collect(),
            };
            if pads.len() != 2 * axes.len() || pads.iter().any(|&p| p < 0) {
                return Err(format!("pads {pads:?} for {} axes (only non-negative pads are supported)", axes.len()));
            }
            let mut y = xin;
            for (k, &a) in axes.iter().enumerate() {
                let (before, after) = (pads[k] as usize, pads[k + axes.len()] as usize);
                y = match mode {
                    PadMode::Constant => mops::pad_value(&y, a, before, after, value as f64).map_err(e)?,
                    m => pad_by_index(&y, a, before, after, *m)?,
                };
            }
            one(y)
        }
        Op::ReduceMean { axes, keep, noop_with_empty_axes } => {
            let xin = x()?;
            let axes = match (axes, ins.get(1).copied().flatten()) {
                (Some(a), _) => a.clone(),
                (None, Some(a)) => a.ints()?.data,
                (None, None) => Vec::new(),
            };
            if axes.is_empty() && *noop_with_empty_axes {
                return one(xin);
            }
            let rank = xin.rank();
            let mut ds: Vec<usize> = if axes.is_empty() {
                (0..rank).collect()
            } else {
                axes.iter().map(|&a| axis(a, rank)).collect::<R<_>>()?
            };
            ds.sort_unstable();
            ds.dedup();
            let mut y = xin;
            for &d in ds.iter().rev() {
                y = if *keep { y.mean_keepdim(d) } else { y.mean(d) }.map_err(e)?;
            }
            one(y)
        }
        Op::Cast(to_float) => {
            let v = need(0)?;
            match (to_float, v) {
                (true, _) => one(float(v, device)?),
                (false, Value::Int(i)) => Ok(vec![Value::Int(i.clone())]),
                (false, Value::Float(_)) => Ok(vec![Value::Int(v.ints()?)]),
            }
        }
        Op::Equal => match (need(0)?, need(1)?) {
            (Value::Int(p), Value::Int(q)) => {
                let (dims, pairs) = broadcast_ints(p, q)?;
                Ok(vec![Value::Int(Ints { dims, data: pairs.iter().map(|&(a, b)| i64::from(a == b)).collect() })])
            }
            (p, q) => {
                let (a, b) = (float(p, device)?, float(q, device)?);
                Ok(vec![Value::Int(
                    Value::Float(a.broadcast_eq(&b).and_then(|m| m.to_dtype(candle_core::DType::F32)).map_err(e)?)
                        .ints()?,
                )])
            }
        },
        Op::Where => match (need(0)?.ints()?, need(1)?, need(2)?) {
            (c, Value::Int(a), Value::Int(b)) => {
                let dims = broadcast_dims(&broadcast_dims(&c.dims, &a.dims)?, &b.dims)?;
                let zeros = Ints { dims: dims.clone(), data: vec![0; dims.iter().product()] };
                let full =
                    |v: &Ints| broadcast_ints(v, &zeros).map(|(_, p)| p.into_iter().map(|x| x.0).collect::<Vec<_>>());
                let (cs, av, bv) = (full(&c)?, full(a)?, full(b)?);
                let data = cs.iter().zip(av.iter().zip(&bv)).map(|(&c, (&a, &b))| if c != 0 { a } else { b }).collect();
                Ok(vec![Value::Int(Ints { dims, data })])
            }
            (c, a, b) => {
                let (a, b) = (float(a, device)?, float(b, device)?);
                let dims = broadcast_dims(&broadcast_dims(&c.dims, a.dims())?, b.dims())?;
                let cond = c.to_float(device).and_then(|t| t.broadcast_as(dims.as_slice())?.ne(0f64)).map_err(e)?;
                let (a, b) = (a.broadcast_as(dims.as_slice()).map_err(e)?, b.broadcast_as(dims.as_slice()).map_err(e)?);
                one(cond.where_cond(&a, &b).map_err(e)?)
            }
        },
        Op::Mod { fmod } => match (need(0)?, need(1)?) {
            (Value::Int(p), Value::Int(q)) => {
                let (dims, pairs) = broadcast_ints(p, q)?;
                let data = pairs
                    .iter()
                    .map(|&(a, b)| match (b, fmod) {
                        (0, _) => Err("integer modulo by zero".to_string()),
                        (b, true) => Ok(a.wrapping_rem(b)),
                        (b, false) => Ok(a.wrapping_rem(b).wrapping_add(b).wrapping_rem(b)),
                    })
                    .collect::<R<Vec<i64>>>()?;
                Ok(vec![Value::Int(Ints { dims, data })])
            }
            (p, q) => {
                let (a, b) = (float(p, device)?, float(q, device)?);
                // a - b * trunc(a / b) (fmod) or a - b * floor(a / b).
                let ratio = a.broadcast_div(&b).map_err(e)?;
                let whole = match fmod {
                    true => {
                        ratio.lt(0f64).and_then(|neg| neg.where_cond(&ratio.ceil()?, &ratio.floor()?)).map_err(e)?
                    }
                    false => ratio.floor().map_err(e)?,
                };
                let r = a.broadcast_sub(&b.broadcast_mul(&whole).map_err(e)?).map_err(e)?;
                // A finite a over an infinite b (where the formula gives inf * 0): a itself, or
                // for Python's rule, b when the signs differ (-3 mod inf is inf).
                let dims = r.dims().to_vec();
                let (a, b) = (a.broadcast_as(dims.as_slice()).map_err(e)?, b.broadcast_as(dims.as_slice()).map_err(e)?);
                let by_inf = b.abs().and_then(|m| m.eq(f64::INFINITY)).map_err(e)?;
                let finite = a.abs().and_then(|m| m.lt(f64::INFINITY)).map_err(e)?;
                let other_sign = a.ne(0f64).and_then(|nz| nz.mul(&a.lt(0f64)?.ne(&b.lt(0f64)?)?)).map_err(e)?;
                let take_b = if *fmod { Tensor::zeros_like(&other_sign).map_err(e)? } else { other_sign };
                let fix = take_b.where_cond(&b, &a).map_err(e)?;
                one(by_inf.mul(&finite).and_then(|m| m.where_cond(&fix, &r)).map_err(e)?)
            }
        },
        Op::Range => match (need(0)?, need(1)?, need(2)?) {
            (Value::Int(s), Value::Int(l), Value::Int(d)) => {
                let scalar =
                    |v: &Ints, what: &str| v.data.first().copied().ok_or_else(|| format!("Range's {what} is empty"));
                let (start, limit, delta) = (scalar(s, "start")?, scalar(l, "limit")?, scalar(d, "delta")?);
                if delta == 0 {
                    return Err("Range's delta is 0".to_string());
                }
                // ceil((limit - start) / delta), in i128 so no operand overflows.
                let (span, step) = (i128::from(limit) - i128::from(start), i128::from(delta));
                let n = (span / step + i128::from(span % step != 0 && (span < 0) == (step < 0))).max(0);
                let n = usize::try_from(n).ok().filter(|&n| n <= MAX_MADE);
                let n = n.ok_or_else(|| format!("Range from {start} to {limit} by {delta} is too long"))?;
                let data = (0..n as i64).map(|i| start.wrapping_add(i.wrapping_mul(delta))).collect();
                Ok(vec![Value::Int(Ints::vector(data))])
            }
            (s, l, d) => {
                let scalar = |v: &Value, what: &str| v.first()?.ok_or_else(|| format!("Range's {what} is empty"));
                let (start, limit, delta) = (scalar(s, "start")?, scalar(l, "limit")?, scalar(d, "delta")?);
                let steps = ((f64::from(limit) - f64::from(start)) / f64::from(delta)).ceil();
                if !steps.is_finite() {
                    return Err(format!("Range from {start} to {limit} by {delta} has no length"));
                }
                let n = steps.max(0.0);
                if n > MAX_MADE as f64 {
                    return Err(format!("Range from {start} to {limit} by {delta} is too long"));
                }
                let data: Vec<f32> = (0..n as usize).map(|i| start + i as f32 * delta).collect();
                one(Tensor::from_vec(data, n as usize, device).map_err(e)?)
            }
        },
        Op::Identity => Ok((0..outputs.max(1)).map(|_| need(0).cloned()).collect::<R<_>>()?),
    }
}

/// Reflect or edge padding along `axis`, as a gather (so gradients flow to the sources).
fn pad_by_index(x: &Tensor, axis: usize, before: usize, after: usize, mode: PadMode) -> R<Tensor> {
    let len = x.dim(axis).map_err(e)? as i64;
    if len == 0 || (mode == PadMode::Reflect && (before as i64 >= len || after as i64 >= len)) {
        return Err(format!("cannot {mode:?}-pad an axis of {len} by {before} and {after}"));
    }
    let idx: Vec<u32> = (-(before as i64)..len + after as i64)
        .map(|i| match mode {
            PadMode::Edge => i.clamp(0, len - 1),
            PadMode::Wrap => i.rem_euclid(len),
            _ if i < 0 => -i,
            _ if i >= len => 2 * (len - 1) - i,
            _ => i,
        } as u32)
        .collect();
    let ids = Tensor::from_vec(idx.clone(), idx.len(), x.device()).map_err(e)?;
    x.contiguous().and_then(|x| x.index_select(&ids, axis)).map_err(e)
}

/// `x ** p` elementwise with numpy's rules for negative bases: an integer power keeps the
/// sign's parity, another is NaN; `0 ** 0` is 1.
fn pow_tensor(x: &Tensor, p: &Tensor) -> R<Tensor> {
    let dims = broadcast_dims(x.dims(), p.dims())?;
    let (x, p) = (x.broadcast_as(dims.as_slice()).map_err(e)?, p.broadcast_as(dims.as_slice()).map_err(e)?);
    let magnitude = p.mul(&x.abs().and_then(|a| a.log()).map_err(e)?).and_then(|v| v.exp()).map_err(e)?;
    let whole = mask(p.eq(&p.floor().map_err(e)?), &x)?;
    let half = (&p * 0.5).map_err(e)?;
    let odd = mask(half.ne(&half.floor().map_err(e)?), &x)?.mul(&whole).map_err(e)?;
    let negative = mask(x.lt(0f64), &x)?;
    let when = |m: Tensor| m.gt(0f64).map_err(e);
    let y = when(negative.mul(&odd).map_err(e)?)?.where_cond(&magnitude.neg().map_err(e)?, &magnitude).map_err(e)?;
    let fractional = negative.mul(&(1.0 - &whole).map_err(e)?).map_err(e)?;
    let nans = Tensor::full(f32::NAN, dims.as_slice(), x.device()).map_err(e)?;
    let y = when(fractional)?.where_cond(&nans, &y).map_err(e)?;
    let zero_zero = mask(x.eq(0f64), &x)?.mul(&mask(p.eq(0f64), &x)?).map_err(e)?;
    let ones = Tensor::ones(dims.as_slice(), x.dtype(), x.device()).map_err(e)?;
    when(zero_zero)?.where_cond(&ones, &y).map_err(e)
}

/// Clamp with PyTorch's hardtanh gradient (1 strictly inside): ReLU6 exports as Clip.
fn clip(x: &Tensor, lo: Option<f64>, hi: Option<f64>) -> R<Tensor> {
    if let (Some(lo), Some(hi)) = (lo, hi)
        && lo > hi
    {
        // ONNX: min then max, so every value becomes max.
        return Tensor::full(hi as f32, x.dims(), x.device()).map_err(e);
    }
    mops::hardtanh(x, lo, hi).map_err(e)
}

/// ONNX's Reshape target: 0 copies the input's size (unless `allow_zero`), -1 is inferred.
pub fn reshape_dims(input: &[usize], shape: &[i64], allow_zero: bool) -> R<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &s) in shape.iter().enumerate() {
        match s {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allow_zero => {
                out.push(*input.get(i).ok_or_else(|| format!("reshape {shape:?}: no size {i} to copy"))?)
            }
            s if s >= 0 => out.push(s as usize),
            _ => return Err(format!("reshape to {shape:?}: invalid size {s}")),
        }
    }
    let known = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("reshape size overflows")?;
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {input:?} to {shape:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!("cannot reshape {input:?} ({total} values) to {out:?}"));
    }
    Ok(out)
}

fn reshape_value(v: &Value, dims: &[usize], _device: &Device) -> R<Vec<Value>> {
    match v {
        Value::Float(t) => Ok(vec![Value::Float(t.reshape(dims).map_err(e)?)]),
        Value::Int(i) => {
            if dims.iter().product::<usize>() != i.data.len() {
                return Err(format!("cannot reshape {:?} to {dims:?}", i.dims));
            }
            Ok(vec![Value::Int(Ints { dims: dims.to_vec(), data: i.data.clone() })])
        }
    }
}

/// Slice with any non-zero steps (ONNX's clamping rules), on floats of any rank or
/// integer vectors.
fn slice(ins: &[Option<&Value>], device: &Device) -> R<Vec<Value>> {
    let get = |i: usize| ins.get(i).copied().flatten();
    let data = get(0).ok_or("Slice without data")?;
    let dims = data.dims();
    let starts = get(1).ok_or("Slice without starts")?.ints()?.data;
    let ends = get(2).ok_or("Slice without ends")?.ints()?.data;
    let axes: Vec<usize> = match get(3) {
        Some(a) => a.ints()?.data.iter().map(|&a| axis(a, dims.len())).collect::<R<_>>()?,
        None => (0..starts.len()).collect(),
    };
    let steps = match get(4) {
        Some(s) => s.ints()?.data,
        None => vec![1; starts.len()],
    };
    if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
        return Err("Slice: starts, ends, axes and steps differ in length".into());
    }
    // Per axis, the indices kept.
    let mut picks: Vec<Option<Vec<usize>>> = vec![None; dims.len()];
    for (k, &a) in axes.iter().enumerate() {
        let len = dims[a] as i64;
        let step = steps[k];
        if step == 0 {
            return Err("Slice with a step of 0".into());
        }
        let fix = |v: i64, lo: i64, hi: i64| (if v < 0 { v.saturating_add(len) } else { v }).clamp(lo, hi);
        let idx: Vec<usize> = if step > 0 {
            let (s, t) = (fix(starts[k], 0, len), fix(ends[k], 0, len));
            (s..t).step_by(step as usize).map(|i| i as usize).collect()
        } else {
            let (s, t) = (fix(starts[k], -1, len - 1), fix(ends[k], -1, len - 1));
            let mut v = Vec::new();
            let mut i = s;
            while i > t {
                v.push(i as usize);
                i += step;
            }
            v
        };
        picks[a] = Some(idx);
    }
    match data {
        Value::Int(i) if i.dims.len() == 1 => {
            let data = match &picks[0] {
                Some(idx) => idx.iter().map(|&j| i.data[j]).collect(),
                None => i.data.clone(),
            };
            Ok(vec![Value::Int(Ints::vector(data))])
        }
        _ => {
            let mut y = float(data, device)?;
            for (d, pick) in picks.iter().enumerate() {
                let Some(idx) = pick else { continue };
                let contiguous = idx.windows(2).all(|w| w[1] == w[0] + 1);
                y = match (contiguous, idx.first()) {
                    (true, Some(&first)) => y.narrow(d, first, idx.len()),
                    _ => {
                        let ids: Vec<u32> = idx.iter().map(|&j| j as u32).collect();
                        Tensor::from_vec(ids, idx.len(), device).and_then(|ids| y.contiguous()?.index_select(&ids, d))
                    }
                }
                .map_err(e)?;
            }
            Ok(vec![Value::Float(y)])
        }
    }
}

fn gather(data: &Value, idx: &Ints, a: i64, device: &Device) -> R<Vec<Value>> {
    let dims = data.dims();
    let d = axis(a, dims.len())?;
    let len = dims[d] as i64;
    let fixed: Vec<i64> = idx
        .data
        .iter()
        .map(|&i| {
            if (-len..len).contains(&i) {
                Ok(if i < 0 { i + len } else { i })
            } else {
                Err(format!("index {i} is outside axis {d} of size {len}"))
            }
        })
        .collect::<R<_>>()?;
    match data {
        Value::Int(v) if v.dims.len() == 1 => {
            let data = fixed.iter().map(|&i| v.data[i as usize]).collect();
            Ok(vec![Value::Int(Ints { dims: idx.dims.clone(), data })])
        }
        _ => {
            let t = float(data, device)?;
            let ids = Tensor::from_vec(fixed.iter().map(|&i| i as u32).collect::<Vec<_>>(), fixed.len(), device)
                .map_err(e)?;
            let picked = t.contiguous().and_then(|t| t.index_select(&ids, d)).map_err(e)?;
            let mut shape: Vec<usize> = dims[..d].to_vec();
            shape.extend(&idx.dims);
            shape.extend(&dims[d + 1..]);
            Ok(vec![Value::Float(picked.reshape(shape).map_err(e)?)])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{broadcast_dims, reshape_dims};

    #[test]
    fn reshape_copies_zeros_and_infers_one_size() {
        assert_eq!(reshape_dims(&[2, 3, 4], &[0, -1], false).unwrap(), [2, 12]);
        assert_eq!(reshape_dims(&[2, 3, 4], &[-1, 4], false).unwrap(), [6, 4]);
        assert_eq!(reshape_dims(&[0, 3], &[0, 3], true).unwrap(), [0, 3]);
        assert!(reshape_dims(&[2, 3], &[4, -1], false).is_err());
        assert!(reshape_dims(&[2, 3], &[-1, -1], false).is_err());
        assert!(reshape_dims(&[2, 3], &[i64::MAX, 2], false).is_err());
    }

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_dims(&[2, 1, 4], &[3, 1]).unwrap(), [2, 3, 4]);
        assert!(broadcast_dims(&[2, 3], &[4, 3, 2]).is_err());
    }
}
