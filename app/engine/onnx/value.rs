//! Values flowing through an ONNX graph: float tensors on the network's device (the
//! activations, differentiable) and small integer tensors kept on the host (shapes,
//! indices, axes), decoded from `TensorProto`s with every length checked before anything
//! is allocated.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::proto::{EXTERNAL, TensorProto, data_type as dt};

/// Elements one tensor in a file may hold (4 GiB of float32).
const MAX_ELEMENTS: usize = 1 << 30;

#[derive(Debug, Clone)]
pub enum Value {
    Float(Tensor),
    Int(Ints),
}

/// An integer tensor on the host, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Ints {
    pub dims: Vec<usize>,
    pub data: Vec<i64>,
}

impl Ints {
    pub fn vector(data: Vec<i64>) -> Self {
        Self { dims: vec![data.len()], data }
    }

    pub fn scalar(v: i64) -> Self {
        Self { dims: Vec::new(), data: vec![v] }
    }

    pub fn to_float(&self, device: &Device) -> candle_core::Result<Tensor> {
        let v: Vec<f32> = self.data.iter().map(|&x| x as f32).collect();
        Tensor::from_vec(v, self.dims.as_slice(), device)
    }
}

impl Value {
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Value::Float(t) => t.dims().to_vec(),
            Value::Int(i) => i.dims.clone(),
        }
    }

    /// The value as a float tensor (integers converted).
    pub fn float(&self, device: &Device) -> candle_core::Result<Tensor> {
        match self {
            Value::Float(t) => Ok(t.clone()),
            Value::Int(i) => i.to_float(device),
        }
    }

    /// The first element as a float (None for an empty tensor): scalar operands such as
    /// bounds, exponents and fill values.
    pub fn first(&self) -> std::result::Result<Option<f32>, String> {
        match self {
            Value::Int(i) => Ok(i.data.first().map(|&v| v as f32)),
            Value::Float(t) if t.elem_count() == 0 => Ok(None),
            Value::Float(t) => {
                let first = t.flatten_all().and_then(|t| t.get(0)).and_then(|t| t.to_dtype(DType::F32)?.to_scalar());
                first.map(Some).map_err(|e| e.to_string())
            }
        }
    }

    /// The value as integers: shapes, axes and indices must be integer tensors; a float
    /// tensor of whole numbers (a constant folded as float) is accepted.
    pub fn ints(&self) -> std::result::Result<Ints, String> {
        match self {
            Value::Int(i) => Ok(i.clone()),
            Value::Float(t) => {
                if t.elem_count() > 1 << 16 {
                    return Err(format!("a float tensor of {:?} where integers were expected", t.dims()));
                }
                let v: Vec<f32> =
                    t.flatten_all().and_then(|t| t.to_dtype(DType::F32)?.to_vec1()).map_err(|e| e.to_string())?;
                if v.iter().any(|x| x.fract() != 0.0 || !x.is_finite()) {
                    return Err("a float tensor where integers were expected".into());
                }
                Ok(Ints { dims: t.dims().to_vec(), data: v.iter().map(|&x| x as i64).collect() })
            }
        }
    }
}

/// The shape of a `TensorProto`, checked: no negative size, at most [`MAX_ELEMENTS`].
pub fn proto_dims(t: &TensorProto) -> std::result::Result<(Vec<usize>, usize), String> {
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("a negative size {d}")))
        .collect::<std::result::Result<_, _>>()?;
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_ELEMENTS);
    let count = count.ok_or_else(|| format!("shape {dims:?} holds more than {MAX_ELEMENTS} elements"))?;
    Ok((dims, count))
}

fn element_size(data_type: i32) -> Option<usize> {
    match data_type {
        dt::FLOAT | dt::INT32 | dt::UINT32 => Some(4),
        dt::INT64 | dt::DOUBLE | dt::UINT64 => Some(8),
        dt::FLOAT16 | dt::INT16 | dt::UINT16 => Some(2),
        dt::UINT8 | dt::INT8 | dt::BOOL => Some(1),
        _ => None,
    }
}

fn type_name(data_type: i32) -> String {
    let name = match data_type {
        0 => "undefined",
        8 => "string",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        _ => return format!("type {data_type}"),
    };
    name.to_string()
}

/// Decodes a tensor; `folder` is the model's folder, where external data must lie.
pub fn decode(t: &TensorProto, folder: &Path, device: &Device) -> std::result::Result<Value, String> {
    let (dims, count) = proto_dims(t)?;
    let size = element_size(t.data_type)
        .ok_or_else(|| format!("its element type ({}) is not supported", type_name(t.data_type)))?;
    let external;
    let raw: Option<&[u8]> = if t.data_location == EXTERNAL {
        external = read_external(t, folder, count * size)?;
        Some(&external)
    } else if !t.raw_data.is_empty() || count == 0 {
        Some(&t.raw_data)
    } else {
        None
    };
    if let Some(raw) = raw
        && raw.len() != count * size
    {
        return Err(format!("it has {} bytes of data for shape {dims:?} ({} expected)", raw.len(), count * size));
    }
    let typed_len = match t.data_type {
        dt::FLOAT => t.float_data.len(),
        dt::DOUBLE => t.double_data.len(),
        dt::INT64 => t.int64_data.len(),
        dt::UINT32 | dt::UINT64 => t.uint64_data.len(),
        _ => t.int32_data.len(),
    };
    if raw.is_none() && typed_len != count {
        return Err(format!("it has {typed_len} values for shape {dims:?} ({count} expected)"));
    }
    let floats =
        |v: Vec<f32>| Tensor::from_vec(v, dims.as_slice(), device).map(Value::Float).map_err(|e| e.to_string());
    let ints = |data: Vec<i64>| Ok(Value::Int(Ints { dims: dims.clone(), data }));
    match (t.data_type, raw) {
        (dt::FLOAT, Some(r)) => {
            floats(r.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        }
        (dt::FLOAT, None) => floats(t.float_data.clone()),
        (dt::DOUBLE, Some(r)) => {
            floats(r.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or_default()) as f32).collect())
        }
        (dt::DOUBLE, None) => floats(t.double_data.iter().map(|&v| v as f32).collect()),
        (dt::FLOAT16, Some(r)) => {
            floats(r.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect())
        }
        // float16 values in int32_data hold the bits in the low half.
        (dt::FLOAT16, None) => floats(t.int32_data.iter().map(|&v| half::f16::from_bits(v as u16).to_f32()).collect()),
        (dt::INT64, Some(r)) => {
            ints(r.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default())).collect())
        }
        (dt::INT64, None) => ints(t.int64_data.clone()),
        (dt::INT32, Some(r)) => {
            ints(r.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect())
        }
        (dt::INT8, Some(r)) => ints(r.iter().map(|&b| b as i8 as i64).collect()),
        (dt::INT16, Some(r)) => ints(r.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as i64).collect()),
        (dt::UINT16, Some(r)) => ints(r.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as i64).collect()),
        (dt::UINT32, Some(r)) => {
            ints(r.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect())
        }
        (dt::UINT64, Some(r)) => r
            .chunks_exact(8)
            .map(|b| i64::try_from(u64::from_le_bytes(b.try_into().unwrap_or_default())))
            .collect::<std::result::Result<Vec<i64>, _>>()
            .map_err(|_| "a uint64 value beyond int64's range".to_string())
            .and_then(ints),
        (dt::UINT32 | dt::UINT64, None) => t
            .uint64_data
            .iter()
            .map(|&v| i64::try_from(v))
            .collect::<std::result::Result<Vec<i64>, _>>()
            .map_err(|_| "a uint64 value beyond int64's range".to_string())
            .and_then(ints),
        (dt::UINT8 | dt::BOOL, Some(r)) => ints(r.iter().map(|&b| b as i64).collect()),
        (_, None) => ints(t.int32_data.iter().map(|&v| v as i64).collect()),
        (other, Some(_)) => Err(format!("its element type ({}) is not supported", type_name(other))),
    }
}

/// Reads `length` bytes of external data, refusing any location outside `folder`.
fn read_external(t: &TensorProto, folder: &Path, length: usize) -> std::result::Result<Vec<u8>, String> {
    let entry = |key: &str| t.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str());
    let location = entry("location").ok_or("its data is external but names no `location`")?;
    let relative = Path::new(location);
    let escapes = relative.is_absolute()
        || relative.components().any(|c| !matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
    if escapes {
        return Err(format!("its external data `{location}` lies outside the model's folder, which is refused"));
    }
    let number = |key: &str| -> std::result::Result<u64, String> {
        entry(key).map_or(Ok(0), |v| v.parse().map_err(|_| format!("external data `{key}` is not a number: `{v}`")))
    };
    let (offset, declared) = (number("offset")?, number("length")?);
    if declared != 0 && declared != length as u64 {
        return Err(format!("its external data is {declared} bytes long but the shape needs {length}"));
    }
    let path = folder.join(relative);
    // A link inside the folder may still point out of it.
    let (real, root) = (path.canonicalize(), folder.canonicalize());
    match (&real, &root) {
        (Ok(p), Ok(r)) if p.starts_with(r) => {}
        (Err(e), _) => return Err(format!("its external data `{location}` cannot be opened: {e}")),
        _ => return Err(format!("its external data `{location}` lies outside the model's folder, which is refused")),
    }
    let mut file = std::fs::File::open(&path).map_err(|e| format!("external data `{location}`: {e}"))?;
    let available = file.metadata().map(|m| m.len()).unwrap_or(0);
    if offset.checked_add(length as u64).is_none_or(|end| end > available) {
        return Err(format!(
            "its external data needs bytes {offset}..{} of `{location}`, which has {available}",
            offset.saturating_add(length as u64)
        ));
    }
    file.seek(SeekFrom::Start(offset)).map_err(|e| format!("external data `{location}`: {e}"))?;
    let mut bytes = vec![0u8; length];
    file.read_exact(&mut bytes).map_err(|e| format!("external data `{location}`: {e}"))?;
    Ok(bytes)
}
