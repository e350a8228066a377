//! PyTorch `torch.save` zip archives: `<folder>/data.pkl` plus one file per storage.

use std::io::{Cursor, Read};

use candle_core::Device;

use super::pickle::{TensorRef, Value, unpickle};
use super::tensors::decode;

/// Keys under which training scripts commonly nest the model's state_dict.
const NESTED_KEYS: [&str; 3] = ["state_dict", "model_state_dict", "model"];

pub(super) fn read_zip(bytes: &[u8], device: &Device) -> Result<Vec<super::tensors::Read>, String> {
    let mut zip =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("not a readable PyTorch zip archive ({e})"))?;
    let names: Vec<String> = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the zip archive has an unreadable entry name ({e})"))?;
    let pickles: Vec<&String> = names.iter().filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl")).collect();
    let pkl_name = match pickles.as_slice() {
        [one] => (*one).clone(),
        [] => return Err("the zip archive has no data.pkl, so it is not a torch.save checkpoint".into()),
        many => {
            let list: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
            return Err(format!("the zip archive has several pickles ({}); expected one", list.join(", ")));
        }
    };
    let folder = pkl_name.strip_suffix("data.pkl").unwrap_or_default().to_string();
    if let Ok(mut f) = zip.by_name(&format!("{folder}byteorder")) {
        let mut order = String::new();
        f.read_to_string(&mut order).ok();
        if order.trim() == "big" {
            return Err("the checkpoint was written on a big-endian machine, which is not supported".into());
        }
    }
    let pickle_bytes = read_entry(&mut zip, &pkl_name, MAX_PICKLE_BYTES)?;
    let root = unpickle(&pickle_bytes).map_err(|e| format!("cannot read the checkpoint's pickle: {e}"))?;
    let entries = find_state_dict(root)?;
    // What the storages will take, checked against the machine before any is inflated.
    let mut sizes = Vec::with_capacity(entries.len());
    for (key, tensor) in &entries {
        let bytes = tensor.storage_numel.checked_mul(tensor.dtype.size_in_bytes()).ok_or_else(|| {
            format!("tensor {key}: its storage of {} elements cannot be held in memory", tensor.storage_numel)
        })?;
        sizes.push(bytes as u64);
    }
    crate::engine::fsutil::check_fits_in_memory(sizes.iter().sum(), "the checkpoint's tensors")?;
    let mut out = Vec::with_capacity(entries.len());
    for ((key, tensor), expected) in entries.into_iter().zip(sizes) {
        // Never inflated past the size the pickle announces (a zip bomb stops there).
        let data = read_entry(&mut zip, &format!("{folder}data/{}", tensor.storage_key), expected)?;
        if (data.len() as u64) < expected {
            return Err(format!("tensor {key}: its storage is truncated ({} bytes, {expected} expected)", data.len()));
        }
        let t = decode(tensor.dtype, &data, &tensor.size, &tensor.stride, tensor.offset, device)
            .map_err(|e| format!("tensor {key}: {e}"))?;
        out.push((key, t, tensor.dtype));
    }
    Ok(out)
}

/// A pickle of a state_dict is a few bytes per tensor; more is not a checkpoint.
const MAX_PICKLE_BYTES: u64 = 256 << 20;

/// An archive entry, inflated to at most `limit` bytes (what the entry should hold): the
/// size the zip header declares is not trusted for allocating, and a longer stream is cut.
fn read_entry(zip: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str, limit: u64) -> Result<Vec<u8>, String> {
    let f = zip.by_name(name).map_err(|e| format!("the archive lacks {name} ({e})"))?;
    let mut buf = Vec::with_capacity(f.size().min(limit).min(1 << 26) as usize);
    f.take(limit).read_to_end(&mut buf).map_err(|e| format!("cannot read {name} from the archive ({e})"))?;
    Ok(buf)
}

fn tensors_of(dict: &[(Value, Value)]) -> Vec<(String, TensorRef)> {
    dict.iter()
        .filter_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => Some((k.clone(), t.clone())),
            _ => None,
        })
        .collect()
}

/// The state_dict is either the top-level dict or a dict nested under a common key.
fn find_state_dict(root: Value) -> Result<Vec<(String, TensorRef)>, String> {
    let Value::Dict(top) = root else {
        return Err("the checkpoint does not hold a dict of tensors (was a whole model pickled? \
             save model.state_dict() instead)"
            .into());
    };
    let direct = tensors_of(&top);
    if !direct.is_empty() {
        return Ok(direct);
    }
    for wanted in NESTED_KEYS {
        for (k, v) in &top {
            if let (Value::Str(k), Value::Dict(inner)) = (k, v) {
                let found = tensors_of(inner);
                if k == wanted && !found.is_empty() {
                    return Ok(found);
                }
            }
        }
    }
    let keys: Vec<String> = top.iter().filter_map(|(k, _)| k.as_str().map(|s| format!("`{s}`"))).collect();
    Err(format!(
        "no tensors found: the top-level dict has keys {} and none of {} holds a state_dict",
        if keys.is_empty() { "(none)".to_string() } else { keys.join(", ") },
        NESTED_KEYS.map(|k| format!("`{k}`")).join(", ")
    ))
}
