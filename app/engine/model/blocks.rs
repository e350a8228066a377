//! Pieces the convolutional architectures share: a convolution with its batch norm and
//! activation, a pre-activation (batch norm then activation), and the pooled linear head.

use candle_core::{Result as CResult, Tensor};

use super::Stage;
use super::graph::{GraphBuilder, NodeId};
use super::kernels;
use super::layers::{BatchNorm2d, BnMode, Conv2d, ConvGeometry, ForwardCtx, Linear, dropout};
use super::ops::{self, Pool2d};
use super::params::Loader;
use crate::engine::card::Activation;
use crate::engine::error::Result;

/// Applies `act`, or nothing.
pub fn activate(x: &Tensor, act: Option<Activation>) -> CResult<Tensor> {
    match act {
        None => Ok(x.clone()),
        Some(Activation::Relu) => ops::relu(x),
        Some(Activation::Relu6) => ops::relu6(x),
        Some(Activation::Silu) => ops::silu(x),
    }
}

/// PyTorch's `nn.BatchNorm2d` defaults.
pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

/// A convolution, its batch norm and an optional activation.
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm2d,
    pub act: Option<Activation>,
}

impl ConvBn {
    pub fn load(
        l: &mut Loader,
        conv: &str,
        bn: &str,
        geo: ConvGeometry,
        in_channels: usize,
        act: Option<Activation>,
    ) -> Result<Self> {
        Self::load_with_momentum(l, conv, bn, geo, in_channels, act, BN_MOMENTUM)
    }

    pub fn load_with_momentum(
        l: &mut Loader,
        conv: &str,
        bn: &str,
        geo: ConvGeometry,
        in_channels: usize,
        act: Option<Activation>,
        momentum: f64,
    ) -> Result<Self> {
        let conv = Conv2d::load(l, conv, geo, Some(in_channels))?;
        let bn = BatchNorm2d::load(l, bn, conv.out_channels(), BN_EPS, momentum)?;
        Ok(Self { conv, bn, act })
    }

    pub fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        self.forward_pooled(x, ctx, None)
    }

    /// [`Self::forward`] followed by the max-pool `pool`. In evaluation on the CPU kernels
    /// convolution, batch norm, ReLU and pool run as one op: the same values without
    /// further passes over the activations.
    pub fn forward_pooled(&self, x: &Tensor, ctx: &mut ForwardCtx, pool: Option<&Pool2d>) -> CResult<Tensor> {
        let relu = self.act == Some(Activation::Relu);
        // The fused op applies only ReLU, before the pool: another activation must come first.
        let fusable = relu || self.act.is_none() || pool.is_none();
        if ctx.bn == BnMode::Running && ctx.tap.is_none() && kernels::enabled_for(x) && fusable {
            let (alpha, beta) = self.bn.running_affine()?;
            let then = kernels::Epilogue { alpha, beta, relu };
            let y = self.conv.forward_then_pool(x, ctx, then, pool.copied())?;
            return if relu { Ok(y) } else { activate(&y, self.act) };
        }
        let y = self.bn.forward_then(&self.conv.forward(x, ctx)?, ctx, relu)?;
        let y = if relu { y } else { activate(&y, self.act)? };
        match pool {
            Some(p) => ops::max_pool2d(&y, p),
            None => Ok(y),
        }
    }

    pub fn out_channels(&self) -> usize {
        self.conv.out_channels()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.conv.key == name || self.bn.key == name
    }

    pub fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        let c = g.layer(&self.conv.key, x);
        g.layer(&self.bn.key, c)
    }
}

/// Batch norm then an activation: the pre-activation of PreActResNet and WideResNet.
pub struct BnAct {
    pub bn: BatchNorm2d,
    pub act: Activation,
}

impl BnAct {
    pub fn load(l: &mut Loader, bn: &str, channels: usize, act: Activation, momentum: f64) -> Result<Self> {
        Ok(Self { bn: BatchNorm2d::load(l, bn, channels, BN_EPS, momentum)?, act })
    }

    pub fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let relu = self.act == Activation::Relu;
        let y = self.bn.forward_then(x, ctx, relu)?;
        if relu { Ok(y) } else { activate(&y, Some(self.act)) }
    }
}

/// Optionally a final pre-activation, then global average pooling, dropout (training
/// only) and the classifier.
pub struct PoolHead {
    pub norm: Option<BnAct>,
    pub dropout: f64,
    pub fc: Linear,
}

impl Stage for PoolHead {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let x = match &self.norm {
            Some(n) => n.forward(x, ctx)?,
            None => x.clone(),
        };
        let x = ops::adaptive_avg_pool2d(&x, 1, 1)?.flatten_from(1)?;
        let x = dropout(&x, self.dropout, ctx)?;
        self.fc.forward(&x, ctx)
    }

    fn contains(&self, name: &str) -> bool {
        self.fc.key == name || self.norm.as_ref().is_some_and(|n| n.bn.key == name)
    }

    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        let x = match &self.norm {
            Some(n) => g.layer(&n.bn.key, x),
            None => x,
        };
        g.layer(&self.fc.key, x)
    }
}
