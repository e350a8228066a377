//! Named parameters of a built network, and the loader that hands them to layer
//! constructors while checking every shape against what the architecture expects.

use std::collections::HashMap;

use candle_core::{DType, Tensor, Var};
use serde::Serialize;

use super::kernels;
use crate::engine::checkpoint::StateDict;
use crate::engine::error::{EngineError, Result};

/// What a tensor is for. Only `Weight` of convolutions and linear layers is filterable by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Weight,
    Bias,
    BnWeight,
    BnBias,
    RunningMean,
    RunningVar,
    BatchCount,
}

impl Role {
    /// Learned by gradient descent (running statistics and counters are not).
    pub fn trainable(self) -> bool {
        matches!(self, Role::Weight | Role::Bias | Role::BnWeight | Role::BnBias)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    Conv2d,
    Linear,
    BatchNorm2d,
}

impl LayerKind {
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Conv2d => "conv2d",
            LayerKind::Linear => "linear",
            LayerKind::BatchNorm2d => "batchnorm2d",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Param {
    pub key: String,
    pub var: Var,
    pub role: Role,
}

/// Overwrites a parameter's values in place and tells the kernels, which keep rearranged
/// copies of parameters between calls. The one way to change a `Var`: `clippy.toml`
/// forbids `Var::set` elsewhere.
pub fn overwrite(var: &Var, value: &Tensor) -> candle_core::Result<()> {
    #[allow(clippy::disallowed_methods)]
    let set = var.set(value);
    kernels::params_changed();
    set
}

/// A parameterised layer: its state_dict prefix, kind and weight shape.
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    pub name: String,
    pub kind: LayerKind,
    pub shape: Vec<usize>,
    /// Elements in all of this layer's tensors that are learned (weight and bias).
    pub parameters: usize,
    /// Convolution and linear weights are what the synaptic filters act on.
    pub filterable: bool,
}

/// Every tensor of a network in module order, each held as a `Var` so filtering and
/// training change values in place and the built layers see them at once.
#[derive(Debug, Default)]
pub struct ParamStore {
    params: Vec<Param>,
    index: HashMap<String, usize>,
    layers: Vec<LayerInfo>,
}

impl ParamStore {
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    pub fn get(&self, key: &str) -> Option<&Param> {
        self.index.get(key).map(|&i| &self.params[i])
    }

    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    pub fn layer(&self, name: &str) -> Option<&LayerInfo> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// Filterable layers in module order.
    pub fn filterable(&self) -> impl Iterator<Item = &LayerInfo> {
        self.layers.iter().filter(|l| l.filterable)
    }

    pub fn trainable(&self) -> impl Iterator<Item = &Param> {
        self.params.iter().filter(|p| p.role.trainable())
    }

    pub fn parameter_count(&self) -> usize {
        self.trainable().map(|p| p.var.elem_count()).sum()
    }

    fn push(&mut self, key: &str, tensor: Tensor, role: Role) -> Result<Tensor> {
        let var = Var::from_tensor(&tensor)?;
        let t = var.as_tensor().clone();
        self.index.insert(key.to_string(), self.params.len());
        self.params.push(Param { key: key.to_string(), var, role });
        Ok(t)
    }
}

/// How a shape is constrained when a constructor asks for a tensor.
#[derive(Debug, Clone, Copy)]
pub enum Expect<'a> {
    Exact(&'a [usize]),
    Rank(usize),
}

/// Hands checkpoint tensors to layer constructors, checking shapes and recording module order.
pub struct Loader {
    state: StateDict,
    store: ParamStore,
    notes: Vec<String>,
}

fn shape_str(s: &[usize]) -> String {
    format!("[{}]", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

impl Loader {
    pub fn new(state: StateDict) -> Self {
        Self { state, store: ParamStore::default(), notes: Vec::new() }
    }

    pub fn state(&self) -> &StateDict {
        &self.state
    }

    pub fn has(&self, key: &str) -> bool {
        self.state.contains(key)
    }

    pub fn shape(&self, key: &str) -> Result<Vec<usize>> {
        self.state.shape(key).map(<[usize]>::to_vec).ok_or_else(|| missing(key, None))
    }

    /// Takes `key` out of the checkpoint as a parameter of the given role.
    pub fn tensor(&mut self, key: &str, role: Role, expect: Expect) -> Result<Tensor> {
        let Some(t) = self.state.get(key) else {
            let want = match expect {
                Expect::Exact(s) => Some(s),
                Expect::Rank(_) => None,
            };
            return Err(missing(key, want));
        };
        let ok = match expect {
            Expect::Exact(s) => t.dims() == s,
            Expect::Rank(r) => t.rank() == r,
        };
        if !ok {
            let want = match expect {
                Expect::Exact(s) => shape_str(s),
                Expect::Rank(r) => format!("a {r}-dimensional tensor"),
            };
            return Err(EngineError::model(format!(
                "`{key}` has shape {} in the checkpoint but the architecture expects {want}",
                shape_str(t.dims()),
            )));
        }
        let wanted = if role == Role::BatchCount { DType::I64 } else { DType::F32 };
        if t.dtype() != wanted {
            // Floats of any width arrive as float32 and integers as int64; name what the file held.
            let found = self.state.dtype_name(key).unwrap_or_default();
            let expected = if wanted == DType::F32 { "a floating-point type" } else { "an integer type" };
            return Err(EngineError::model(format!("`{key}` is stored as {found}, expected {expected}")));
        }
        let t = self.state.take(key).expect("checked above");
        self.store.push(key, t, role)
    }

    /// The optional tensor `key`, if the checkpoint has it.
    pub fn optional(&mut self, key: &str, role: Role, expect: Expect) -> Result<Option<Tensor>> {
        if self.has(key) { self.tensor(key, role, expect).map(Some) } else { Ok(None) }
    }

    /// Drops every tensor under `prefix.`: a module that the definition builds but whose
    /// forward pass never calls. Returns how many tensors went.
    pub fn discard(&mut self, prefix: &str) -> usize {
        let dotted = format!("{prefix}.");
        let keys: Vec<String> = self.state.keys().filter(|k| k.starts_with(&dotted)).map(str::to_string).collect();
        for k in &keys {
            self.state.take(k);
        }
        keys.len()
    }

    /// A finding for the user that does not stop loading.
    pub fn note(&mut self, message: String) {
        self.notes.push(message);
    }

    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    pub fn record_layer(&mut self, name: &str, kind: LayerKind, shape: &[usize], parameters: usize) {
        let filterable = matches!(kind, LayerKind::Conv2d | LayerKind::Linear);
        self.store.layers.push(LayerInfo {
            name: name.to_string(),
            kind,
            shape: shape.to_vec(),
            parameters,
            filterable,
        });
    }

    /// Ends loading; tensors the architecture did not use are an error, so a wrong
    /// architecture never half-loads.
    pub fn finish(self) -> Result<ParamStore> {
        let leftover: Vec<String> = self.state.keys().map(|k| format!("`{k}`")).collect();
        if !leftover.is_empty() {
            let shown = leftover.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
            let more = if leftover.len() > 8 { format!(" and {} more", leftover.len() - 8) } else { String::new() };
            return Err(EngineError::model(format!(
                "the checkpoint has tensors the architecture does not use: {shown}{more}"
            )));
        }
        Ok(self.store)
    }
}

fn missing(key: &str, want: Option<&[usize]>) -> EngineError {
    let shape = want.map(|s| format!(" (expected shape {})", shape_str(s))).unwrap_or_default();
    EngineError::model(format!("the checkpoint lacks `{key}`{shape}"))
}
