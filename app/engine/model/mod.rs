//! Networks: architectures built from checkpoints, with their parameters held as Vars.

pub(crate) mod blocks;
pub mod detect;
mod finite;
pub mod graph;
pub mod init;
pub mod kernels;
pub mod layers;
mod mobilenet;
pub mod ops;
pub mod params;
mod preact;
mod resnet;
mod sequential;
mod shufflenet;
mod squeezenet;
pub mod vgg;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Result as CResult, Tensor};

pub use graph::{GraphBuilder, ModelGraph, NodeId};
pub use kernels::Grads;
pub use layers::{BnMode, ForwardCtx, Tap};
pub use params::{LayerInfo, LayerKind, Param, ParamStore, Role};

use crate::engine::card::{Architecture, ModelCard};
use crate::engine::checkpoint::{self, StateDict};
use crate::engine::error::{EngineError, Result};

/// The attribute name under which wrappers keep the network.
const WRAPPER_PREFIX: &str = "model.";

/// A piece of an architecture's forward computation: a layer, a residual block, a head.
pub trait Stage: Send + Sync {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor>;
    /// Whether the parameterised layer `name` (a state_dict prefix) is inside.
    fn contains(&self, name: &str) -> bool;
    /// Records the stage's layers and joins, reading node `x`; returns its output's node.
    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId;
    /// This stage and a ReLU after it in one op, where the stage can (else `None`).
    fn forward_then_relu(&self, _x: &Tensor, _ctx: &mut ForwardCtx) -> Option<CResult<Tensor>> {
        None
    }
    /// Whether the stage is a ReLU, which the stage before may absorb.
    fn is_relu(&self) -> bool {
        false
    }
}

/// An architecture: its forward computation as a sequence of stages, so that work before a
/// filtered layer can be done once and reused (sweeps).
pub trait Body: Send + Sync {
    fn stages(&self) -> Vec<&dyn Stage>;

    /// What feeds what, stage after stage.
    fn graph(&self) -> ModelGraph {
        let (mut g, mut x) = GraphBuilder::new();
        for s in self.stages() {
            x = s.describe(&mut g, x);
        }
        g.finish(x)
    }
}

/// Where the card of a network came from.
#[derive(Debug, Clone, PartialEq)]
pub enum CardOrigin {
    File(PathBuf),
    /// Recognised from the checkpoint's keys, with a note of what was assumed.
    Detected(String),
    /// Supplied by the program (the embedded default, a training run).
    Given,
}

pub struct Network {
    pub card: ModelCard,
    pub card_origin: CardOrigin,
    pub params: ParamStore,
    pub num_classes: usize,
    pub device: Device,
    /// Non-fatal findings from loading (NaN weights, guesses).
    pub warnings: Vec<String>,
    body: Box<dyn Body>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("architecture", &self.card.architecture).finish_non_exhaustive()
    }
}

impl Network {
    /// Opens a checkpoint with the card given, else the card beside it, else a
    /// card recognised from the keys.
    pub fn load(checkpoint: &Path, card: Option<&Path>, device: &Device) -> Result<Self> {
        if crate::engine::onnx::is_onnx(checkpoint) {
            return crate::engine::onnx::load(checkpoint, card, device);
        }
        let state = checkpoint::load(checkpoint, device)?;
        let beside = ModelCard::beside(checkpoint);
        let card_path = card.map(Path::to_path_buf).or_else(|| beside.is_file().then_some(beside));
        let card = match card_path {
            Some(p) => Some((ModelCard::load(&p)?, CardOrigin::File(p))),
            None => None,
        };
        Self::build(state, card, device).map_err(|e| match e {
            EngineError::Model(msg) => EngineError::checkpoint(checkpoint, msg),
            other => other,
        })
    }

    /// Builds from tensors already loaded; without a card the architecture is recognised.
    pub fn build(mut state: StateDict, card: Option<(ModelCard, CardOrigin)>, device: &Device) -> Result<Self> {
        // A model saved from inside a wrapper has every key under `model.`; a sequential
        // card names its keys as they are.
        let (card, origin) = match card {
            Some(c) => {
                if c.0.architecture != Architecture::Sequential {
                    state.strip_common_prefix(WRAPPER_PREFIX);
                }
                c
            }
            None => {
                let d = match detect::detect(&state) {
                    Ok(d) => d,
                    Err(e) if !state.strip_common_prefix(WRAPPER_PREFIX) => return Err(e),
                    Err(_) => detect::detect(&state)?,
                };
                (d.card, CardOrigin::Detected(d.note))
            }
        };
        let mut warnings = state.warnings.clone();
        if let CardOrigin::Detected(note) = &origin {
            warnings.push(note.clone());
        }
        let mut loader = params::Loader::new(state);
        let channels = card.input[0];
        let body: Box<dyn Body> = match card.architecture {
            Architecture::Sequential => Box::new(sequential::Sequential::load(&mut loader, &card.layers, card.input)?),
            Architecture::ResNet18 | Architecture::ResNet34 | Architecture::ResNet50 => {
                Box::new(resnet::ResNet::load(&mut loader, card.architecture, card.stem, channels)?)
            }
            Architecture::SqueezeNet1_1 => Box::new(squeezenet::SqueezeNet::load(&mut loader, channels)?),
            Architecture::ShuffleNetV2X0_5 | Architecture::ShuffleNetV2X1_0 => {
                Box::new(shufflenet::ShuffleNetV2::load(&mut loader, channels)?)
            }
            Architecture::WideResNet | Architecture::DmWideResNet | Architecture::PreActResNet18 => {
                Box::new(preact::PreActNet::load(&mut loader, &card)?)
            }
            Architecture::Vgg => Box::new(vgg::Vgg::load(&mut loader, channels)?),
            Architecture::MobileNetV2 => Box::new(mobilenet::MobileNetV2::load(&mut loader, card.stem, channels)?),
            Architecture::Onnx => {
                return Err(EngineError::model(
                    "an `onnx` card describes an .onnx file; these weights are not one (open the .onnx file)",
                ));
            }
        };
        warnings.extend(loader.take_notes());
        let params = loader.finish()?;
        Self::assemble(card, origin, params, warnings, body, device)
    }

    /// A network from its parts, checked by one pass on a blank input, which also yields
    /// the class count.
    pub(crate) fn assemble(
        card: ModelCard,
        card_origin: CardOrigin,
        params: ParamStore,
        warnings: Vec<String>,
        body: Box<dyn Body>,
        device: &Device,
    ) -> Result<Self> {
        let mut net = Self { card, card_origin, params, num_classes: 0, device: device.clone(), warnings, body };
        // One pass on a blank input checks the whole graph and yields the class count.
        let [c, h, w] = net.card.input;
        let probe = Tensor::zeros((1, c, h, w), DType::F32, device)?;
        let logits = net
            .forward(&probe, &mut ForwardCtx::default())
            .map_err(|e| EngineError::model(format!("the network fails on a {c}x{h}x{w} input: {e}")))?;
        net.num_classes = match logits.dims() {
            [1, k] => *k,
            other => return Err(EngineError::model(format!("the network outputs shape {other:?}, not class scores"))),
        };
        if let Some(classes) = &net.card.classes
            && classes.len() != net.num_classes
        {
            return Err(EngineError::model(format!(
                "the card names {} classes but the network has {} outputs",
                classes.len(),
                net.num_classes
            )));
        }
        Ok(net)
    }

    pub fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        self.forward_stages(0..usize::MAX, x, ctx)
    }

    /// Runs the stages in `range` (clipped to the network's) on `x`.
    /// A stage followed by a ReLU inside the range runs as one op where it can.
    pub fn forward_stages(&self, range: std::ops::Range<usize>, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        let stages = self.body.stages();
        let end = range.end.min(stages.len());
        let mut y = x.clone();
        let mut i = range.start;
        while i < end {
            let fused = match i + 1 < end && stages[i + 1].is_relu() {
                true => stages[i].forward_then_relu(&y, ctx),
                false => None,
            };
            (y, i) = match fused {
                Some(out) => (out?, i + 2),
                None => (stages[i].forward(&y, ctx)?, i + 1),
            };
        }
        Ok(y)
    }

    /// The layers in the order the forward pass meets them, and what feeds what.
    pub fn graph(&self) -> ModelGraph {
        self.body.graph()
    }

    /// The first stage that contains any of `layers`: everything before it does not change
    /// when they are filtered.
    pub fn first_stage_with(&self, layers: &[&str]) -> usize {
        self.body.stages().iter().position(|s| layers.iter().any(|l| s.contains(l))).unwrap_or(0)
    }

    /// Logits in evaluation mode with the given batch-norm statistics.
    pub fn logits(&self, x: &Tensor, bn: BnMode) -> CResult<Tensor> {
        self.forward(x, &mut ForwardCtx::eval(bn))
    }

    /// Whether the input height and width may differ from the card's (true for
    /// networks that end in global pooling and whose card was only guessed).
    pub fn accepts_any_size(&self) -> bool {
        self.card.architecture != Architecture::Sequential && matches!(self.card_origin, CardOrigin::Detected(_))
    }

    /// All current tensors, by state_dict key.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.params.params().iter().map(|p| (p.key.as_str(), p.var.as_tensor()))
    }

    /// Saves the current weights as safetensors and the card beside them (same stem, `.json`).
    pub fn save(&self, path: &Path) -> Result<()> {
        if self.card.architecture == Architecture::Onnx {
            return Err(EngineError::model(
                "an ONNX network's changed weights cannot be saved (the graph is not written back)",
            ));
        }
        checkpoint::save_safetensors(path, self.tensors())?;
        self.card.save(&ModelCard::beside(path))
    }
}
