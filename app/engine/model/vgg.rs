//! VGG: 3x3 convolutions (with or without batch norm), ReLU and 2x2 max-pools, then a
//! classifier. The layout is read from the gaps in the `features.N` indices; the head is
//! torchvision's (7x7 adaptive pool and three linear layers, `classifier.0/3/6`) or a
//! CIFAR head on the flattened features (`classifier` alone, or linear layers on C inputs).

use candle_core::{Result as CResult, Tensor};

use super::blocks::{BN_EPS, BN_MOMENTUM};
use super::graph::{GraphBuilder, NodeId};
use super::kernels::{self, Epilogue};
use super::layers::{BatchNorm2d, BnMode, Conv2d, ConvGeometry, ForwardCtx, Linear, dropout};
use super::ops::{self, Pool2d};
use super::params::Loader;
use super::{Body, Stage};
use crate::engine::checkpoint::StateDict;
use crate::engine::error::{EngineError, Result};

/// Convolutions between max-pools in torchvision's configurations A, B, D and E.
pub const CONFIGS: [(&str, [usize; 5]); 4] =
    [("vgg11", [1, 1, 2, 2, 2]), ("vgg13", [2, 2, 2, 2, 2]), ("vgg16", [2, 2, 3, 3, 3]), ("vgg19", [2, 2, 4, 4, 4])];

/// torchvision's `nn.Dropout()` in the classifier.
const DROPOUT: f64 = 0.5;

/// One convolution of `features`: where it sits, whether batch norm follows, whether a
/// max-pool ends it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvSlot {
    pub index: usize,
    pub bn: bool,
    pub pool: bool,
}

/// The `features` layout: convolutions in order; a gap of one more index than the
/// convolution, its batch norm and ReLU take means a max-pool; the last one always pools.
pub fn layout(sd: &StateDict) -> Option<Vec<ConvSlot>> {
    let mut indices: Vec<usize> = sd
        .keys()
        .filter_map(|k| k.strip_prefix("features.")?.strip_suffix(".weight")?.parse().ok())
        .filter(|i| sd.shape(&format!("features.{i}.weight")).is_some_and(|s| s.len() == 4))
        .collect();
    indices.sort_unstable();
    if indices.first() != Some(&0) {
        return None;
    }
    let mut slots = Vec::with_capacity(indices.len());
    for (n, &i) in indices.iter().enumerate() {
        let bn = sd.contains(&format!("features.{}.running_var", i + 1));
        let span = if bn { 3 } else { 2 };
        let pool = match indices.get(n + 1) {
            Some(&next) if next == i + span => false,
            Some(&next) if next == i + span + 1 => true,
            Some(_) => return None,
            None => true,
        };
        slots.push(ConvSlot { index: i, bn, pool });
    }
    Some(slots)
}

/// Convolutions per pooled stage.
pub fn stages_of(slots: &[ConvSlot]) -> Vec<usize> {
    let mut stages = vec![0];
    for s in slots {
        *stages.last_mut().expect("never empty") += 1;
        if s.pool {
            stages.push(0);
        }
    }
    stages.pop();
    stages
}

/// The torchvision name of a layout (`vgg16_bn`), if it is one.
pub fn variant(slots: &[ConvSlot]) -> Option<String> {
    let stages = stages_of(slots);
    let (name, _) = CONFIGS.iter().find(|(_, c)| c[..] == stages[..])?;
    let bn = slots.iter().all(|s| s.bn);
    (bn || slots.iter().all(|s| !s.bn)).then(|| if bn { format!("{name}_bn") } else { name.to_string() })
}

struct ConvStage {
    conv: Conv2d,
    bn: Option<BatchNorm2d>,
    pool: Option<Pool2d>,
}

impl Stage for ConvStage {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        if ctx.bn == BnMode::Running && ctx.tap.is_none() && kernels::enabled_for(x) {
            let then = match &self.bn {
                Some(bn) => {
                    let (alpha, beta) = bn.running_affine()?;
                    Epilogue { alpha, beta, relu: true }
                }
                None => Epilogue::relu(self.conv.out_channels()),
            };
            return self.conv.forward_then_pool(x, ctx, then, self.pool);
        }
        let y = self.conv.forward(x, ctx)?;
        let y = match &self.bn {
            Some(bn) => bn.forward_then(&y, ctx, true)?,
            None => ops::relu(&y)?,
        };
        match &self.pool {
            Some(p) => ops::max_pool2d(&y, p),
            None => Ok(y),
        }
    }
    fn contains(&self, name: &str) -> bool {
        self.conv.key == name || self.bn.as_ref().is_some_and(|b| b.key == name)
    }
    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        let y = self.conv.describe(g, x);
        self.bn.as_ref().map_or(y, |bn| bn.describe(g, y))
    }
}

struct Classifier {
    /// torchvision pools to 7x7 before flattening.
    pool7: bool,
    /// Each linear layer, and whether dropout comes before it.
    linears: Vec<(Linear, bool)>,
}

impl Stage for Classifier {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let x = if self.pool7 { ops::adaptive_avg_pool2d(x, 7, 7)? } else { x.clone() };
        let mut y = x.flatten_from(1)?;
        for (i, (linear, drop)) in self.linears.iter().enumerate() {
            if i > 0 {
                y = ops::relu(&y)?;
            }
            if *drop {
                y = dropout(&y, DROPOUT, ctx)?;
            }
            y = linear.forward(&y, ctx)?;
        }
        Ok(y)
    }
    fn contains(&self, name: &str) -> bool {
        self.linears.iter().any(|(l, _)| l.key == name)
    }
    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        self.linears.iter().fold(x, |y, (l, _)| l.describe(g, y))
    }
}

pub struct Vgg {
    convs: Vec<ConvStage>,
    head: Classifier,
}

impl Vgg {
    pub fn load(l: &mut Loader, in_channels: usize) -> Result<Self> {
        let slots = layout(l.state()).ok_or_else(|| {
            EngineError::model(
                "VGG needs `features.0.weight` and convolutions whose indices step by 2 (conv, ReLU) or 3 \
                 (conv, batch norm, ReLU), one more before a max-pool",
            )
        })?;
        let mut channels = in_channels;
        let mut convs = Vec::with_capacity(slots.len());
        for s in &slots {
            let key = format!("features.{}", s.index);
            let kernel = l.shape(&format!("{key}.weight"))?[2..].to_vec();
            if kernel != [3, 3] {
                return Err(EngineError::model(format!("`{key}.weight` has a {kernel:?} kernel; VGG's are 3x3")));
            }
            let conv = Conv2d::load(l, &key, ConvGeometry::new(1, 1), Some(channels))?;
            channels = conv.out_channels();
            let bn = match s.bn {
                true => {
                    Some(BatchNorm2d::load(l, &format!("features.{}", s.index + 1), channels, BN_EPS, BN_MOMENTUM)?)
                }
                false => None,
            };
            convs.push(ConvStage { conv, bn, pool: s.pool.then(|| Pool2d::square(2, 2, 0)) });
        }
        let head = load_classifier(l, channels)?;
        Ok(Self { convs, head })
    }
}

fn load_classifier(l: &mut Loader, channels: usize) -> Result<Classifier> {
    if l.has("classifier.weight") {
        let fc = Linear::load(l, "classifier", Some(channels))?;
        return Ok(Classifier { pool7: false, linears: vec![(fc, false)] });
    }
    let mut indices: Vec<usize> =
        l.state().keys().filter_map(|k| k.strip_prefix("classifier.")?.strip_suffix(".weight")?.parse().ok()).collect();
    indices.sort_unstable();
    let Some(&first) = indices.first() else {
        return Err(EngineError::model("VGG needs `classifier.weight` or `classifier.N.weight` linear layers"));
    };
    let inputs = l.shape(&format!("classifier.{first}.weight"))?.get(1).copied().unwrap_or(0);
    let pool7 = match inputs {
        n if n == channels * 49 => true,
        n if n == channels => false,
        n => {
            return Err(EngineError::model(format!(
                "`classifier.{first}.weight` takes {n} inputs: VGG's features give {channels} channels, \
                 so {} (pooled to 7x7) or {channels} (CIFAR head)",
                channels * 49
            )));
        }
    };
    let mut linears = Vec::with_capacity(indices.len());
    let mut previous: Option<usize> = None;
    let mut features = inputs;
    for &i in &indices {
        // Between linear layers: ReLU, and dropout when the index skips one more.
        let drop = match previous {
            None => i == 1,
            Some(p) if i == p + 2 => false,
            Some(p) if i == p + 3 => true,
            Some(p) => {
                return Err(EngineError::model(format!(
                    "`classifier.{i}` follows `classifier.{p}`: expected ReLU (and dropout) between them"
                )));
            }
        };
        let fc = Linear::load(l, &format!("classifier.{i}"), Some(features))?;
        features = fc.out_features();
        linears.push((fc, drop));
        previous = Some(i);
    }
    Ok(Classifier { pool7, linears })
}

impl Body for Vgg {
    fn stages(&self) -> Vec<&dyn Stage> {
        let mut v: Vec<&dyn Stage> = self.convs.iter().map(|c| c as &dyn Stage).collect();
        v.push(&self.head);
        v
    }
}
