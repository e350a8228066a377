//! torchvision ShuffleNet V2 (x0.5 and x1.0 differ only in widths, read from the weights).

use candle_core::{Result as CResult, Tensor};

use super::blocks::{BN_EPS, BN_MOMENTUM};
use super::graph::{GraphBuilder, NodeId};
use super::layers::{BatchNorm2d, Conv2d, ConvGeometry, ForwardCtx, Linear};
use super::ops::{self, Pool2d};
use super::params::Loader;
use super::{Body, Stage};
use crate::engine::error::{EngineError, Result};

/// A convolution, its batch norm, and whether a ReLU follows.
struct Unit {
    conv: Conv2d,
    bn: BatchNorm2d,
    relu: bool,
}

impl Unit {
    /// Loads `prefix.{conv}` and `prefix.{conv + 1}` (the batch norm).
    fn load(
        l: &mut Loader,
        prefix: &str,
        conv: usize,
        geo: ConvGeometry,
        in_channels: usize,
        relu: bool,
    ) -> Result<Self> {
        let c = Conv2d::load(l, &format!("{prefix}.{conv}"), geo, Some(in_channels))?;
        let bn = BatchNorm2d::load(l, &format!("{prefix}.{}", conv + 1), c.out_channels(), BN_EPS, BN_MOMENTUM)?;
        Ok(Self { conv: c, bn, relu })
    }
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let y = self.bn.forward(&self.conv.forward(x, ctx)?, ctx)?;
        if self.relu { ops::relu(&y) } else { Ok(y) }
    }
    fn contains(&self, name: &str) -> bool {
        self.conv.key == name || self.bn.key == name
    }
    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        let c = g.layer(&self.conv.key, x);
        g.layer(&self.bn.key, c)
    }
}

fn describe(units: &[Unit], g: &mut GraphBuilder, x: NodeId) -> NodeId {
    units.iter().fold(x, |y, u| u.describe(g, y))
}

fn run(units: &[Unit], x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
    let mut y = x.clone();
    for u in units {
        y = u.forward(&y, ctx)?;
    }
    Ok(y)
}

struct InvertedResidual {
    /// The module name (`stage2.0`).
    name: String,
    branch1: Vec<Unit>,
    branch2: Vec<Unit>,
}

impl InvertedResidual {
    fn load(l: &mut Loader, prefix: &str, stride: usize, inp: usize) -> Result<(Self, usize)> {
        let b2 = format!("{prefix}.branch2");
        let features = l.shape(&format!("{b2}.0.weight"))?[0];
        let mut branch1 = Vec::new();
        let b2_in = if stride > 1 {
            let b1 = format!("{prefix}.branch1");
            let dw = ConvGeometry::new(stride, 1).groups(inp);
            branch1.push(Unit::load(l, &b1, 0, dw, inp, false)?);
            branch1.push(Unit::load(l, &b1, 2, ConvGeometry::new(1, 0), inp, true)?);
            inp
        } else {
            if inp != 2 * features {
                return Err(EngineError::model(format!(
                    "block `{prefix}` receives {inp} channels but its branch takes half of {}",
                    2 * features
                )));
            }
            features
        };
        let dw = ConvGeometry::new(stride, 1).groups(features);
        let branch2 = vec![
            Unit::load(l, &b2, 0, ConvGeometry::new(1, 0), b2_in, true)?,
            Unit::load(l, &b2, 3, dw, features, false)?,
            Unit::load(l, &b2, 5, ConvGeometry::new(1, 0), features, true)?,
        ];
        Ok((Self { name: prefix.to_string(), branch1, branch2 }, 2 * features))
    }
}

impl Stage for InvertedResidual {
    fn contains(&self, name: &str) -> bool {
        self.branch1.iter().chain(&self.branch2).any(|u| u.contains(name))
    }

    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let out = if self.branch1.is_empty() {
            let half = x.dim(1)? / 2;
            let x1 = x.narrow(1, 0, half)?;
            let x2 = x.narrow(1, half, half)?;
            Tensor::cat(&[x1, run(&self.branch2, &x2, ctx)?], 1)?
        } else {
            Tensor::cat(&[run(&self.branch1, x, ctx)?, run(&self.branch2, x, ctx)?], 1)?
        };
        channel_shuffle(&out, 2)
    }

    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        // The stride-1 block passes its input's first half on untouched.
        let left = if self.branch1.is_empty() { x } else { describe(&self.branch1, g, x) };
        let right = describe(&self.branch2, g, x);
        g.merge("concat", &self.name, &[left, right])
    }
}

fn channel_shuffle(x: &Tensor, groups: usize) -> CResult<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    x.reshape((b, groups, c / groups, h, w))?.transpose(1, 2)?.contiguous()?.reshape((b, c, h, w))
}

/// The first convolution unit and the max-pool.
struct Stem(Unit);

impl Stage for Stem {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        ops::max_pool2d(&self.0.forward(x, ctx)?, &Pool2d::square(3, 2, 1))
    }
    fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }
    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        self.0.describe(g, x)
    }
}

/// conv5, global average pooling and the classifier.
struct Head {
    conv5: Unit,
    fc: Linear,
}

impl Stage for Head {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let x = self.conv5.forward(x, ctx)?;
        let x = x.mean(3)?.mean(2)?;
        self.fc.forward(&x, ctx)
    }
    fn contains(&self, name: &str) -> bool {
        self.conv5.contains(name) || self.fc.key == name
    }
    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        let x = self.conv5.describe(g, x);
        g.layer(&self.fc.key, x)
    }
}

pub struct ShuffleNetV2 {
    stem: Stem,
    blocks: Vec<InvertedResidual>,
    head: Head,
}

impl ShuffleNetV2 {
    pub fn load(l: &mut Loader, in_channels: usize) -> Result<Self> {
        let conv1 = Unit::load(l, "conv1", 0, ConvGeometry::new(2, 1), in_channels, true)?;
        let mut c = conv1.conv.out_channels();
        let mut all = Vec::new();
        for s in 2..=4 {
            let mut blocks = Vec::new();
            let mut i = 0;
            while l.has(&format!("stage{s}.{i}.branch2.0.weight")) {
                let (block, out) = InvertedResidual::load(l, &format!("stage{s}.{i}"), if i == 0 { 2 } else { 1 }, c)?;
                c = out;
                blocks.push(block);
                i += 1;
            }
            if blocks.is_empty() {
                return Err(EngineError::model(format!("the checkpoint has no blocks for `stage{s}`")));
            }
            all.extend(blocks);
        }
        let conv5 = Unit::load(l, "conv5", 0, ConvGeometry::new(1, 0), c, true)?;
        let fc = Linear::load(l, "fc", Some(conv5.conv.out_channels()))?;
        Ok(Self { stem: Stem(conv1), blocks: all, head: Head { conv5, fc } })
    }
}

impl Body for ShuffleNetV2 {
    fn stages(&self) -> Vec<&dyn Stage> {
        let mut v: Vec<&dyn Stage> = vec![&self.stem];
        v.extend(self.blocks.iter().map(|b| b as &dyn Stage));
        v.push(&self.head);
        v
    }
}
