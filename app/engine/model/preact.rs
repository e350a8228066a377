//! Pre-activation residual networks, where each block starts with batch norm and its
//! activation: PreActResNet-18 (`layer1.0.bn1`, `bn`, `linear`), the robust-model zoo's
//! WideResNet (`block1.layer.0.bn1`, `bn1`, `fc`) and DeepMind's WideResNet
//! (`layer.0.block.0.batchnorm_0`, `batchnorm`, `logits`), which also normalises its input
//! itself and pads the input of a stride-2 convolution on the bottom and right only
//! (TensorFlow's `SAME`). Depth and width are read from the weights.

use candle_core::{Result as CResult, Tensor};

use super::blocks::{BN_MOMENTUM, BnAct, ConvBn, PoolHead};
use super::graph::{GraphBuilder, NodeId};
use super::layers::{Conv2d, ConvGeometry, ForwardCtx, Linear};
use super::ops::{self, Pool2d};
use super::params::Loader;
use super::{Body, Stage};
use crate::engine::card::{Activation, Architecture, ModelCard, Normalize, Stem};
use crate::engine::error::{EngineError, Result};

/// The statistics DeepMind's models normalise with (`dm_wide_resnet.py`).
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
pub const CIFAR10_STD: [f32; 3] = [0.2471, 0.2435, 0.2616];
pub const CIFAR100_MEAN: [f32; 3] = [0.5071, 0.4865, 0.4409];
pub const CIFAR100_STD: [f32; 3] = [0.2673, 0.2564, 0.2762];

/// Where a family keeps its tensors.
struct Naming {
    stem: &'static str,
    /// The prefix of block `b` of group `g` (both from 0).
    block: fn(usize, usize) -> String,
    pre: &'static str,
    conv1: &'static str,
    bn2: &'static str,
    conv2: &'static str,
    shortcut: &'static str,
    final_bn: &'static str,
    fc: &'static str,
    /// The first block of each group downsamples by these strides.
    strides: &'static [usize],
    bn_momentum: f64,
}

const PREACT: Naming = Naming {
    stem: "conv1",
    block: |g, b| format!("layer{}.{b}", g + 1),
    pre: "bn1",
    conv1: "conv1",
    bn2: "bn2",
    conv2: "conv2",
    shortcut: "shortcut.0",
    final_bn: "bn",
    fc: "linear",
    strides: &[1, 2, 2, 2],
    bn_momentum: BN_MOMENTUM,
};

const ZOO_WRN: Naming = Naming {
    stem: "conv1",
    block: |g, b| format!("block{}.layer.{b}", g + 1),
    pre: "bn1",
    conv1: "conv1",
    bn2: "bn2",
    conv2: "conv2",
    shortcut: "convShortcut",
    final_bn: "bn1",
    fc: "fc",
    strides: &[1, 2, 2],
    bn_momentum: BN_MOMENTUM,
};

const DM_WRN: Naming = Naming {
    stem: "init_conv",
    block: |g, b| format!("layer.{g}.block.{b}"),
    pre: "batchnorm_0",
    conv1: "conv_0",
    bn2: "batchnorm_1",
    conv2: "conv_1",
    shortcut: "shortcut",
    final_bn: "batchnorm",
    fc: "logits",
    strides: &[1, 2, 2],
    bn_momentum: 0.01,
};

fn naming(arch: Architecture) -> Option<&'static Naming> {
    match arch {
        Architecture::PreActResNet18 => Some(&PREACT),
        Architecture::WideResNet => Some(&ZOO_WRN),
        Architecture::DmWideResNet => Some(&DM_WRN),
        _ => None,
    }
}

/// Blocks per group, counted from the keys of `arch`'s naming.
pub fn block_counts(arch: Architecture, has: impl Fn(&str) -> bool) -> Vec<usize> {
    let Some(n) = naming(arch) else { return Vec::new() };
    (0..n.strides.len())
        .map(|g| (0..).take_while(|&b| has(&format!("{}.{}.weight", (n.block)(g, b), n.conv1))).count())
        .collect()
}

/// Output channels of the first block's first convolution (the widened width).
pub fn first_block_channels(arch: Architecture, shape: impl Fn(&str) -> Option<Vec<usize>>) -> Option<usize> {
    let n = naming(arch)?;
    shape(&format!("{}.{}.weight", (n.block)(0, 0), n.conv1))?.first().copied()
}

/// The first convolution, after the model's own normalisation (DeepMind) and before the
/// ImageNet stem's max-pool.
struct StemStage {
    normalize: Option<(Tensor, Tensor)>,
    conv: Conv2d,
    pool: Option<Pool2d>,
}

impl Stage for StemStage {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let x = match &self.normalize {
            Some((mean, std)) => {
                x.broadcast_sub(&mean.to_device(x.device())?)?.broadcast_div(&std.to_device(x.device())?)?
            }
            None => x.clone(),
        };
        let y = self.conv.forward(&x, ctx)?;
        match &self.pool {
            Some(p) => ops::max_pool2d(&y, p),
            None => Ok(y),
        }
    }
    fn contains(&self, name: &str) -> bool {
        self.conv.key == name
    }
    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        self.conv.describe(g, x)
    }
}

struct Block {
    /// The module name (`block1.layer.0`).
    name: String,
    pre: BnAct,
    /// The first convolution with the second pre-activation.
    conv1: ConvBn,
    conv2: Conv2d,
    /// Takes the pre-activated input; without it the raw input is added.
    shortcut: Option<Conv2d>,
    /// DeepMind's stride-2 blocks pad the first convolution's input on the bottom and right.
    pad_after: bool,
}

impl Stage for Block {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let a = self.pre.forward(x, ctx)?;
        let identity = match &self.shortcut {
            Some(s) => s.forward(&a, ctx)?,
            None => x.clone(),
        };
        let a = if self.pad_after { a.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)? } else { a };
        let h = self.conv1.forward(&a, ctx)?;
        self.conv2.forward(&h, ctx)? + identity
    }
    fn contains(&self, name: &str) -> bool {
        self.pre.bn.key == name
            || self.conv1.contains(name)
            || self.conv2.key == name
            || self.shortcut.as_ref().is_some_and(|s| s.key == name)
    }
    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        let a = self.pre.bn.describe(g, x);
        let identity = self.shortcut.as_ref().map_or(x, |s| s.describe(g, a));
        let h = self.conv1.describe(g, a);
        let y = self.conv2.describe(g, h);
        g.merge("add", &self.name, &[y, identity])
    }
}

pub struct PreActNet {
    stem: StemStage,
    blocks: Vec<Block>,
    head: PoolHead,
}

impl PreActNet {
    pub fn load(l: &mut Loader, card: &ModelCard) -> Result<Self> {
        let arch = card.architecture;
        let n = naming(arch).ok_or_else(|| EngineError::model(format!("{arch} is not a pre-activation network")))?;
        let act = card.activation.unwrap_or(arch.default_activation());
        let counts = block_counts(arch, |k| l.has(k));
        if counts.contains(&0) || (arch == Architecture::PreActResNet18 && counts != [2, 2, 2, 2]) {
            let want = if arch == Architecture::PreActResNet18 { "[2, 2, 2, 2]" } else { "at least one per group" };
            return Err(EngineError::model(format!(
                "{arch} needs blocks per group {want}; the checkpoint has {counts:?} (`{}.{}.weight` and on)",
                (n.block)(0, 0),
                n.conv1
            )));
        }
        let stem = load_stem(l, card, n)?;
        if arch == Architecture::WideResNet {
            // The zoo's definition builds `sub_block1` for some models but never calls it.
            let dropped = l.discard("sub_block1");
            if dropped > 0 {
                l.note(format!("{dropped} tensors of `sub_block1` ignored: the model never uses them"));
            }
        }
        let mut channels = stem.conv.out_channels();
        let mut blocks = Vec::new();
        for (g, &count) in counts.iter().enumerate() {
            for b in 0..count {
                let stride = if b == 0 { n.strides[g] } else { 1 };
                let block = load_block(l, n, &(n.block)(g, b), stride, channels, act, arch)?;
                channels = block.conv2.out_channels();
                blocks.push(block);
            }
        }
        let norm = BnAct::load(l, n.final_bn, channels, act, n.bn_momentum)?;
        let fc = Linear::load(l, n.fc, Some(channels))?;
        Ok(Self { stem, blocks, head: PoolHead { norm: Some(norm), dropout: 0.0, fc } })
    }
}

fn load_stem(l: &mut Loader, card: &ModelCard, n: &Naming) -> Result<StemStage> {
    let key = format!("{}.weight", n.stem);
    let kernel = l.shape(&key)?.get(2).copied().unwrap_or(0);
    let imagenet = card.architecture == Architecture::PreActResNet18 && kernel == 7;
    let (geo, pool, found) = match kernel {
        7 if imagenet => (ConvGeometry::new(2, 3), Some(Pool2d::square(3, 2, 1)), Stem::Torchvision),
        3 => (ConvGeometry::new(1, 1), None, Stem::Cifar),
        k => {
            let allowed = if card.architecture == Architecture::PreActResNet18 { "3x3 (CIFAR) or 7x7" } else { "3x3" };
            return Err(EngineError::model(format!("`{key}` has a {k}x{k} kernel; this stem is {allowed}")));
        }
    };
    if let Some(want) = card.stem
        && want != found
    {
        return Err(EngineError::model(format!(
            "the card says the {want:?} stem but `{key}` has a {kernel}x{kernel} kernel (the {found:?} stem)"
        )));
    }
    let conv = Conv2d::load(l, n.stem, geo, Some(card.input[0]))?;
    let normalize = match card.architecture {
        Architecture::DmWideResNet => Some(inner_normalize(l, card, n)?),
        _ => None,
    };
    Ok(StemStage { normalize, conv, pool })
}

/// DeepMind's models normalise inside: the card's statistics, else CIFAR-10's (10 classes)
/// or CIFAR-100's (100), as `(1, C, 1, 1)` tensors.
fn inner_normalize(l: &mut Loader, card: &ModelCard, n: &Naming) -> Result<(Tensor, Tensor)> {
    let classes = l.shape(&format!("{}.weight", n.fc))?.first().copied().unwrap_or(0);
    let c = card.input[0];
    let norm = match (&card.inner_normalize, classes) {
        (Some(norm), _) => norm.clone(),
        (None, 10) => Normalize { mean: CIFAR10_MEAN.to_vec(), std: CIFAR10_STD.to_vec() },
        (None, 100) => Normalize { mean: CIFAR100_MEAN.to_vec(), std: CIFAR100_STD.to_vec() },
        (None, k) => {
            return Err(EngineError::model(format!(
                "dm_wide_resnet normalises its input itself, but with {k} classes the statistics are \
                 unknown: give them as `inner_normalize` in the card"
            )));
        }
    };
    if c != 3 && card.inner_normalize.is_none() {
        return Err(EngineError::model(format!(
            "dm_wide_resnet's default statistics are for 3 channels, the input has {c}: give `inner_normalize` in the card"
        )));
    }
    let column = |pick: fn(&Normalize, usize) -> f32| -> Result<Tensor> {
        let v: Vec<f32> = (0..c).map(|i| pick(&norm, i)).collect();
        Ok(Tensor::from_vec(v, (1, c, 1, 1), &candle_core::Device::Cpu)?)
    };
    Ok((column(|n, i| n.channel(i).0)?, column(|n, i| n.channel(i).1)?))
}

fn load_block(
    l: &mut Loader,
    n: &Naming,
    p: &str,
    stride: usize,
    channels: usize,
    act: Activation,
    arch: Architecture,
) -> Result<Block> {
    let pre = BnAct::load(l, &format!("{p}.{}", n.pre), channels, act, n.bn_momentum)?;
    let conv1_key = format!("{p}.{}", n.conv1);
    let dm = arch == Architecture::DmWideResNet;
    let kernel = l.shape(&format!("{conv1_key}.weight"))?.get(2..).map(<[usize]>::to_vec).unwrap_or_default();
    if dm && kernel != [3, 3] {
        return Err(EngineError::model(format!("`{conv1_key}.weight` must have a 3x3 kernel, found {kernel:?}")));
    }
    // DeepMind pads stride-1 inputs by one all round: the same as the convolution's padding.
    let pad_after = dm && stride == 2;
    let geo = ConvGeometry::new(stride, if pad_after { 0 } else { 1 });
    let conv1 =
        ConvBn::load_with_momentum(l, &conv1_key, &format!("{p}.{}", n.bn2), geo, channels, Some(act), n.bn_momentum)?;
    let out = conv1.out_channels();
    let conv2 = Conv2d::load(l, &format!("{p}.{}", n.conv2), ConvGeometry::new(1, 1), Some(out))?;
    let sc = format!("{p}.{}", n.shortcut);
    let shortcut = if l.has(&format!("{sc}.weight")) {
        Some(Conv2d::load(l, &sc, ConvGeometry::new(stride, 0), Some(channels))?)
    } else if stride != 1 || out != channels {
        return Err(EngineError::model(format!(
            "block `{p}` changes shape ({channels} -> {out} channels, stride {stride}) but has no `{sc}.weight`"
        )));
    } else {
        None
    };
    Ok(Block { name: p.to_string(), pre, conv1, conv2, shortcut, pad_after })
}

impl Body for PreActNet {
    fn stages(&self) -> Vec<&dyn Stage> {
        let mut v: Vec<&dyn Stage> = vec![&self.stem];
        v.extend(self.blocks.iter().map(|b| b as &dyn Stage));
        v.push(&self.head);
        v
    }
}
