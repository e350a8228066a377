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
}

impl Architecture {
    pub const ALL: [Architecture; 7] = [
        Self::Sequential,
        Self::ResNet18,
        Self::ResNet34,
        Self::ResNet50,
        Self::SqueezeNet1_1,
        Self::ShuffleNetV2X0_5,
        Self::ShuffleNetV2X1_0,
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
        }
    }
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
/// or the CIFAR stem, a 3x3 stride-1 convolution and no max-pool.
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
}

impl ModelCard {
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let card: ModelCard = serde_json::from_str(text).map_err(|e| EngineError::card(path, e.to_string()))?;
        card.validate().map_err(|msg| EngineError::card(path, msg))?;
        Ok(card)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = read_file(path)?;
        let text = String::from_utf8(bytes).map_err(|_| EngineError::card(path, "the file is not UTF-8 text"))?;
        // Editors on Windows start UTF-8 files with a byte-order mark; JSON has no use for it.
        Self::parse(text.strip_prefix('\u{feff}').unwrap_or(&text), path)
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
        if let Some(n) = &self.normalize {
            for (name, v) in [("mean", &n.mean), ("std", &n.std)] {
                if v.len() != 1 && v.len() != c {
                    return Err(format!("`normalize.{name}` has {} values but the input has {c} channels", v.len()));
                }
            }
            if n.std.iter().any(|s| s.is_nan() || *s <= 0.0) {
                return Err("`normalize.std` values must be positive".into());
            }
        }
        if self.architecture == Architecture::Sequential && self.layers.is_empty() {
            return Err("a `sequential` card needs a `layers` array".into());
        }
        if self.architecture != Architecture::Sequential && !self.layers.is_empty() {
            return Err(format!("`layers` only applies to `sequential`, not `{}`", self.architecture));
        }
        let resnet =
            matches!(self.architecture, Architecture::ResNet18 | Architecture::ResNet34 | Architecture::ResNet50);
        if self.stem.is_some() && !resnet {
            return Err(format!("`stem` only applies to ResNets, not `{}`", self.architecture));
        }
        if let Some(eps) = self.eps
            && !(0.0..=MAX_EPS).contains(&eps)
        {
            return Err(format!("`eps` must be from 0 to {MAX_EPS}, found {eps}"));
        }
        if let Some(n) = &self.normalize
            && let Some(bad) = n.std.iter().chain(&n.mean).find(|v| !(v.is_finite() && v.abs() <= 1e6))
        {
            return Err(format!("`normalize` values must be finite numbers up to 1e6 in size, found {bad}"));
        }
        if let Some(n) = &self.normalize
            && let Some(bad) = n.std.iter().find(|&&s| f64::from(s) < MIN_STD)
        {
            return Err(format!(
                "`normalize.std` values must be at least {MIN_STD} (float32 overflows below), found {bad}"
            ));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            layer.validate().map_err(|e| format!("layer {i} ({}): {e}", layer.kind()))?;
        }
        Ok(())
    }
}

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
