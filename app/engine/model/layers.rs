//! Parameterised layers, named by their PyTorch state_dict prefix.

use candle_core::{DType, Result as CResult, Tensor, Var};
use rand::Rng;

use super::graph::{GraphBuilder, NodeId};
use super::kernels::{self, Grads};
use super::ops::{self, Pool2d};
use super::params::{Expect, LayerKind, Loader, Role, overwrite};
use crate::engine::error::{EngineError, Result};

/// How batch norm computes its statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BnMode {
    /// Running statistics (PyTorch's `model.eval()`), the default.
    #[default]
    Running,
    /// Statistics of the current batch, running statistics left untouched
    /// (how the papers' code evaluated, in training mode).
    Batch,
    /// Batch statistics, running statistics updated: training.
    Train,
}

/// Per-call state of a forward pass: batch-norm mode, dropout, and an optional tap
/// that keeps one convolution's raw output.
#[derive(Default)]
pub struct ForwardCtx<'a> {
    pub bn: BnMode,
    /// Dropout is active only when a random source is given (training).
    pub dropout_rng: Option<&'a mut rand_chacha::ChaCha8Rng>,
    pub tap: Option<Tap>,
    /// The gradients the backward pass will be asked for.
    pub grads: Grads,
}

/// Captures the output of the layer named `layer` (before batch norm and activation).
#[derive(Debug, Clone)]
pub struct Tap {
    pub layer: String,
    pub output: Option<Tensor>,
}

impl ForwardCtx<'_> {
    /// Evaluation: no gradient, so no graph is kept.
    pub fn eval(bn: BnMode) -> Self {
        Self { bn, grads: Grads::None, ..Self::default() }
    }

    /// Attacks: the input's gradient only.
    pub fn input_grad(bn: BnMode) -> Self {
        Self { bn, grads: Grads::Input, ..Self::default() }
    }

    fn observe(&mut self, layer: &str, y: &Tensor) {
        if let Some(tap) = &mut self.tap
            && tap.layer == layer
        {
            tap.output = Some(y.clone());
        }
    }
}

#[derive(Debug, Clone)]
pub struct Conv2d {
    pub key: String,
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: [usize; 2],
    dilation: usize,
    groups: usize,
}

/// Geometry of a convolution, as PyTorch's `nn.Conv2d` arguments.
#[derive(Debug, Clone, Copy)]
pub struct ConvGeometry {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl ConvGeometry {
    pub fn new(stride: usize, padding: usize) -> Self {
        Self { stride: [stride; 2], padding: [padding; 2], dilation: [1; 2], groups: 1 }
    }
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
}

impl Conv2d {
    /// This layer as a node of the model graph, reading node `x`.
    pub fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        g.layer(&self.key, x)
    }

    /// Loads `prefix.weight` (and `prefix.bias` if present). `in_channels`, when known,
    /// is checked against the weight.
    pub fn load(l: &mut Loader, prefix: &str, geo: ConvGeometry, in_channels: Option<usize>) -> Result<Self> {
        let key = format!("{prefix}.weight");
        let shape = l.shape(&key)?;
        if shape.len() != 4 {
            return Err(EngineError::model(format!(
                "`{key}` has shape {shape:?} but a convolution weight has 4 dimensions"
            )));
        }
        if shape.contains(&0) {
            return Err(EngineError::model(format!(
                "`{key}` has shape {shape:?}: a convolution needs every size >= 1"
            )));
        }
        if geo.groups == 0 || geo.stride.contains(&0) || geo.dilation.contains(&0) {
            return Err(EngineError::model(format!(
                "`{prefix}`: stride {:?}, dilation {:?} and groups {} must all be at least 1",
                geo.stride, geo.dilation, geo.groups
            )));
        }
        if let Some(c) = in_channels
            && shape[1] * geo.groups != c
        {
            return Err(EngineError::model(format!(
                "`{key}` has shape {shape:?}: it takes {} input channels (groups {}) but receives {c}",
                shape[1] * geo.groups,
                geo.groups
            )));
        }
        if shape[0] % geo.groups != 0 {
            return Err(EngineError::model(format!(
                "`{key}`: {} output channels do not split into {} groups",
                shape[0], geo.groups
            )));
        }
        if geo.stride[0] != geo.stride[1] || geo.dilation[0] != geo.dilation[1] {
            return Err(EngineError::model(format!("`{prefix}`: only square strides and dilations are supported")));
        }
        let weight = l.tensor(&key, Role::Weight, Expect::Exact(&shape))?;
        let bias = l.optional(&format!("{prefix}.bias"), Role::Bias, Expect::Exact(&[shape[0]]))?;
        let params = weight.elem_count() + bias.as_ref().map_or(0, Tensor::elem_count);
        l.record_layer(prefix, LayerKind::Conv2d, &shape, params);
        Ok(Self {
            key: prefix.to_string(),
            weight,
            bias,
            stride: geo.stride[0],
            padding: geo.padding,
            dilation: geo.dilation[0],
            groups: geo.groups,
        })
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn has_bias(&self) -> bool {
        self.bias.is_some()
    }

    pub fn kernel(&self) -> [usize; 2] {
        [self.weight.dims()[2], self.weight.dims()[3]]
    }

    /// Output spatial size for an input of `h` x `w`.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let [kh, kw] = self.kernel();
        let f = |len: usize, k: usize, p: usize| {
            (len + 2 * p).checked_sub(self.dilation * (k - 1) + 1).map(|v| v / self.stride + 1)
        };
        Some((f(h, kh, self.padding[0])?, f(w, kw, self.padding[1])?))
    }

    fn geometry(&self) -> kernels::ConvGeometry {
        kernels::ConvGeometry {
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: self.groups,
        }
    }

    /// The convolution followed by `then` in one op (CPU kernels only; no tap sees the
    /// convolution's own output).
    pub fn forward_then(&self, x: &Tensor, ctx: &ForwardCtx, then: kernels::Epilogue) -> CResult<Tensor> {
        self.forward_then_pool(x, ctx, then, None)
    }

    /// [`Self::forward_then`] and then, when given, a max-pool, in one op.
    pub fn forward_then_pool(
        &self,
        x: &Tensor,
        ctx: &ForwardCtx,
        then: kernels::Epilogue,
        pool: Option<Pool2d>,
    ) -> CResult<Tensor> {
        let g = self.geometry();
        kernels::conv2d_then(x, &self.weight, self.bias.as_ref(), g, ctx.grads, Some(then), pool)
    }

    /// The convolution and a ReLU in one op, on the CPU kernels when no tap wants the
    /// convolution's own output (else `None`: run them apart).
    pub fn forward_relu(&self, x: &Tensor, ctx: &ForwardCtx) -> Option<CResult<Tensor>> {
        let tapped = ctx.tap.as_ref().is_some_and(|t| t.layer == self.key);
        if tapped || !kernels::enabled_for(x) {
            return None;
        }
        Some(self.forward_then(x, ctx, kernels::Epilogue::relu(self.out_channels())))
    }

    pub fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let [ph, pw] = self.padding;
        let y = if kernels::enabled_for(x) {
            let y = kernels::conv2d(x, &self.weight, self.bias.as_ref(), self.geometry(), ctx.grads)?;
            ctx.observe(&self.key, &y);
            return Ok(y);
        } else if ph == pw {
            x.conv2d(&self.weight, ph, self.stride, self.dilation, self.groups)?
        } else {
            x.pad_with_zeros(2, ph, ph)?.pad_with_zeros(3, pw, pw)?.conv2d(
                &self.weight,
                0,
                self.stride,
                self.dilation,
                self.groups,
            )?
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
            None => y,
        };
        ctx.observe(&self.key, &y);
        Ok(y)
    }
}

#[derive(Debug, Clone)]
pub struct Linear {
    pub key: String,
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// This layer as a node of the model graph, reading node `x`.
    pub fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        g.layer(&self.key, x)
    }

    pub fn load(l: &mut Loader, prefix: &str, in_features: Option<usize>) -> Result<Self> {
        let key = format!("{prefix}.weight");
        let shape = l.shape(&key)?;
        if shape.len() != 2 {
            return Err(EngineError::model(format!(
                "`{key}` has shape {shape:?} but a linear weight has 2 dimensions"
            )));
        }
        if let Some(n) = in_features
            && shape[1] != n
        {
            return Err(EngineError::model(format!(
                "`{key}` has shape {shape:?}: it takes {} inputs but the layer before gives {n}",
                shape[1]
            )));
        }
        let weight = l.tensor(&key, Role::Weight, Expect::Exact(&shape))?;
        let bias = l.optional(&format!("{prefix}.bias"), Role::Bias, Expect::Exact(&[shape[0]]))?;
        let params = weight.elem_count() + bias.as_ref().map_or(0, Tensor::elem_count);
        l.record_layer(prefix, LayerKind::Linear, &shape, params);
        Ok(Self { key: prefix.to_string(), weight, bias })
    }

    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn has_bias(&self) -> bool {
        self.bias.is_some()
    }

    pub fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        if kernels::enabled_for(x) {
            let y = kernels::linear(x, &self.weight, self.bias.as_ref(), ctx.grads)?;
            ctx.observe(&self.key, &y);
            return Ok(y);
        }
        let y = x.matmul(&self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        ctx.observe(&self.key, &y);
        Ok(y)
    }
}

#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    pub key: String,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    running_mean: Var,
    running_var: Var,
    batch_count: Option<Var>,
    eps: f64,
    momentum: f64,
}

impl BatchNorm2d {
    /// This layer as a node of the model graph, reading node `x`.
    pub fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        g.layer(&self.key, x)
    }

    pub fn load(l: &mut Loader, prefix: &str, channels: usize, eps: f64, momentum: f64) -> Result<Self> {
        let c = [channels];
        let weight = l.optional(&format!("{prefix}.weight"), Role::BnWeight, Expect::Exact(&c))?;
        let bias = l.optional(&format!("{prefix}.bias"), Role::BnBias, Expect::Exact(&c))?;
        let running_mean = l.tensor(&format!("{prefix}.running_mean"), Role::RunningMean, Expect::Exact(&c))?;
        let running_var = l.tensor(&format!("{prefix}.running_var"), Role::RunningVar, Expect::Exact(&c))?;
        let batch_count = l.optional(&format!("{prefix}.num_batches_tracked"), Role::BatchCount, Expect::Rank(0))?;
        let params = weight.as_ref().map_or(0, Tensor::elem_count) + bias.as_ref().map_or(0, Tensor::elem_count);
        l.record_layer(prefix, LayerKind::BatchNorm2d, &c, params);
        // Running statistics change in training; they are held as Vars so updates land in place.
        let as_var = |t: Tensor| Var::from_tensor(&t);
        Ok(Self {
            key: prefix.to_string(),
            weight,
            bias,
            running_mean: as_var(running_mean)?,
            running_var: as_var(running_var)?,
            batch_count: batch_count.map(as_var).transpose()?,
            eps,
            momentum,
        })
    }

    /// Moves the running statistics towards a batch's (PyTorch's momentum update, with
    /// the unbiased variance) and counts the batch.
    fn update_running(&self, mean: &Tensor, biased_var: &Tensor, count: f64) -> CResult<()> {
        let m = self.momentum;
        let unbiased = (biased_var.detach() * (count / (count - 1.0).max(1.0)))?;
        let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean.detach() * m)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?;
        overwrite(&self.running_mean, &rm)?;
        overwrite(&self.running_var, &rv)?;
        if let Some(bc) = &self.batch_count {
            overwrite(bc, &(bc.as_tensor().to_dtype(DType::F64)? + 1.0)?.to_dtype(DType::I64)?)?;
        }
        Ok(())
    }

    /// The per-channel `(alpha, beta)` of `y = x * alpha + beta` for these statistics,
    /// folded as PyTorch's CPU kernels do.
    fn fold(&self, mean: &Tensor, var: Tensor) -> CResult<(Tensor, Tensor)> {
        let inv_std = (var + self.eps)?.sqrt()?.recip()?;
        let alpha = match &self.weight {
            Some(w) => w.mul(&inv_std)?,
            None => inv_std,
        };
        let beta = mean.mul(&alpha)?.neg()?;
        let beta = match &self.bias {
            Some(b) => b.add(&beta)?,
            None => beta,
        };
        Ok((alpha, beta))
    }

    /// With running statistics, the layer as `x * alpha + beta` per channel (detached:
    /// evaluation gives the input a gradient only).
    pub fn running_affine(&self) -> CResult<(Vec<f32>, Vec<f32>)> {
        let mean = self.running_mean.as_tensor().detach();
        let (alpha, beta) = self.fold(&mean, self.running_var.as_tensor().detach())?;
        Ok((alpha.detach().to_vec1()?, beta.detach().to_vec1()?))
    }

    pub fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        self.forward_then(x, ctx, false)
    }

    /// The layer followed, when `relu`, by ReLU: one op with batch statistics on the CPU
    /// kernels (training), else the two apart.
    pub fn forward_then(&self, x: &Tensor, ctx: &mut ForwardCtx, relu: bool) -> CResult<Tensor> {
        let c = x.dim(1)?;
        let count = (x.elem_count() / c.max(1)) as f64;
        if ctx.bn != BnMode::Running && kernels::enabled_for(x) {
            let ones;
            let zeros;
            let w = match &self.weight {
                Some(w) => w,
                None => {
                    ones = Tensor::ones(c, x.dtype(), x.device())?;
                    &ones
                }
            };
            let b = match &self.bias {
                Some(b) => b,
                None => {
                    zeros = Tensor::zeros(c, x.dtype(), x.device())?;
                    &zeros
                }
            };
            let (y, (mean, var)) = kernels::batch_norm(x, w, b, self.eps, ctx.grads, relu)?;
            if ctx.bn == BnMode::Train {
                let t = |v: Vec<f32>| Tensor::from_vec(v, c, x.device());
                self.update_running(&t(mean)?, &t(var)?, count)?;
            }
            return Ok(y);
        }
        let (mean, var) = match ctx.bn {
            BnMode::Running => (self.running_mean.as_tensor().detach(), self.running_var.as_tensor().detach()),
            BnMode::Batch | BnMode::Train => {
                // Per channel over batch and positions, as one reduction (like PyTorch).
                let per_channel = x.transpose(0, 1)?.flatten_from(1)?;
                let mean = per_channel.mean(1)?;
                let var = per_channel.broadcast_sub(&mean.unsqueeze(1)?)?.sqr()?.mean(1)?;
                if ctx.bn == BnMode::Train {
                    self.update_running(&mean, &var, count)?;
                }
                (mean, var)
            }
        };
        let (alpha, beta) = self.fold(&mean, var)?;
        let (alpha, beta) = match ctx.grads {
            Grads::None => (alpha.detach(), beta.detach()),
            _ => (alpha, beta),
        };
        let y = if kernels::enabled_for(x) {
            // With running statistics only the input needs a gradient (training always
            // uses batch statistics): one fused pass.
            kernels::channel_affine(x, &alpha, &beta)?
        } else {
            let shape = (1, c, 1, 1);
            x.broadcast_mul(&alpha.reshape(shape)?)?.broadcast_add(&beta.reshape(shape)?)?
        };
        if relu { ops::relu(&y) } else { Ok(y) }
    }
}

/// Dropout: identity unless the context carries a random source (training).
pub fn dropout(x: &Tensor, p: f64, ctx: &mut ForwardCtx) -> CResult<Tensor> {
    let Some(rng) = ctx.dropout_rng.as_deref_mut() else {
        return Ok(x.clone());
    };
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 - p;
    let mask: Vec<f32> =
        (0..x.elem_count()).map(|_| if rng.random::<f64>() < keep { (1.0 / keep) as f32 } else { 0.0 }).collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x.mul(&mask)
}
