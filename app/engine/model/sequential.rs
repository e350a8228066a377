//! A network declared layer by layer in its model card.

use candle_core::{Result as CResult, Tensor};

use super::graph::{GraphBuilder, NodeId};
use super::layers::{BatchNorm2d, Conv2d, ConvGeometry, ForwardCtx, Linear, dropout};
use super::ops::{self, Axis, Pool2d};
use super::params::Loader;
use super::{Body, Stage};
use crate::engine::card::{LayerSpec, Pair};
use crate::engine::error::{EngineError, Result};

enum Step {
    Conv(Conv2d),
    Linear(Linear),
    Bn(BatchNorm2d),
    Relu,
    Tanh,
    Sigmoid,
    MaxPool(Pool2d),
    AvgPool(Pool2d),
    Adaptive(usize, usize),
    Dropout(f64),
    Flatten,
}

pub struct Sequential {
    steps: Vec<Step>,
}

/// The activation shape between layers, for checking the card against the weights.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Map(usize, usize, usize),
    Flat(usize),
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Map(c, h, w) => write!(f, "[{c}, {h}, {w}]"),
            Shape::Flat(n) => write!(f, "[{n}]"),
        }
    }
}

fn pool(kernel: Pair, stride: Option<Pair>, padding: Pair, ceil_mode: bool) -> Pool2d {
    let [kh, kw] = kernel.hw();
    let [sh, sw] = stride.map_or([kh, kw], Pair::hw);
    let [ph, pw] = padding.hw();
    Pool2d {
        h: Axis { kernel: kh, stride: sh, padding: ph },
        w: Axis { kernel: kw, stride: sw, padding: pw },
        ceil_mode,
    }
}

impl Sequential {
    pub fn load(l: &mut Loader, specs: &[LayerSpec], input: [usize; 3]) -> Result<Self> {
        let mut shape = Shape::Map(input[0], input[1], input[2]);
        let mut steps = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let at = |what: String| EngineError::model(format!("layer {i} ({}): {what}", kind_name(spec)));
            let map = |shape: Shape| match shape {
                Shape::Map(c, h, w) => Ok((c, h, w)),
                Shape::Flat(_) => Err(at(format!("needs a [C, H, W] map but receives {shape}"))),
            };
            let step = match spec {
                LayerSpec::Conv2d { key, stride, padding, dilation, groups, bias, .. } => {
                    let (c, h, w) = map(shape)?;
                    let [sh, sw] = stride.hw();
                    let geo = ConvGeometry {
                        stride: [sh, sw],
                        padding: padding.hw(),
                        dilation: dilation.hw(),
                        groups: *groups,
                    };
                    let conv = Conv2d::load(l, key, geo, Some(c))?;
                    check_bias(key, *bias, conv.has_bias()).map_err(at)?;
                    let (oh, ow) = conv
                        .output_hw(h, w)
                        .ok_or_else(|| at(format!("kernel {:?} does not fit the {h}x{w} input", conv.kernel())))?;
                    shape = Shape::Map(conv.out_channels(), oh, ow);
                    Step::Conv(conv)
                }
                LayerSpec::Linear { key, bias, .. } => {
                    let n = match shape {
                        Shape::Flat(n) => n,
                        Shape::Map(..) => {
                            return Err(at(format!(
                                "receives the map {shape}; add {{\"type\": \"flatten\"}} before it"
                            )));
                        }
                    };
                    let lin = Linear::load(l, key, Some(n))?;
                    check_bias(key, *bias, lin.has_bias()).map_err(at)?;
                    shape = Shape::Flat(lin.out_features());
                    Step::Linear(lin)
                }
                LayerSpec::Batchnorm2d { key, eps, momentum } => {
                    let (c, _, _) = map(shape)?;
                    Step::Bn(BatchNorm2d::load(l, key, c, *eps, *momentum)?)
                }
                LayerSpec::Relu {} => Step::Relu,
                LayerSpec::Tanh {} => Step::Tanh,
                LayerSpec::Sigmoid {} => Step::Sigmoid,
                LayerSpec::Maxpool2d { kernel, stride, padding, ceil_mode }
                | LayerSpec::Avgpool2d { kernel, stride, padding, ceil_mode } => {
                    let (c, h, w) = map(shape)?;
                    let p = pool(*kernel, *stride, *padding, *ceil_mode);
                    let (oh, ow) = p
                        .output(h, w)
                        .ok_or_else(|| at(format!("window {:?} does not fit the {h}x{w} input", kernel.hw())))?;
                    shape = Shape::Map(c, oh, ow);
                    if matches!(spec, LayerSpec::Maxpool2d { .. }) { Step::MaxPool(p) } else { Step::AvgPool(p) }
                }
                LayerSpec::AdaptiveAvgpool2d { output } => {
                    let (c, _, _) = map(shape)?;
                    let [oh, ow] = output.hw();
                    shape = Shape::Map(c, oh, ow);
                    Step::Adaptive(oh, ow)
                }
                LayerSpec::Dropout { p } => {
                    if !(0.0..1.0).contains(p) {
                        return Err(at(format!("p must be in [0, 1), found {p}")));
                    }
                    Step::Dropout(*p)
                }
                LayerSpec::Flatten {} => {
                    shape = match shape {
                        Shape::Map(c, h, w) => Shape::Flat(c * h * w),
                        flat => flat,
                    };
                    Step::Flatten
                }
            };
            steps.push(step);
        }
        match shape {
            Shape::Flat(_) => {}
            // A last map of (K, 1, 1) is flattened into the class scores.
            Shape::Map(_, 1, 1) => steps.push(Step::Flatten),
            other => {
                return Err(EngineError::model(format!(
                    "the last layer gives {other}, not class scores; end the card with a flatten and a linear layer"
                )));
            }
        };
        Ok(Self { steps })
    }
}

fn kind_name(spec: &LayerSpec) -> String {
    serde_json::to_value(spec)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str().map(str::to_string)))
        .unwrap_or_default()
}

impl Stage for Step {
    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx) -> CResult<Tensor> {
        match self {
            Step::Conv(c) => c.forward(x, ctx),
            Step::Linear(l) => l.forward(x, ctx),
            Step::Bn(b) => b.forward(x, ctx),
            Step::Relu => ops::relu(x),
            Step::Tanh => x.tanh(),
            Step::Sigmoid => candle_nn::ops::sigmoid(x),
            Step::MaxPool(p) => ops::max_pool2d(x, p),
            Step::AvgPool(p) => ops::avg_pool2d(x, p),
            Step::Adaptive(h, w) => ops::adaptive_avg_pool2d(x, *h, *w),
            Step::Dropout(p) => dropout(x, *p, ctx),
            Step::Flatten => ops::flatten(x),
        }
    }

    fn forward_then_relu(&self, x: &Tensor, ctx: &mut ForwardCtx) -> Option<CResult<Tensor>> {
        match self {
            Step::Conv(c) => c.forward_relu(x, ctx),
            _ => None,
        }
    }

    fn is_relu(&self) -> bool {
        matches!(self, Step::Relu)
    }

    fn contains(&self, name: &str) -> bool {
        match self {
            Step::Conv(c) => c.key == name,
            Step::Linear(l) => l.key == name,
            Step::Bn(b) => b.key == name,
            _ => false,
        }
    }

    fn describe(&self, g: &mut GraphBuilder, x: NodeId) -> NodeId {
        match self {
            Step::Conv(c) => c.describe(g, x),
            Step::Linear(l) => l.describe(g, x),
            Step::Bn(b) => b.describe(g, x),
            _ => x,
        }
    }
}

impl Body for Sequential {
    fn stages(&self) -> Vec<&dyn Stage> {
        self.steps.iter().map(|s| s as &dyn Stage).collect()
    }
}

/// The card and the checkpoint agree on a layer's bias, in both directions: a bias the
/// card promises but the file lacks, or one the card denies but the file holds, would
/// otherwise give other numbers than the network the user trained.
fn check_bias(key: &str, card_says: bool, checkpoint_has: bool) -> std::result::Result<(), String> {
    match (card_says, checkpoint_has) {
        (true, false) => Err(format!("the card gives `{key}` a bias but the checkpoint lacks `{key}.bias`")),
        (false, true) => {
            Err(format!("the card says `{key}` has no bias (\"bias\": false) but the checkpoint holds `{key}.bias`"))
        }
        _ => Ok(()),
    }
}
