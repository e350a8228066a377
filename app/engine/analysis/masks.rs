//! Swapping filtered weights into a loaded network and back, without reloading it.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::engine::error::{EngineError, Result};
use crate::engine::model::Network;
use crate::engine::model::params::overwrite;

/// The tensors one filter acts on together: one layer's weight (and bias, when biases
/// are included), or every filterable tensor for a global sweep.
#[derive(Debug, Clone)]
pub struct FilterSet {
    /// `layer` name or [`GLOBAL`].
    pub name: String,
    pub keys: Vec<String>,
}

impl FilterSet {
    pub fn layer(net: &Network, layer: &str, include_biases: bool) -> Result<Self> {
        let info = net.params.layer(layer).filter(|l| l.filterable).ok_or_else(|| unknown_layer(net, layer))?;
        let mut keys = vec![format!("{}.weight", info.name)];
        let bias = format!("{}.bias", info.name);
        if include_biases && net.params.get(&bias).is_some() {
            keys.push(bias);
        }
        Ok(Self { name: info.name.clone(), keys })
    }

    pub fn global(net: &Network, include_biases: bool) -> Result<Self> {
        let names: Vec<String> = net.params.filterable().map(|l| l.name.clone()).collect();
        let mut keys = Vec::new();
        for n in names {
            keys.extend(Self::layer(net, &n, include_biases)?.keys);
        }
        Ok(Self { name: GLOBAL.into(), keys })
    }
}

/// The name a global sweep's records and scores go by, where a layer's name would be.
pub const GLOBAL: &str = "global";

pub fn unknown_layer(net: &Network, layer: &str) -> EngineError {
    let names: Vec<String> = net.params.filterable().map(|l| format!("`{}`", l.name)).collect();
    EngineError::config(format!("no filterable layer is named `{layer}`; the layers are {}", names.join(", ")))
}

/// Holds the original values of the tensors it masks and puts them back when dropped,
/// so a failed or cancelled job never leaves a network filtered.
pub struct Masker<'a> {
    net: &'a Network,
    originals: HashMap<String, (Tensor, Vec<f32>)>,
    masked: Vec<String>,
}

impl<'a> Masker<'a> {
    pub fn new(net: &'a Network) -> Self {
        Self { net, originals: HashMap::new(), masked: Vec::new() }
    }

    fn original(&mut self, key: &str) -> Result<&(Tensor, Vec<f32>)> {
        if !self.originals.contains_key(key) {
            let p = self.net.params.get(key).ok_or_else(|| EngineError::model(format!("no tensor `{key}`")))?;
            let t = p.var.as_tensor().copy()?.detach();
            let v = t.flatten_all()?.to_vec1::<f32>()?;
            self.originals.insert(key.to_string(), (t, v));
        }
        Ok(&self.originals[key])
    }

    /// The unfiltered values of a set, concatenated in key order.
    pub fn values(&mut self, set: &FilterSet) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for k in &set.keys {
            out.extend_from_slice(&self.original(k)?.1);
        }
        Ok(out)
    }

    /// Multiplies the set's original values by `mask` (concatenated in key order).
    pub fn apply(&mut self, set: &FilterSet, mask: &[f32]) -> Result<()> {
        let mut offset = 0;
        for k in &set.keys {
            let (orig, _) = self.original(k)?;
            let n = orig.elem_count();
            let m = Tensor::from_slice(&mask[offset..offset + n], orig.shape(), orig.device())?;
            let masked = orig.mul(&m)?;
            overwrite(&self.net.params.get(k).expect("checked in original").var, &masked)?;
            offset += n;
            if !self.masked.contains(k) {
                self.masked.push(k.clone());
            }
        }
        Ok(())
    }

    /// Puts every masked tensor back to its original values.
    pub fn restore(&mut self) -> Result<()> {
        for k in std::mem::take(&mut self.masked) {
            let (orig, _) = &self.originals[&k];
            overwrite(&self.net.params.get(&k).expect("masked keys exist").var, orig)?;
        }
        Ok(())
    }
}

impl Drop for Masker<'_> {
    fn drop(&mut self) {
        // Restoring copies into existing storage of the same shape; it cannot fail short of
        // a device error, which there is no one left to report to.
        self.restore().ok();
    }
}
