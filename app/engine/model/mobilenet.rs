//! torchvision MobileNetV2 (any width multiplier, read from the weights): inverted
//! residual blocks of a 1x1 expansion, a 3x3 depthwise convolution and a 1x1 projection,
//! with ReLU6. The CIFAR stem runs the first convolution and the first downsampling
//! block at stride 1.

use candle_core::{Result as CResult, Tensor};

use super::blocks::{ConvBn, PoolHead};
use super::graph::{GraphBuilder, NodeId};
use super::layers::{ConvGeometry, ForwardCtx, Linear};
use super::params::Loader;
use super::{Body, Stage};
use crate::engine::card::{Activation, Stem};
use crate::engine::error::{EngineError, Result};

/// torchvision's inverted residual setting: (blocks, stride of the first) per group.
const SETTING: [(usize, usize); 7] = [(1, 1), (2, 2), (3, 2), (4, 2), (3, 1), (3, 2), (1, 1)];
/// The group whose first block the CIFAR stem keeps at stride 1.
const CIFAR_GROUP: usize = 1;
/// torchvision's `nn.Dropout(p=0.2)` before the classifier.
const DROPOUT: f64 = 0.2;

/// Blocks between the first (`features.0`) and the last (`features.N`) convolution.
pub fn block_count(has: impl Fn(&str) -> bool) -> usize {
    (1..).take_while(|k| has(&format!("features.{k}.conv.0.0.weight"))).count()
}

struct Unit(ConvBn);

impl Stage for Unit {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        self.0.forward(x, ctx)
    }
    fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }
    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        self.0.describe(g, x)
    }
}

struct InvertedResidual {
    /// The module name (`features.1`).
    name: String,
    convs: Vec<ConvBn>,
    residual: bool,
}

impl Stage for InvertedResidual {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let mut y = x.clone();
        for c in &self.convs {
            y = c.forward(&y, ctx)?;
        }
        if self.residual { x + y } else { Ok(y) }
    }
    fn contains(&self, name: &str) -> bool {
        self.convs.iter().any(|c| c.contains(name))
    }
    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        let y = self.convs.iter().fold(x, |y, c| c.describe(g, y));
        if self.residual { g.merge("add", &self.name, &[x, y]) } else { y }
    }
}

pub struct MobileNetV2 {
    first: Unit,
    blocks: Vec<InvertedResidual>,
    last: Unit,
    head: PoolHead,
}

impl MobileNetV2 {
    pub fn load(l: &mut Loader, stem: Option<Stem>, in_channels: usize) -> Result<Self> {
        let blocks_found = block_count(|k| l.has(k));
        let want: usize = SETTING.iter().map(|s| s.0).sum();
        if blocks_found != want {
            return Err(EngineError::model(format!(
                "MobileNetV2 has {want} inverted residual blocks (`features.1` to `features.{want}`); \
                 the checkpoint has {blocks_found}"
            )));
        }
        let cifar = stem == Some(Stem::Cifar);
        let relu6 = Some(Activation::Relu6);
        let first = ConvBn::load(
            l,
            "features.0.0",
            "features.0.1",
            ConvGeometry::new(if cifar { 1 } else { 2 }, 1),
            in_channels,
            relu6,
        )?;
        let mut channels = first.out_channels();
        let mut blocks = Vec::with_capacity(want);
        let mut k = 1;
        for (g, &(n, s)) in SETTING.iter().enumerate() {
            for b in 0..n {
                let stride = if b > 0 || (cifar && g == CIFAR_GROUP) { 1 } else { s };
                let block = load_block(l, &format!("features.{k}.conv"), stride, channels)?;
                channels = block.convs.last().expect("a block has convolutions").out_channels();
                blocks.push(block);
                k += 1;
            }
        }
        let last = ConvBn::load(
            l,
            &format!("features.{k}.0"),
            &format!("features.{k}.1"),
            ConvGeometry::new(1, 0),
            channels,
            relu6,
        )?;
        let fc = Linear::load(l, "classifier.1", Some(last.out_channels()))?;
        Ok(Self { first: Unit(first), blocks, last: Unit(last), head: PoolHead { norm: None, dropout: DROPOUT, fc } })
    }
}

/// `p.0` (expansion, absent at ratio 1), the depthwise convolution, then the projection
/// and its batch norm as two plain indices.
fn load_block(l: &mut Loader, p: &str, stride: usize, channels: usize) -> Result<InvertedResidual> {
    let relu6 = Some(Activation::Relu6);
    let expands = l.has(&format!("{p}.3.running_var"));
    let mut convs = Vec::with_capacity(3);
    let mut c = channels;
    if expands {
        let e = ConvBn::load(l, &format!("{p}.0.0"), &format!("{p}.0.1"), ConvGeometry::new(1, 0), c, relu6)?;
        c = e.out_channels();
        convs.push(e);
    }
    let dw = if expands { 1 } else { 0 };
    let depthwise = ConvGeometry::new(stride, 1).groups(c);
    convs.push(ConvBn::load(l, &format!("{p}.{dw}.0"), &format!("{p}.{dw}.1"), depthwise, c, relu6)?);
    let project = ConvGeometry::new(1, 0);
    convs.push(ConvBn::load(l, &format!("{p}.{}", dw + 1), &format!("{p}.{}", dw + 2), project, c, None)?);
    let out = convs.last().expect("just pushed").out_channels();
    let name = p.strip_suffix(".conv").unwrap_or(p).to_string();
    Ok(InvertedResidual { name, convs, residual: stride == 1 && out == channels })
}

impl Body for MobileNetV2 {
    fn stages(&self) -> Vec<&dyn Stage> {
        let mut v: Vec<&dyn Stage> = vec![&self.first];
        v.extend(self.blocks.iter().map(|b| b as &dyn Stage));
        v.push(&self.last);
        v.push(&self.head);
        v
    }
}
