//! torchvision SqueezeNet 1.1; channel counts are read from the weights.

use candle_core::{Result as CResult, Tensor};

use super::graph::{GraphBuilder, NodeId};
use super::layers::{Conv2d, ConvGeometry, ForwardCtx};
use super::ops::{self, Axis, Pool2d};
use super::params::Loader;
use super::{Body, Stage};
use crate::engine::error::Result;

struct Fire {
    /// The module name (`features.3`).
    name: String,
    squeeze: Conv2d,
    expand1x1: Conv2d,
    expand3x3: Conv2d,
}

impl Fire {
    fn load(l: &mut Loader, prefix: &str, in_channels: usize) -> Result<Self> {
        let squeeze = Conv2d::load(l, &format!("{prefix}.squeeze"), ConvGeometry::new(1, 0), Some(in_channels))?;
        let s = squeeze.out_channels();
        let expand1x1 = Conv2d::load(l, &format!("{prefix}.expand1x1"), ConvGeometry::new(1, 0), Some(s))?;
        let expand3x3 = Conv2d::load(l, &format!("{prefix}.expand3x3"), ConvGeometry::new(1, 1), Some(s))?;
        Ok(Self { name: prefix.to_string(), squeeze, expand1x1, expand3x3 })
    }
    fn out_channels(&self) -> usize {
        self.expand1x1.out_channels() + self.expand3x3.out_channels()
    }
}

impl Stage for Fire {
    fn contains(&self, name: &str) -> bool {
        [&self.squeeze, &self.expand1x1, &self.expand3x3].iter().any(|c| c.key == name)
    }

    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let s = ops::relu(&self.squeeze.forward(x, ctx)?)?;
        let a = ops::relu(&self.expand1x1.forward(&s, ctx)?)?;
        let b = ops::relu(&self.expand3x3.forward(&s, ctx)?)?;
        Tensor::cat(&[a, b], 1)
    }

    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        let s = self.squeeze.describe(g, x);
        let a = self.expand1x1.describe(g, s);
        let b = self.expand3x3.describe(g, s);
        g.merge("concat", &self.name, &[a, b])
    }
}

/// A ceil-mode 3x3 stride-2 max-pool between Fire modules.
struct Pool;

impl Stage for Pool {
    fn forward(&self, x: &Tensor, _ctx: &mut ForwardCtx) -> CResult<Tensor> {
        ops::max_pool2d(x, &ceil_pool())
    }
    fn contains(&self, _name: &str) -> bool {
        false
    }
    fn describe(&self, _g: &mut GraphBuilder, x: NodeId) -> NodeId {
        x
    }
}

/// The first convolution, ReLU and max-pool.
struct Stem(Conv2d);

impl Stage for Stem {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        ops::max_pool2d(&ops::relu(&self.0.forward(x, ctx)?)?, &ceil_pool())
    }
    fn contains(&self, name: &str) -> bool {
        self.0.key == name
    }
    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        self.0.describe(g, x)
    }
}

/// The 1x1 classifier convolution, ReLU and global average pooling.
struct Head(Conv2d);

impl Stage for Head {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let x = ops::relu(&self.0.forward(x, ctx)?)?;
        ops::adaptive_avg_pool2d(&x, 1, 1)?.flatten_from(1)
    }
    fn contains(&self, name: &str) -> bool {
        self.0.key == name
    }
    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        self.0.describe(g, x)
    }
}

pub struct SqueezeNet {
    stem: Stem,
    stages: Vec<Box<dyn Stage>>,
    head: Head,
}

/// SqueezeNet 1.1's `features` indices 3..=12: max-pools at 5 and 8, Fire modules elsewhere.
const POOL_INDICES: [usize; 2] = [5, 8];

fn ceil_pool() -> Pool2d {
    let a = Axis { kernel: 3, stride: 2, padding: 0 };
    Pool2d { h: a, w: a, ceil_mode: true }
}

impl SqueezeNet {
    pub fn load(l: &mut Loader, in_channels: usize) -> Result<Self> {
        let conv0 = Conv2d::load(l, "features.0", ConvGeometry::new(2, 0), Some(in_channels))?;
        let mut c = conv0.out_channels();
        let mut stages: Vec<Box<dyn Stage>> = Vec::new();
        for i in 3..=12 {
            if POOL_INDICES.contains(&i) {
                stages.push(Box::new(Pool));
            } else {
                let fire = Fire::load(l, &format!("features.{i}"), c)?;
                c = fire.out_channels();
                stages.push(Box::new(fire));
            }
        }
        let classifier = Conv2d::load(l, "classifier.1", ConvGeometry::new(1, 0), Some(c))?;
        Ok(Self { stem: Stem(conv0), stages, head: Head(classifier) })
    }
}

impl Body for SqueezeNet {
    fn stages(&self) -> Vec<&dyn Stage> {
        let mut v: Vec<&dyn Stage> = vec![&self.stem];
        v.extend(self.stages.iter().map(|s| s.as_ref()));
        v.push(&self.head);
        v
    }
}
