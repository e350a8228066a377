//! torchvision SqueezeNet 1.1; channel counts are read from the weights.

use candle_core::{Result as CResult, Tensor};

use super::Body;
use super::layers::{Conv2d, ConvGeometry, ForwardCtx};
use super::ops::{self, Axis, Pool2d};
use super::params::Loader;
use crate::engine::error::Result;

struct Fire {
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
        Ok(Self { squeeze, expand1x1, expand3x3 })
    }
    fn out_channels(&self) -> usize {
        self.expand1x1.out_channels() + self.expand3x3.out_channels()
    }
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let s = ops::relu(&self.squeeze.forward(x, ctx)?)?;
        let a = ops::relu(&self.expand1x1.forward(&s, ctx)?)?;
        let b = ops::relu(&self.expand3x3.forward(&s, ctx)?)?;
        Tensor::cat(&[a, b], 1)
    }
}

enum Stage {
    Pool,
    Fire(Box<Fire>),
}

pub struct SqueezeNet {
    conv0: Conv2d,
    stages: Vec<Stage>,
    classifier: Conv2d,
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
        let mut stages = Vec::new();
        for i in 3..=12 {
            if POOL_INDICES.contains(&i) {
                stages.push(Stage::Pool);
            } else {
                let fire = Fire::load(l, &format!("features.{i}"), c)?;
                c = fire.out_channels();
                stages.push(Stage::Fire(Box::new(fire)));
            }
        }
        let classifier = Conv2d::load(l, "classifier.1", ConvGeometry::new(1, 0), Some(c))?;
        Ok(Self { conv0, stages, classifier })
    }
}

impl Body for SqueezeNet {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let pool = ceil_pool();
        let mut x = ops::max_pool2d(&ops::relu(&self.conv0.forward(x, ctx)?)?, &pool)?;
        for stage in &self.stages {
            x = match stage {
                Stage::Pool => ops::max_pool2d(&x, &pool)?,
                Stage::Fire(f) => f.forward(&x, ctx)?,
            };
        }
        let x = ops::relu(&self.classifier.forward(&x, ctx)?)?;
        ops::adaptive_avg_pool2d(&x, 1, 1)?.flatten_from(1)
    }
}
