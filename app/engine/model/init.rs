//! Fresh parameters for training from scratch, initialised as PyTorch and torchvision do.

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::ops::{Axis, Pool2d};
use crate::engine::card::{Architecture, LayerSpec, ModelCard, Pair, Stem};
use crate::engine::checkpoint::StateDict;
use crate::engine::error::{EngineError, Result};

struct Init {
    rng: ChaCha8Rng,
    pairs: Vec<(String, Tensor)>,
    device: Device,
}

impl Init {
    fn push(&mut self, key: String, values: Vec<f32>, shape: &[usize]) -> Result<()> {
        self.pairs.push((key, Tensor::from_vec(values, shape, &self.device)?));
        Ok(())
    }

    fn uniform(&mut self, key: String, shape: &[usize], bound: f32) -> Result<()> {
        let n = shape.iter().product();
        let v = (0..n).map(|_| self.rng.random_range(-bound..=bound)).collect();
        self.push(key, v, shape)
    }

    fn normal(&mut self, key: String, shape: &[usize], std: f32) -> Result<()> {
        let n = shape.iter().product();
        let dist = Normal::new(0.0, std).map_err(|e| EngineError::model(e.to_string()))?;
        let v = (0..n).map(|_| dist.sample(&mut self.rng)).collect();
        self.push(key, v, shape)
    }

    fn constant(&mut self, key: String, shape: &[usize], value: f32) -> Result<()> {
        self.push(key, vec![value; shape.iter().product()], shape)
    }

    /// `nn.Conv2d`'s default: weight and bias uniform in ±1/sqrt(fan_in).
    fn conv_default(&mut self, key: &str, shape: [usize; 4], bias: bool) -> Result<()> {
        let bound = 1.0 / ((shape[1] * shape[2] * shape[3]) as f32).sqrt();
        self.uniform(format!("{key}.weight"), &shape, bound)?;
        if bias {
            self.uniform(format!("{key}.bias"), &[shape[0]], bound)?;
        }
        Ok(())
    }

    /// torchvision ResNet: kaiming normal, fan out, ReLU gain; no bias.
    fn conv_fan_out(&mut self, key: &str, shape: [usize; 4]) -> Result<()> {
        let std = (2.0 / (shape[0] * shape[2] * shape[3]) as f32).sqrt();
        self.normal(format!("{key}.weight"), &shape, std)
    }

    /// `nn.Linear`'s default: weight and bias uniform in ±1/sqrt(fan_in).
    fn linear(&mut self, key: &str, out: usize, inp: usize, bias: bool) -> Result<()> {
        let bound = 1.0 / (inp as f32).sqrt();
        self.uniform(format!("{key}.weight"), &[out, inp], bound)?;
        if bias {
            self.uniform(format!("{key}.bias"), &[out], bound)?;
        }
        Ok(())
    }

    fn bn(&mut self, key: &str, c: usize) -> Result<()> {
        self.constant(format!("{key}.weight"), &[c], 1.0)?;
        self.constant(format!("{key}.bias"), &[c], 0.0)?;
        self.constant(format!("{key}.running_mean"), &[c], 0.0)?;
        self.constant(format!("{key}.running_var"), &[c], 1.0)?;
        self.pairs.push((format!("{key}.num_batches_tracked"), Tensor::zeros((), DType::I64, &self.device)?));
        Ok(())
    }
}

/// The architectures that can be trained from scratch (a card alone fixes their shapes).
pub const TRAINABLE: [Architecture; 7] = [
    Architecture::Sequential,
    Architecture::ResNet18,
    Architecture::ResNet34,
    Architecture::ResNet50,
    Architecture::SqueezeNet1_1,
    Architecture::ShuffleNetV2X0_5,
    Architecture::ShuffleNetV2X1_0,
];

/// A state_dict of fresh parameters for `card` with `classes` outputs, from `seed`.
pub fn initial_state(card: &ModelCard, classes: usize, seed: u64, device: &Device) -> Result<StateDict> {
    let mut init = Init { rng: ChaCha8Rng::seed_from_u64(seed), pairs: Vec::new(), device: device.clone() };
    let c = card.input[0];
    match card.architecture {
        Architecture::Sequential => sequential(&mut init, card, classes)?,
        Architecture::ResNet18 => resnet(&mut init, c, classes, [2, 2, 2, 2], false, card.stem)?,
        Architecture::ResNet34 => resnet(&mut init, c, classes, [3, 4, 6, 3], false, card.stem)?,
        Architecture::ResNet50 => resnet(&mut init, c, classes, [3, 4, 6, 3], true, card.stem)?,
        Architecture::SqueezeNet1_1 => squeezenet(&mut init, c, classes)?,
        Architecture::ShuffleNetV2X0_5 => shufflenet(&mut init, c, classes, [24, 48, 96, 192, 1024])?,
        Architecture::ShuffleNetV2X1_0 => shufflenet(&mut init, c, classes, [24, 116, 232, 464, 1024])?,
        a @ (Architecture::WideResNet
        | Architecture::DmWideResNet
        | Architecture::PreActResNet18
        | Architecture::Vgg
        | Architecture::MobileNetV2
        | Architecture::Onnx) => {
            return Err(EngineError::model(format!(
                "training {a} from scratch is not supported: its depth and width come from a checkpoint; \
                 open one (or train one of {})",
                TRAINABLE.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(StateDict::from_pairs(init.pairs))
}

fn resnet(
    init: &mut Init,
    c: usize,
    classes: usize,
    blocks: [usize; 4],
    bottleneck: bool,
    stem: Option<Stem>,
) -> Result<()> {
    let stem = stem.unwrap_or(Stem::Torchvision);
    let k = if stem == Stem::Cifar { 3 } else { 7 };
    init.conv_fan_out("conv1", [64, c, k, k])?;
    init.bn("bn1", 64)?;
    let expansion = if bottleneck { 4 } else { 1 };
    let mut inplanes = 64;
    for (s, &n) in blocks.iter().enumerate() {
        let planes = 64 << s;
        for b in 0..n {
            let p = format!("layer{}.{b}", s + 1);
            let convs: Vec<[usize; 4]> = if bottleneck {
                vec![[planes, inplanes, 1, 1], [planes, planes, 3, 3], [planes * 4, planes, 1, 1]]
            } else {
                vec![[planes, inplanes, 3, 3], [planes, planes, 3, 3]]
            };
            for (i, shape) in convs.iter().enumerate() {
                init.conv_fan_out(&format!("{p}.conv{}", i + 1), *shape)?;
                init.bn(&format!("{p}.bn{}", i + 1), shape[0])?;
            }
            let stride = if s > 0 && b == 0 { 2 } else { 1 };
            if stride != 1 || inplanes != planes * expansion {
                init.conv_fan_out(&format!("{p}.downsample.0"), [planes * expansion, inplanes, 1, 1])?;
                init.bn(&format!("{p}.downsample.1"), planes * expansion)?;
            }
            inplanes = planes * expansion;
        }
    }
    init.linear("fc", classes, inplanes, true)
}

fn squeezenet(init: &mut Init, c: usize, classes: usize) -> Result<()> {
    // torchvision: kaiming uniform (gain sqrt(2), bound sqrt(6 / fan_in)), zero biases;
    // the final convolution normal(0, 0.01).
    let conv = |init: &mut Init, key: &str, shape: [usize; 4]| -> Result<()> {
        let bound = (6.0 / (shape[1] * shape[2] * shape[3]) as f32).sqrt();
        init.uniform(format!("{key}.weight"), &shape, bound)?;
        init.constant(format!("{key}.bias"), &[shape[0]], 0.0)
    };
    conv(init, "features.0", [64, c, 3, 3])?;
    let fires = [
        (3, 64, 16, 64),
        (4, 128, 16, 64),
        (6, 128, 32, 128),
        (7, 256, 32, 128),
        (9, 256, 48, 192),
        (10, 384, 48, 192),
        (11, 384, 64, 256),
        (12, 512, 64, 256),
    ];
    for (i, inp, sq, ex) in fires {
        conv(init, &format!("features.{i}.squeeze"), [sq, inp, 1, 1])?;
        conv(init, &format!("features.{i}.expand1x1"), [ex, sq, 1, 1])?;
        conv(init, &format!("features.{i}.expand3x3"), [ex, sq, 3, 3])?;
    }
    init.normal("classifier.1.weight".into(), &[classes, 512, 1, 1], 0.01)?;
    init.constant("classifier.1.bias".into(), &[classes], 0.0)
}

fn shufflenet(init: &mut Init, c: usize, classes: usize, widths: [usize; 5]) -> Result<()> {
    init.conv_default("conv1.0", [widths[0], c, 3, 3], false)?;
    init.bn("conv1.1", widths[0])?;
    let mut inp = widths[0];
    for (s, repeats) in [4usize, 8, 4].into_iter().enumerate() {
        let out = widths[s + 1];
        let f = out / 2;
        for i in 0..repeats {
            let p = format!("stage{}.{i}", s + 2);
            let b2_in = if i == 0 {
                init.conv_default(&format!("{p}.branch1.0"), [inp, 1, 3, 3], false)?;
                init.bn(&format!("{p}.branch1.1"), inp)?;
                init.conv_default(&format!("{p}.branch1.2"), [f, inp, 1, 1], false)?;
                init.bn(&format!("{p}.branch1.3"), f)?;
                inp
            } else {
                f
            };
            init.conv_default(&format!("{p}.branch2.0"), [f, b2_in, 1, 1], false)?;
            init.bn(&format!("{p}.branch2.1"), f)?;
            init.conv_default(&format!("{p}.branch2.3"), [f, 1, 3, 3], false)?;
            init.bn(&format!("{p}.branch2.4"), f)?;
            init.conv_default(&format!("{p}.branch2.5"), [f, f, 1, 1], false)?;
            init.bn(&format!("{p}.branch2.6"), f)?;
            inp = out;
        }
    }
    init.conv_default("conv5.0", [widths[4], inp, 1, 1], false)?;
    init.bn("conv5.1", widths[4])?;
    init.linear("fc", classes, widths[4], true)
}

fn sequential(init: &mut Init, card: &ModelCard, classes: usize) -> Result<()> {
    let [mut ch, mut h, mut w] = card.input;
    let mut flat: Option<usize> = None;
    let last_linear = card.layers.iter().rposition(|l| matches!(l, LayerSpec::Linear { .. }));
    for (i, layer) in card.layers.iter().enumerate() {
        let need = |what: &str| {
            EngineError::config(format!("layer {i}: training from scratch needs `{what}` in the card's layer"))
        };
        match layer {
            LayerSpec::Conv2d { key, out_channels, kernel, bias, stride, padding, dilation, groups } => {
                let out = out_channels.ok_or_else(|| need("out_channels"))?;
                let [kh, kw] = kernel.ok_or_else(|| need("kernel"))?.hw();
                if ch % groups != 0 || out % groups != 0 {
                    return Err(EngineError::config(format!("layer {i}: channels do not split into {groups} groups")));
                }
                init.conv_default(key, [out, ch / groups, kh, kw], *bias)?;
                let axis = |len: usize, k: usize, s: Pair, p: Pair, d: Pair, idx: usize| {
                    (len + 2 * p.hw()[idx]).checked_sub(d.hw()[idx] * (k - 1) + 1).map(|v| v / s.hw()[idx] + 1)
                };
                h = axis(h, kh, *stride, *padding, *dilation, 0).ok_or_else(|| need("a kernel that fits"))?;
                w = axis(w, kw, *stride, *padding, *dilation, 1).ok_or_else(|| need("a kernel that fits"))?;
                ch = out;
            }
            LayerSpec::Linear { key, out_features, bias } => {
                let inp = flat.ok_or_else(|| need("a flatten layer before it"))?;
                let out = match out_features {
                    Some(o) => *o,
                    None if Some(i) == last_linear => classes,
                    None => return Err(need("out_features")),
                };
                init.linear(key, out, inp, *bias)?;
                flat = Some(out);
            }
            LayerSpec::Batchnorm2d { key, .. } => init.bn(key, ch)?,
            LayerSpec::Maxpool2d { kernel, stride, padding, ceil_mode }
            | LayerSpec::Avgpool2d { kernel, stride, padding, ceil_mode } => {
                let [kh, kw] = kernel.hw();
                let [sh, sw] = stride.map_or([kh, kw], Pair::hw);
                let [ph, pw] = padding.hw();
                let p = Pool2d {
                    h: Axis { kernel: kh, stride: sh, padding: ph },
                    w: Axis { kernel: kw, stride: sw, padding: pw },
                    ceil_mode: *ceil_mode,
                };
                (h, w) = p.output(h, w).ok_or_else(|| need("a pooling window that fits"))?;
            }
            LayerSpec::AdaptiveAvgpool2d { output } => [h, w] = output.hw(),
            LayerSpec::Flatten {} => flat = Some(flat.unwrap_or(ch * h * w)),
            LayerSpec::Relu {} | LayerSpec::Tanh {} | LayerSpec::Sigmoid {} | LayerSpec::Dropout { .. } => {}
        }
    }
    Ok(())
}
