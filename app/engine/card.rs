//! The model card: a JSON file beside a checkpoint that says how to build and feed it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::error::{EngineError, Result, read_file};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    #[serde(rename = "sequential")]
    Sequential,
    #[serde(rename = "resnet18")]
    ResNet18,
    #[serde(rename = "resnet34")]
    ResNet34,
    #[serde(rename = "resnet50")]
    ResNet50,
    #[serde(rename = "squeezenet1_1")]
    SqueezeNet1_1,
    #[serde(rename = "shufflenet_v2_x0_5")]
    ShuffleNetV2X0_5,
    #[serde(rename = "shufflenet_v2_x1_0")]
    ShuffleNetV2X1_0,
    /// The robust-model zoo's WideResNet (`block1.layer.0.conv1`); depth and width from the weights.
    #[serde(rename = "wide_resnet")]
    WideResNet,
    /// DeepMind's WideResNet (`layer.0.block.0.conv_0`): SiLU, normalisation inside the
    /// model, an asymmetric pad before stride-2 convolutions.
    #[serde(rename = "dm_wide_resnet")]
    DmWideResNet,
    #[serde(rename = "preact_resnet18")]
    PreActResNet18,
    /// torchvision's VGG-11/13/16/19, with or without batch norm, or a CIFAR head; the
    /// variant is read from the weights.
    #[serde(rename = "vgg")]
    Vgg,
    #[serde(rename = "mobilenet_v2")]
    MobileNetV2,
    /// An ONNX graph (`.onnx`): the file holds the architecture.
    #[serde(rename = "onnx")]
    Onnx,
}

impl Architecture {
    /// The architectures of weights-only checkpoints (an ONNX file carries its graph).
    pub const ALL: [Architecture; 12] = [
        Self::Sequential,
        Self::ResNet18,
        Self::ResNet34,
        Self::ResNet50,
        Self::SqueezeNet1_1,
        Self::ShuffleNetV2X0_5,
        Self::ShuffleNetV2X1_0,
        Self::WideResNet,
        Self::DmWideResNet,
        Self::PreActResNet18,
        Self::Vgg,
        Self::MobileNetV2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sequential => "sequential",
            Self::ResNet18 => "resnet18",
            Self::ResNet34 => "resnet34",
            Self::ResNet50 => "resnet50",
            Self::SqueezeNet1_1 => "squeezenet1_1",
            Self::ShuffleNetV2X0_5 => "shufflenet_v2_x0_5",
            Self::ShuffleNetV2X1_0 => "shufflenet_v2_x1_0",
            Self::WideResNet => "wide_resnet",
            Self::DmWideResNet => "dm_wide_resnet",
            Self::PreActResNet18 => "preact_resnet18",
            Self::Vgg => "vgg",
            Self::MobileNetV2 => "mobilenet_v2",
            Self::Onnx => "onnx",
        }
    }

    /// Whether the first layers come in a CIFAR and an ImageNet form that the card's
    /// `stem` chooses between.
    pub fn has_stem(self) -> bool {
        matches!(self, Self::ResNet18 | Self::ResNet34 | Self::ResNet50 | Self::PreActResNet18 | Self::MobileNetV2)
    }

    /// Whether the card's `activation` applies (the pre-activation residual networks).
    pub fn has_activation(self) -> bool {
        matches!(self, Self::WideResNet | Self::DmWideResNet | Self::PreActResNet18)
    }

    /// The activation when the card names none.
    pub fn default_activation(self) -> Activation {
        if self == Self::DmWideResNet { Activation::Silu } else { Activation::Relu }
    }
}

/// An elementwise activation a card can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    Relu6,
    /// `x * sigmoid(x)`, also called swish.
    Silu,
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Per-channel input normalisation: `x = (pixel / 255 - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalize {
    /// Checks the values for a `c`-channel input; `field` names the card field in errors.
    fn check(&self, field: &str, c: usize) -> std::result::Result<(), String> {
        for (name, v) in [("mean", &self.mean), ("std", &self.std)] {
            if v.len() != 1 && v.len() != c {
                return Err(format!("`{field}.{name}` has {} values but the input has {c} channels", v.len()));
            }
        }
        if self.std.iter().any(|s| s.is_nan() || *s <= 0.0) {
            return Err(format!("`{field}.std` values must be positive"));
        }
        if let Some(bad) = self.std.iter().chain(&self.mean).find(|v| !(v.is_finite() && v.abs() <= 1e6)) {
            return Err(format!("`{field}` values must be finite numbers up to 1e6 in size, found {bad}"));
        }
        if let Some(bad) = self.std.iter().find(|&&s| f64::from(s) < MIN_STD) {
            return Err(format!(
                "`{field}.std` values must be at least {MIN_STD} (float32 overflows below), found {bad}"
            ));
        }
        Ok(())
    }

    /// Mean and std for channel `c` (a single value applies to every channel).
    pub fn channel(&self, c: usize) -> (f32, f32) {
        let pick = |v: &[f32]| if v.len() == 1 { v[0] } else { v[c] };
        (pick(&self.mean), pick(&self.std))
    }
}

/// A pair of sizes written either as one number or as `[h, w]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Pair {
    One(usize),
    Two([usize; 2]),
}

impl Pair {
    pub fn hw(self) -> [usize; 2] {
        match self {
            Pair::One(v) => [v, v],
            Pair::Two(v) => v,
        }
    }
}

fn one() -> Pair {
    Pair::One(1)
}
fn zero() -> Pair {
    Pair::One(0)
}
fn is_one(p: &Pair) -> bool {
    p.hw() == [1, 1]
}
fn is_zero(p: &Pair) -> bool {
    p.hw() == [0, 0]
}
fn yes() -> bool {
    true
}
fn is_true(v: &bool) -> bool {
    *v
}
fn one_usize() -> usize {
    1
}
fn is_one_usize(v: &usize) -> bool {
    *v == 1
}
fn bn_eps() -> f64 {
    1e-5
}
fn bn_momentum() -> f64 {
    0.1
}
fn half() -> f64 {
    0.5
}
fn unit_output() -> Pair {
    Pair::One(1)
}

/// One layer of a `sequential` network. Keys are the state_dict prefixes of
/// parameterised layers; shapes come from the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    Conv2d {
        key: String,
        /// Output channels and kernel: only needed to train from scratch (shapes otherwise
        /// come from the weights).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        out_channels: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kernel: Option<Pair>,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias: bool,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        stride: Pair,
        #[serde(default = "zero", skip_serializing_if = "is_zero")]
        padding: Pair,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        dilation: Pair,
        #[serde(default = "one_usize", skip_serializing_if = "is_one_usize")]
        groups: usize,
    },
    Linear {
        key: String,
        /// Output size: only needed to train from scratch (the last layer defaults to the
        /// class count).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        out_features: Option<usize>,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias: bool,
    },
    Batchnorm2d {
        key: String,
        #[serde(default = "bn_eps")]
        eps: f64,
        #[serde(default = "bn_momentum")]
        momentum: f64,
    },
    // Field-less variants are written `{}` so that unknown fields are refused for them too.
    Relu {},
    Tanh {},
    Sigmoid {},
    Maxpool2d {
        kernel: Pair,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<Pair>,
        #[serde(default = "zero", skip_serializing_if = "is_zero")]
        padding: Pair,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ceil_mode: bool,
    },
    Avgpool2d {
        kernel: Pair,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<Pair>,
        #[serde(default = "zero", skip_serializing_if = "is_zero")]
        padding: Pair,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ceil_mode: bool,
    },
    AdaptiveAvgpool2d {
        #[serde(default = "unit_output")]
        output: Pair,
    },
    Dropout {
        #[serde(default = "half")]
        p: f64,
    },
    Flatten {},
}

/// The first layers of a ResNet: torchvision's 7x7 stride-2 convolution and max-pool,
/// or the CIFAR stem, a 3x3 stride-1 convolution and no max-pool. For MobileNetV2, whose
/// weights are the same either way, the CIFAR stem runs the first convolution and the
/// first downsampling block at stride 1 (downsampling by 8 instead of 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stem {
    Torchvision,
    Cifar,
}

/// What was learned when the checkpoint was trained by this app (written by `train`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingInfo {
    pub epoch: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub architecture: Architecture,
    /// Input shape `[C, H, W]`.
    pub input: [usize; 3],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Normalize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// `mnist`, `fashion-mnist`, `cifar10` or a name of the user's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Default attack strength in normalised input units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerSpec>,
    /// ResNets only; read from the checkpoint when absent, needed to train from scratch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stem: Option<Stem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingInfo>,
    /// `wide_resnet`, `dm_wide_resnet` and `preact_resnet18` only: ReLU by default, SiLU
    /// for `dm_wide_resnet` (as in the robust-model zoo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    /// `dm_wide_resnet` only: the normalisation the model applies to its input itself, so
    /// that it takes pixels in [0, 1]. By default CIFAR-10's statistics for 10 classes and
    /// CIFAR-100's for 100 (some zoo models use CIFAR-100's for 10 classes: say so here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_normalize: Option<Normalize>,
}

impl ModelCard {
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let card: ModelCard = serde_json::from_str(text).map_err(|e| EngineError::card(path, e.to_string()))?;
        card.validate().map_err(|msg| EngineError::card(path, msg))?;
        Ok(card)
    }

    pub fn load(path: &Path) -> Result<Self> {
        Self::parse(&Self::read_text(path)?, path)
    }

    fn read_text(path: &Path) -> Result<String> {
        let bytes = read_file(path)?;
        let text = String::from_utf8(bytes).map_err(|_| EngineError::card(path, "the file is not UTF-8 text"))?;
        // Editors on Windows start UTF-8 files with a byte-order mark; JSON has no use for it.
        Ok(text.strip_prefix('\u{feff}').map(str::to_string).unwrap_or(text))
    }

    /// The card of an ONNX file, which may leave `architecture` out.
    pub fn load_for_onnx(path: &Path) -> Result<Self> {
        let text = Self::read_text(path)?;
        let mut value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| EngineError::card(path, e.to_string()))?;
        if let Some(obj) = value.as_object_mut() {
            obj.entry("architecture").or_insert_with(|| Architecture::Onnx.name().into());
        }
        Self::parse(&value.to_string(), path)
    }

    /// The card of an ONNX graph opened without one: its input size, nothing assumed.
    pub fn onnx(input: [usize; 3]) -> Self {
        Self::bare(Architecture::Onnx, input)
    }

    /// A card saying only the architecture and input size.
    pub fn bare(architecture: Architecture, input: [usize; 3]) -> Self {
        Self {
            architecture,
            input,
            normalize: None,
            classes: None,
            dataset: None,
            eps: None,
            layers: Vec::new(),
            stem: None,
            training: None,
            activation: None,
            inner_normalize: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a card always serialises")
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        crate::engine::fsutil::write_atomic(path, self.to_json().as_bytes())
    }

    /// The card that sits beside a checkpoint: same stem, `.json`.
    pub fn beside(checkpoint: &Path) -> PathBuf {
        checkpoint.with_extension("json")
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let [c, h, w] = self.input;
        if c == 0 || h == 0 || w == 0 {
            return Err(format!("`input` must be three positive sizes [C, H, W], found {:?}", self.input));
        }
        let values = c.checked_mul(h).and_then(|v| v.checked_mul(w));
        if values.is_none_or(|v| v > MAX_INPUT_VALUES) {
            return Err(format!(
                "`input` {:?} is too large: at most {MAX_INPUT_VALUES} values per image (C x H x W) are supported",
                self.input
            ));
        }
        if let Some(n) = &self.normalize {
            n.check("normalize", c)?;
        }
        if self.architecture == Architecture::Sequential && self.layers.is_empty() {
            return Err("a `sequential` card needs a `layers` array".into());
        }
        if self.architecture != Architecture::Sequential && !self.layers.is_empty() {
            return Err(format!("`layers` only applies to `sequential`, not `{}`", self.architecture));
        }
        if self.stem.is_some() && !self.architecture.has_stem() {
            return Err(format!(
                "`stem` only applies to ResNets, preact_resnet18 and mobilenet_v2, not `{}`",
                self.architecture
            ));
        }
        if self.activation.is_some() && !self.architecture.has_activation() {
            return Err(format!(
                "`activation` only applies to wide_resnet, dm_wide_resnet and preact_resnet18, not `{}`",
                self.architecture
            ));
        }
        if let Some(n) = &self.inner_normalize {
            if self.architecture != Architecture::DmWideResNet {
                return Err(format!("`inner_normalize` only applies to dm_wide_resnet, not `{}`", self.architecture));
            }
            n.check("inner_normalize", c)?;
        }
        if let Some(eps) = self.eps
            && !(0.0..=MAX_EPS).contains(&eps)
        {
            return Err(format!("`eps` must be from 0 to {MAX_EPS}, found {eps}"));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            layer.validate().map_err(|e| format!("layer {i} ({}): {e}", layer.kind()))?;
        }
        Ok(())
    }
}

/// Values per input image: 3x591x591 (ImageNet's 3x224x224 and 3x512x512 fit), small enough
/// that checking a network on one image stays within memory whatever the card says.
pub const MAX_INPUT_VALUES: usize = 1 << 20;

/// Larger attack strengths overflow float32 images (normalised units).
pub const MAX_EPS: f64 = 1e6;
/// Smaller standard deviations turn pixels into values float32 cannot hold.
pub const MIN_STD: f64 = 1e-6;

impl LayerSpec {
    /// The layer's `type` as written in a card.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Conv2d { .. } => "conv2d",
            LayerSpec::Linear { .. } => "linear",
            LayerSpec::Batchnorm2d { .. } => "batchnorm2d",
            LayerSpec::Relu {} => "relu",
            LayerSpec::Tanh {} => "tanh",
            LayerSpec::Sigmoid {} => "sigmoid",
            LayerSpec::Maxpool2d { .. } => "maxpool2d",
            LayerSpec::Avgpool2d { .. } => "avgpool2d",
            LayerSpec::AdaptiveAvgpool2d { .. } => "adaptive_avgpool2d",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::Flatten {} => "flatten",
        }
    }

    /// Sizes a layer cannot work with (PyTorch refuses the same), with the accepted range.
    fn validate(&self) -> std::result::Result<(), String> {
        let at_least_one = |name: &str, p: Pair| match p.hw() {
            [a, b] if a >= 1 && b >= 1 => Ok(()),
            v => Err(format!("`{name}` must be at least 1, found {v:?}")),
        };
        match self {
            LayerSpec::Conv2d { out_channels, kernel, stride, dilation, groups, .. } => {
                at_least_one("stride", *stride)?;
                at_least_one("dilation", *dilation)?;
                if let Some(k) = kernel {
                    at_least_one("kernel", *k)?;
                }
                if *groups == 0 || out_channels == &Some(0) {
                    return Err("`groups` and `out_channels` must be at least 1".into());
                }
            }
            LayerSpec::Linear { out_features: Some(0), .. } => return Err("`out_features` must be at least 1".into()),
            LayerSpec::Maxpool2d { kernel, stride, padding, .. }
            | LayerSpec::Avgpool2d { kernel, stride, padding, .. } => {
                at_least_one("kernel", *kernel)?;
                if let Some(s) = stride {
                    at_least_one("stride", *s)?;
                }
                let (k, p) = (kernel.hw(), padding.hw());
                if p[0] * 2 > k[0] || p[1] * 2 > k[1] {
                    return Err(format!("`padding` {p:?} must be at most half the kernel {k:?}"));
                }
            }
            LayerSpec::AdaptiveAvgpool2d { output } => at_least_one("output", *output)?,
            LayerSpec::Dropout { p } if !(0.0..=1.0).contains(p) => {
                return Err(format!("`p` must be from 0 to 1, found {p}"));
            }
            LayerSpec::Batchnorm2d { eps, momentum, .. }
                if !(*eps > 0.0 && eps.is_finite() && (0.0..=1.0).contains(momentum)) =>
            {
                return Err(format!("`eps` must be positive and `momentum` from 0 to 1, found {eps} and {momentum}"));
            }
            _ => {}
        }
        Ok(())
    }
}

/// An example card, shown in errors when a checkpoint cannot be recognised.
pub const EXAMPLE_CARD: &str = r#"{
  "architecture": "sequential",
  "input": [1, 28, 28],
  "normalize": {"mean": [0.1307], "std": [0.3081]},
  "layers": [
    {"type": "conv2d", "key": "features.0", "padding": 1},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel": 2},
    {"type": "flatten"},
    {"type": "linear", "key": "classifier.0"}
  ]
}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_card_parses() {
        let card = ModelCard::parse(EXAMPLE_CARD, Path::new("example.json")).unwrap();
        assert_eq!(card.layers.len(), 5);
        assert_eq!(card.architecture, Architecture::Sequential);
    }

    #[test]
    fn unknown_field_is_named() {
        let text = r#"{"architecture": "resnet18", "input": [3, 32, 32], "colour": "red"}"#;
        let err = ModelCard::parse(text, Path::new("m.json")).unwrap_err().to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn unknown_layer_field_and_type_are_named() {
        let text = r#"{"architecture": "sequential", "input": [1, 4, 4],
            "layers": [{"type": "relu", "inplace": true}]}"#;
        let err = ModelCard::parse(text, Path::new("m.json")).unwrap_err().to_string();
        assert!(err.contains("unknown field `inplace`"), "{err}");
        let text = r#"{"architecture": "sequential", "input": [1, 4, 4], "layers": [{"type": "conv3d"}]}"#;
        let err = ModelCard::parse(text, Path::new("m.json")).unwrap_err().to_string();
        assert!(err.contains("unknown variant `conv3d`"), "{err}");
    }
}
