//! Checkpoint files: safetensors and PyTorch zip archives in, safetensors out.

mod pickle;
mod pth;
mod tensors;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::engine::error::{EngineError, Result, read_file};

/// The named tensors of a checkpoint, after the clean-ups every loader applies
/// (`module.` prefixes stripped, pruning masks folded in).
#[derive(Debug, Default)]
pub struct StateDict {
    tensors: HashMap<String, Tensor>,
    /// Keys in file order, as far as the format keeps one.
    order: Vec<String>,
    /// Things worth telling the user that do not stop the load (NaN weights, ...).
    pub warnings: Vec<String>,
    /// The type each tensor had in the file, where the file said (messages name it).
    file_dtypes: HashMap<String, pickle::StorageDtype>,
}

impl StateDict {
    pub fn from_pairs(pairs: Vec<(String, Tensor)>) -> Self {
        // A key given twice (a crafted pickle) is listed once, where it came first; its last
        // value stands, as a Python dict keeps it.
        let mut seen = std::collections::HashSet::new();
        let order = pairs.iter().filter(|(k, _)| seen.insert(k.clone())).map(|(k, _)| k.clone()).collect();
        Self { tensors: pairs.into_iter().collect(), order, ..Self::default() }
    }

    fn from_file(read: Vec<tensors::Read>) -> Self {
        let file_dtypes = read.iter().map(|(k, _, d)| (k.clone(), *d)).collect();
        let pairs = read.into_iter().map(|(k, t, _)| (k, t)).collect();
        Self { file_dtypes, ..Self::from_pairs(pairs) }
    }

    /// The type `key` had in the file (`int8`, `float16`, ...), else its type here.
    pub fn dtype_name(&self, key: &str) -> Option<String> {
        match self.file_dtypes.get(key) {
            Some(d) => Some(d.name().to_string()),
            None => self.tensors.get(key).map(|t| format!("{:?}", t.dtype()).to_lowercase()),
        }
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str).filter(|k| self.tensors.contains_key(*k))
    }

    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors.get(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.tensors.get(key).map(|t| t.dims())
    }

    /// Removes `prefix` from every key when every key has it (a wrapper module's name,
    /// such as DataParallel's `module.`); returns whether it did.
    pub fn strip_common_prefix(&mut self, prefix: &str) -> bool {
        if self.order.is_empty() || !self.order.iter().all(|k| k.starts_with(prefix) && k.len() > prefix.len()) {
            return false;
        }
        let tensors = std::mem::take(&mut self.tensors);
        self.tensors = tensors.into_iter().map(|(k, v)| (k[prefix.len()..].to_string(), v)).collect();
        self.order = self.order.iter().map(|k| k[prefix.len()..].to_string()).collect();
        let dtypes = std::mem::take(&mut self.file_dtypes);
        self.file_dtypes =
            dtypes.into_iter().map(|(k, v)| (k.strip_prefix(prefix).map(str::to_string).unwrap_or(k), v)).collect();
        true
    }

    pub fn take(&mut self, key: &str) -> Option<Tensor> {
        self.tensors.remove(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.keys().map(|k| (k, &self.tensors[k]))
    }

    /// Strips DataParallel's `module.` prefix and folds `torch.nn.utils.prune`
    /// pairs (`X_orig`, `X_mask`) into `X`; checks floats for NaN and infinity.
    fn tidy(mut self, path: &Path) -> Result<Self> {
        self.strip_common_prefix("module.");
        let origs: Vec<String> = self
            .order
            .iter()
            .filter_map(|k| k.strip_suffix("_orig").map(str::to_string))
            .filter(|base| self.tensors.contains_key(&format!("{base}_mask")))
            .collect();
        for base in origs {
            let (Some(orig), Some(mask)) =
                (self.tensors.remove(&format!("{base}_orig")), self.tensors.remove(&format!("{base}_mask")))
            else {
                continue;
            };
            if mask.dims() != orig.dims() {
                return Err(EngineError::checkpoint(
                    path,
                    format!(
                        "the pruning mask `{base}_mask` has shape {:?} but `{base}_orig` has {:?}",
                        mask.dims(),
                        orig.dims()
                    ),
                ));
            }
            let pruned = orig.mul(&mask.to_dtype(orig.dtype())?)?;
            self.tensors.insert(base.clone(), pruned);
            for key in self.order.iter_mut() {
                if *key == format!("{base}_orig") {
                    *key = base.clone();
                }
            }
        }
        // A file holding both `X` and `X_orig` names `X` twice now: once is enough.
        let mut seen = std::collections::HashSet::new();
        self.order.retain(|k| seen.insert(k.clone()));
        for key in self.order.clone() {
            let Some(t) = self.tensors.get(&key) else { continue };
            if t.dtype() != DType::F32 {
                continue;
            }
            let bad = t.flatten_all()?.to_vec1::<f32>()?.iter().filter(|v| !v.is_finite()).count();
            if bad > 0 {
                self.warnings.push(format!("{key} holds {bad} NaN or infinite values"));
            }
        }
        Ok(self)
    }
}

/// File formats recognised by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Safetensors,
    TorchZip,
    LegacyPickle,
}

fn sniff(path: &Path, bytes: &[u8]) -> Result<Format> {
    if bytes.is_empty() {
        return Err(EngineError::checkpoint(path, "the checkpoint file is empty"));
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Ok(Format::TorchZip);
    }
    // Safetensors first: its header length is little-endian, so one file in 256 starts with
    // the 0x80 that also opens a pickle.
    if bytes.len() >= 9 && bytes[8] == b'{' {
        return Ok(Format::Safetensors);
    }
    if bytes.starts_with(&[0x80, 0x02]) {
        return Ok(Format::LegacyPickle);
    }
    Err(EngineError::checkpoint(
        path,
        "not a checkpoint: expected a safetensors file or a PyTorch .pth/.pt zip archive \
         (the first bytes match neither)",
    ))
}

/// File extensions of the model files the engine opens: checkpoints (whose content it
/// sniffs) and ONNX graphs (told by the extension).
pub const EXTENSIONS: [&str; 4] = ["safetensors", "pth", "pt", "onnx"];

/// Loads every tensor of a checkpoint onto `device`: floating tensors as f32,
/// integer tensors as i64. Never runs code from the file.
pub fn load(path: &Path, device: &Device) -> Result<StateDict> {
    let bytes = read_file(path)?;
    load_bytes(path, &bytes, device)
}

/// Like [`load`], from bytes already in memory; `path` only names them in messages.
pub fn load_bytes(path: &Path, bytes: &[u8], device: &Device) -> Result<StateDict> {
    let pairs = match sniff(path, bytes)? {
        Format::Safetensors => tensors::read_safetensors(bytes, device)
            .map_err(|msg| EngineError::checkpoint(path, format!("invalid safetensors file: {msg}")))?,
        Format::TorchZip => pth::read_zip(bytes, device).map_err(|msg| EngineError::checkpoint(path, msg))?,
        Format::LegacyPickle => {
            return Err(EngineError::checkpoint(
                path,
                "this is PyTorch's legacy (pre-1.6, non-zip) checkpoint format, which is not \
                 supported; re-save it with a recent PyTorch: \
                 torch.save(torch.load(old, weights_only=True), new)",
            ));
        }
    };
    if pairs.is_empty() {
        return Err(EngineError::checkpoint(path, "the checkpoint holds no tensors"));
    }
    StateDict::from_file(pairs).tidy(path)
}

/// Writes tensors as safetensors, atomically (a temporary file renamed into place).
pub fn save_safetensors<'a>(path: &Path, tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors.into_iter().map(|(k, t)| (k.to_string(), t.clone())).collect();
    let bytes = tensors::write_safetensors(&map).map_err(|msg| EngineError::checkpoint(path, msg))?;
    crate::engine::fsutil::write_atomic(path, &bytes)
}
