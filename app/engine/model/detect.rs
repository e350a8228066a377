//! Recognising an architecture from state_dict keys and shapes when no card names it.

use crate::engine::card::{Architecture, EXAMPLE_CARD, LayerSpec, ModelCard, Pair, Stem};
use crate::engine::checkpoint::StateDict;
use crate::engine::error::{EngineError, Result};

/// A card guessed from the checkpoint, plus a note saying what was assumed.
pub struct Detected {
    pub card: ModelCard,
    pub note: String,
}

/// Provisional input size for size-agnostic networks: the dataset's size replaces it.
fn default_hw(channels: usize) -> usize {
    if channels == 1 { 28 } else { 32 }
}

/// Networks that downsample by 32 need at least 32x32 (MNIST's 28 vanishes on the way).
fn min_hw(architecture: Architecture) -> usize {
    match architecture {
        Architecture::Vgg | Architecture::MobileNetV2 | Architecture::PreActResNet18 => 32,
        _ => 1,
    }
}

fn card(architecture: Architecture, channels: usize) -> ModelCard {
    let hw = default_hw(channels).max(min_hw(architecture));
    ModelCard::bare(architecture, [channels, hw, hw])
}

pub fn detect(sd: &StateDict) -> Result<Detected> {
    orphan_bias(sd)?;
    let shape = |k: &str| sd.shape(k).map(<[usize]>::to_vec);
    if let Some(d) = pre_activation(sd)? {
        return Ok(d);
    }
    if let Some(d) = vgg(sd) {
        return Ok(d);
    }
    if let (Some(stem), true) = (shape("features.0.0.weight"), sd.contains("features.1.conv.0.0.weight")) {
        return Ok(Detected {
            card: card(Architecture::MobileNetV2, stem[1]),
            note: "recognised mobilenet_v2 (torchvision, ImageNet stem: a card with `\"stem\": \"cifar\"` \
                   runs the first convolution and downsampling block at stride 1) from its keys"
                .into(),
        });
    }
    if let (Some(stem), true) = (shape("conv1.weight"), sd.contains("layer1.0.conv1.weight")) {
        let count = |s: usize| (0..).take_while(|b| sd.contains(&format!("layer{s}.{b}.conv1.weight"))).count();
        let blocks = [count(1), count(2), count(3), count(4)];
        let bottleneck = sd.contains("layer1.0.conv3.weight");
        let arch = match (blocks, bottleneck) {
            ([2, 2, 2, 2], false) => Architecture::ResNet18,
            ([3, 4, 6, 3], false) => Architecture::ResNet34,
            ([3, 4, 6, 3], true) => Architecture::ResNet50,
            _ => {
                return Err(EngineError::model(format!(
                    "ResNet-like keys with blocks per stage {blocks:?} ({}), which matches none of \
                     ResNet-18 [2, 2, 2, 2], ResNet-34 [3, 4, 6, 3], ResNet-50 [3, 4, 6, 3] bottleneck",
                    if bottleneck { "bottleneck" } else { "basic" }
                )));
            }
        };
        let (kind, name) =
            if stem.get(2) == Some(&3) { (Stem::Cifar, "CIFAR") } else { (Stem::Torchvision, "torchvision") };
        let mut c = card(arch, stem[1]);
        c.stem = Some(kind);
        return Ok(Detected { card: c, note: format!("recognised {arch} ({name} stem) from its keys") });
    }
    if let (Some(stem), true) = (shape("features.0.weight"), sd.contains("features.3.squeeze.weight")) {
        if stem.get(2) != Some(&3) {
            return Err(EngineError::model(
                "SqueezeNet keys with a first kernel other than 3x3: SqueezeNet 1.0 is not supported, only 1.1",
            ));
        }
        return Ok(Detected {
            card: card(Architecture::SqueezeNet1_1, stem[1]),
            note: "recognised squeezenet1_1 from its keys".into(),
        });
    }
    if let (Some(stem), Some(b1)) = (shape("conv1.0.weight"), shape("stage2.0.branch1.2.weight")) {
        let arch = if b1[0] * 2 == 116 { Architecture::ShuffleNetV2X1_0 } else { Architecture::ShuffleNetV2X0_5 };
        return Ok(Detected { card: card(arch, stem[1]), note: format!("recognised {arch} from its keys") });
    }
    if let Some(d) = plain_stack(sd) {
        return Ok(d);
    }
    Err(not_recognised(sd))
}

/// PreActResNet-18 and the two WideResNet namings; depth and width go in the note.
fn pre_activation(sd: &StateDict) -> Result<Option<Detected>> {
    let families = [
        (Architecture::DmWideResNet, "init_conv.weight", "layer.0.block.0.conv_0.weight"),
        (Architecture::WideResNet, "conv1.weight", "block1.layer.0.conv1.weight"),
        // A ResNet has `bn1` at the top; PreActResNet ends in `bn`.
        (Architecture::PreActResNet18, "conv1.weight", "bn.running_var"),
    ];
    let Some(&(arch, stem_key, _)) = families.iter().find(|(_, a, b)| sd.contains(a) && sd.contains(b)) else {
        return Ok(None);
    };
    let stem = sd.shape(stem_key).map(<[usize]>::to_vec).unwrap_or_default();
    let counts = super::preact::block_counts(arch, |k| sd.contains(k));
    let mut c = card(arch, stem.get(1).copied().unwrap_or(3));
    let name = match arch {
        Architecture::PreActResNet18 => {
            let imagenet = stem.get(2) == Some(&7);
            c.stem = Some(if imagenet { Stem::Torchvision } else { Stem::Cifar });
            format!("PreActResNet-18 ({} stem)", if imagenet { "ImageNet" } else { "CIFAR" })
        }
        _ => {
            let n = counts.first().copied().unwrap_or(0);
            if counts.iter().any(|&k| k != n) || n == 0 {
                return Err(EngineError::model(format!(
                    "WideResNet keys with blocks per group {counts:?}: a WideResNet has the same number in each"
                )));
            }
            let first = super::preact::first_block_channels(arch, |k| sd.shape(k).map(<[usize]>::to_vec));
            let stem_out = stem.first().copied().unwrap_or(16).max(1);
            let widen = first.map(|f| format!("{}", f as f64 / stem_out as f64)).unwrap_or_else(|| "?".into());
            let extra = if arch == Architecture::DmWideResNet {
                " (SiLU and CIFAR statistics inside the model, as in the zoo; a card's `activation` and \
                 `inner_normalize` say otherwise)"
            } else {
                ""
            };
            format!("WideResNet-{}-{widen}{extra}", 6 * n + 4)
        }
    };
    Ok(Some(Detected { card: c, note: format!("recognised {arch}: {name}, from its keys") }))
}

/// torchvision's VGG-11/13/16/19 (with or without batch norm) and their CIFAR heads.
fn vgg(sd: &StateDict) -> Option<Detected> {
    if !(sd.contains("classifier.weight") || sd.keys().any(|k| k.starts_with("classifier.") && k.ends_with(".weight")))
    {
        return None;
    }
    let slots = super::vgg::layout(sd)?;
    let name = super::vgg::variant(&slots)?;
    let channels = sd.shape("features.0.weight")?.get(1).copied()?;
    Some(Detected { card: card(Architecture::Vgg, channels), note: format!("recognised {name} from its keys") })
}

/// A bias without its weight means the weight went missing (every PyTorch module with a
/// bias has a weight): say so, rather than let a guess report the bias as unused.
fn orphan_bias(sd: &StateDict) -> Result<()> {
    let orphan = sd.keys().find_map(|k| {
        let prefix = k.strip_suffix(".bias")?;
        let weight = format!("{prefix}.weight");
        (!sd.contains(&weight)).then(|| (k.to_string(), weight))
    });
    match orphan {
        Some((bias, weight)) => {
            Err(EngineError::model(format!("the checkpoint lacks `{weight}`: it has `{bias}` but not its weight")))
        }
        None => Ok(()),
    }
}

/// Guesses a plain convolution-then-linear network (like the classic MNIST CNNs) from
/// the gaps in its `nn.Sequential` indices: conv, ReLU and, where the index skips
/// two, a 2x2 max-pool; "same" padding; ReLU between linear layers. The guess is
/// accepted only if the first linear layer's input size comes out exactly right.
fn plain_stack(sd: &StateDict) -> Option<Detected> {
    if !sd.keys().all(|k| k.ends_with(".weight") || k.ends_with(".bias")) {
        return None;
    }
    let mut layers: Vec<(String, usize, Vec<usize>)> = Vec::new(); // (prefix, index, weight shape)
    for key in sd.keys().filter(|k| k.ends_with(".weight")) {
        let prefix = key.strip_suffix(".weight")?;
        let (container, index) = prefix.rsplit_once('.')?;
        let index: usize = index.parse().ok()?;
        let shape = sd.shape(key)?.to_vec();
        if container.contains('.') || !(shape.len() == 4 || shape.len() == 2) {
            return None;
        }
        layers.push((prefix.to_string(), index, shape));
    }
    // Convolutions come before linear layers; within each, by container and index
    // (file order is not module order in every format).
    layers.sort_by_key(|(p, i, s)| (s.len() == 2, p.rsplit_once('.').map(|c| c.0.to_string()), *i));
    let convs: Vec<_> = layers.iter().filter(|l| l.2.len() == 4).collect();
    let linears: Vec<_> = layers.iter().filter(|l| l.2.len() == 2).collect();
    if convs.is_empty() || linears.is_empty() {
        return None;
    }
    let channels = convs[0].2[1];
    let mut specs = Vec::new();
    let mut pools = 0usize;
    for (i, (prefix, index, shape)) in convs.iter().map(|l| (&l.0, l.1, &l.2)).enumerate() {
        if shape[2] != shape[3] || shape[2] % 2 == 0 {
            return None;
        }
        specs.push(LayerSpec::Conv2d {
            key: prefix.clone(),
            out_channels: None,
            kernel: None,
            bias: sd.contains(&format!("{prefix}.bias")),
            stride: Pair::One(1),
            padding: Pair::One(shape[2] / 2),
            dilation: Pair::One(1),
            groups: 1,
        });
        specs.push(LayerSpec::Relu {});
        if let Some(next) = convs.get(i + 1)
            && next.1 == index + 3
        {
            specs.push(LayerSpec::Maxpool2d {
                kernel: Pair::One(2),
                stride: None,
                padding: Pair::One(0),
                ceil_mode: false,
            });
            pools += 1;
        }
    }
    let last_channels = convs.last()?.2[0];
    let in_features = linears[0].2[1];
    let hw = default_hw(channels);
    // Trailing pools that the keys cannot show: as many as make the sizes agree.
    let trailing = (0..4).find(|t| {
        let side = hw >> (pools + t);
        side > 0 && last_channels * side * side == in_features
    })?;
    for _ in 0..trailing {
        specs.push(LayerSpec::Maxpool2d {
            kernel: Pair::One(2),
            stride: None,
            padding: Pair::One(0),
            ceil_mode: false,
        });
    }
    specs.push(LayerSpec::Flatten {});
    for (i, l) in linears.iter().enumerate() {
        specs.push(LayerSpec::Linear {
            key: l.0.clone(),
            out_features: None,
            bias: sd.contains(&format!("{}.bias", l.0)),
        });
        if i + 1 < linears.len() {
            specs.push(LayerSpec::Relu {});
        }
    }
    let mut c = card(Architecture::Sequential, channels);
    c.layers = specs;
    Some(Detected {
        card: c,
        note: format!(
            "guessed a plain CNN ({} conv, {} linear, ReLU, 2x2 max-pools, same padding) for {hw}x{hw} inputs \
             from the key names; write a model card if this is not the network",
            convs.len(),
            linears.len()
        ),
    })
}

fn not_recognised(sd: &StateDict) -> EngineError {
    let listing: Vec<String> = sd.iter().take(12).map(|(k, t)| format!("  {k} {:?}", t.dims())).collect();
    let more = if sd.len() > 12 { format!("\n  ... and {} more", sd.len() - 12) } else { String::new() };
    let known: Vec<&str> = Architecture::ALL.iter().map(|a| a.name()).collect();
    EngineError::model(format!(
        "the architecture could not be recognised from the checkpoint's keys:\n{}{more}\n\
         Known architectures: {}. Write a model card (a JSON file with the checkpoint's name and \
         the extension .json, or pass --card), for example:\n{EXAMPLE_CARD}",
        listing.join("\n"),
        known.join(", ")
    ))
}
