//! torchvision ResNet-18/34/50, with any input channel count, class count and width
//! (read from the weights), and the CIFAR stem (3x3 stride-1 first conv, no max-pool).
//! Also reads the common CIFAR naming with `shortcut` and `linear`.

use candle_core::{Result as CResult, Tensor};

use super::blocks::{ConvBn, PoolHead};
use super::graph::{GraphBuilder, NodeId};
use super::layers::{ConvGeometry, ForwardCtx, Linear};
use super::ops::{self, Pool2d};
use super::params::Loader;
use super::{Body, Stage};
use crate::engine::card::{Activation, Architecture, Stem};
use crate::engine::error::{EngineError, Result};

/// The first convolution, its batch norm, ReLU and (torchvision stem) the max-pool.
struct StemStage {
    conv: ConvBn,
    maxpool: Option<Pool2d>,
}

impl Stage for StemStage {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        self.conv.forward_pooled(x, ctx, self.maxpool.as_ref())
    }
    fn contains(&self, name: &str) -> bool {
        self.conv.contains(name)
    }
    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        self.conv.describe(g, x)
    }
}

struct Block {
    /// The module name (`layer1.0`).
    name: String,
    convs: Vec<ConvBn>,
    shortcut: Option<ConvBn>,
}

impl Stage for Block {
    fn contains(&self, name: &str) -> bool {
        self.convs.iter().chain(&self.shortcut).any(|cb| cb.contains(name))
    }

    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let mut y = x.clone();
        for cb in &self.convs {
            y = cb.forward(&y, ctx)?;
        }
        let identity = match &self.shortcut {
            Some(s) => s.forward(x, ctx)?,
            None => x.clone(),
        };
        ops::add_relu(&y, &identity)
    }

    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        let y = self.convs.iter().fold(x, |y, cb| cb.describe(g, y));
        let identity = self.shortcut.as_ref().map_or(x, |s| s.describe(g, x));
        g.merge("add", &self.name, &[y, identity])
    }
}

pub struct ResNet {
    stem: StemStage,
    blocks: Vec<Block>,
    head: PoolHead,
}

/// Blocks per stage for each depth.
fn depth_of(arch: Architecture) -> Option<([usize; 4], bool)> {
    match arch {
        Architecture::ResNet18 => Some(([2, 2, 2, 2], false)),
        Architecture::ResNet34 => Some(([3, 4, 6, 3], false)),
        Architecture::ResNet50 => Some(([3, 4, 6, 3], true)),
        _ => None,
    }
}

/// Counts `layerS.B.conv1.weight` keys per stage, and whether blocks are bottlenecks.
pub fn block_layout(l: &Loader) -> ([usize; 4], bool) {
    let mut counts = [0; 4];
    for (s, count) in counts.iter_mut().enumerate() {
        while l.has(&format!("layer{}.{}.conv1.weight", s + 1, *count)) {
            *count += 1;
        }
    }
    (counts, l.has("layer1.0.conv3.weight"))
}

impl ResNet {
    pub fn load(l: &mut Loader, arch: Architecture, stem: Option<Stem>, in_channels: usize) -> Result<Self> {
        let (want, bottleneck) = depth_of(arch).ok_or_else(|| EngineError::model(format!("{arch} is not a ResNet")))?;
        let found = block_layout(l);
        if found != (want, bottleneck) {
            let kind = |b: bool| if b { "bottleneck" } else { "basic" };
            return Err(EngineError::model(format!(
                "the card says {arch} ({} blocks {want:?}) but the checkpoint has {} blocks {:?}",
                kind(bottleneck),
                kind(found.1),
                found.0
            )));
        }
        let kernel = l.shape("conv1.weight")?.get(2).copied().unwrap_or(0);
        let (found_stem, stem_geo, maxpool) = match kernel {
            7 => (Stem::Torchvision, ConvGeometry::new(2, 3), Some(Pool2d::square(3, 2, 1))),
            3 => (Stem::Cifar, ConvGeometry::new(1, 1), None),
            k => {
                return Err(EngineError::model(format!(
                    "`conv1.weight` has a {k}x{k} kernel; a ResNet stem is 7x7 (torchvision) or 3x3 (CIFAR)"
                )));
            }
        };
        if let Some(want) = stem
            && want != found_stem
        {
            return Err(EngineError::model(format!(
                "the card says the {want:?} stem but `conv1.weight` has a {kernel}x{kernel} kernel (the {found_stem:?} stem)"
            )));
        }
        let relu = Some(Activation::Relu);
        let stem = ConvBn::load(l, "conv1", "bn1", stem_geo, in_channels, relu)?;
        let shortcut_name = if l.has("layer2.0.shortcut.0.weight") { "shortcut" } else { "downsample" };
        let mut channels = stem.out_channels();
        let mut blocks = Vec::new();
        for (s, &n) in want.iter().enumerate() {
            for b in 0..n {
                let p = format!("layer{}.{b}", s + 1);
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                let mut convs = Vec::with_capacity(3);
                let mut c = channels;
                let specs: &[(usize, usize, usize)] =
                    if bottleneck { &[(1, 1, 0), (3, stride, 1), (1, 1, 0)] } else { &[(3, stride, 1), (3, 1, 1)] };
                for (i, &(_k, st, pad)) in specs.iter().enumerate() {
                    let last = i + 1 == specs.len();
                    let cb = ConvBn::load(
                        l,
                        &format!("{p}.conv{}", i + 1),
                        &format!("{p}.bn{}", i + 1),
                        ConvGeometry::new(st, pad),
                        c,
                        if last { None } else { relu },
                    )?;
                    c = cb.out_channels();
                    convs.push(cb);
                }
                let sc = format!("{p}.{shortcut_name}");
                let shortcut = if l.has(&format!("{sc}.0.weight")) {
                    Some(ConvBn::load(
                        l,
                        &format!("{sc}.0"),
                        &format!("{sc}.1"),
                        ConvGeometry::new(stride, 0),
                        channels,
                        None,
                    )?)
                } else if stride != 1 || c != channels {
                    return Err(EngineError::model(format!(
                        "block `{p}` changes shape ({channels} -> {c} channels, stride {stride}) but has no `{sc}.0.weight`"
                    )));
                } else {
                    None
                };
                channels = c;
                blocks.push(Block { name: p, convs, shortcut });
            }
        }
        let fc_name = if l.has("linear.weight") { "linear" } else { "fc" };
        let fc = Linear::load(l, fc_name, Some(channels))?;
        Ok(Self { stem: StemStage { conv: stem, maxpool }, blocks, head: PoolHead { norm: None, dropout: 0.0, fc } })
    }
}

impl Body for ResNet {
    fn stages(&self) -> Vec<&dyn Stage> {
        let mut v: Vec<&dyn Stage> = vec![&self.stem];
        v.extend(self.blocks.iter().map(|b| b as &dyn Stage));
        v.push(&self.head);
        v
    }
}
