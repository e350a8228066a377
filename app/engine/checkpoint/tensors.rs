//! Raw little-endian bytes to candle tensors, and the safetensors container.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use safetensors::{Dtype as StDtype, SafeTensors};

use super::pickle::StorageDtype;

/// Decodes `numel` little-endian elements starting at element `offset` with the given
/// strides into a row-major tensor: floats become f32, integers i64, bools u8.
pub(super) fn decode(
    dtype: StorageDtype,
    bytes: &[u8],
    size: &[usize],
    stride: &[usize],
    offset: usize,
    device: &Device,
) -> Result<Tensor, String> {
    let elem = dtype.size_in_bytes();
    let available = bytes.len() / elem;
    // A view larger than its storage repeats elements (zero strides): a state_dict never
    // does, and a hostile file would make a small storage fill the memory.
    let numel =
        size.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= available).ok_or_else(|| {
            format!("the tensor's shape {size:?} asks for more elements than its storage holds ({available})")
        })?;
    if stride.len() != size.len() {
        return Err(format!("the tensor has {} sizes but {} strides", size.len(), stride.len()));
    }
    // Element index of every output element, in row-major order of `size`.
    let mut indices = Vec::with_capacity(numel);
    if numel > 0 {
        let mut counter = vec![0usize; size.len()];
        loop {
            let idx = offset + counter.iter().zip(stride).map(|(c, s)| c * s).sum::<usize>();
            if idx >= available {
                return Err(format!("tensor data is truncated: element {idx} needed, the storage holds {available}"));
            }
            indices.push(idx);
            let mut d = size.len();
            loop {
                if d == 0 {
                    break;
                }
                d -= 1;
                counter[d] += 1;
                if counter[d] < size[d] {
                    break;
                }
                counter[d] = 0;
            }
            if indices.len() == numel {
                break;
            }
        }
    }
    let at = |i: usize| &bytes[i * elem..(i + 1) * elem];
    let shape = size.to_vec();
    let tensor = match dtype {
        StorageDtype::F32 | StorageDtype::F64 | StorageDtype::F16 | StorageDtype::BF16 => {
            let values: Vec<f32> = indices
                .iter()
                .map(|&i| {
                    let b = at(i);
                    match dtype {
                        StorageDtype::F32 => f32::from_le_bytes(b.try_into().expect("4 bytes")),
                        StorageDtype::F64 => f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
                        StorageDtype::F16 => half::f16::from_le_bytes(b.try_into().expect("2 bytes")).to_f32(),
                        _ => half::bf16::from_le_bytes(b.try_into().expect("2 bytes")).to_f32(),
                    }
                })
                .collect();
            Tensor::from_vec(values, shape, device)
        }
        StorageDtype::Bool | StorageDtype::U8 => {
            let values: Vec<u8> = indices.iter().map(|&i| at(i)[0]).collect();
            Tensor::from_vec(values, shape, device)
        }
        _ => {
            let values: Vec<i64> = indices
                .iter()
                .map(|&i| {
                    let b = at(i);
                    match dtype {
                        StorageDtype::I64 => i64::from_le_bytes(b.try_into().expect("8 bytes")),
                        StorageDtype::I32 => i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64,
                        StorageDtype::I16 => i16::from_le_bytes(b.try_into().expect("2 bytes")) as i64,
                        _ => b[0] as i8 as i64,
                    }
                })
                .collect();
            Tensor::from_vec(values, shape, device)
        }
    };
    tensor.map_err(|e| e.to_string())
}

/// A tensor read from a file: its name, its values (floats as float32, integers as int64) and
/// the type the file stored it in, which messages name.
pub(super) type Read = (String, Tensor, StorageDtype);

pub(super) fn read_safetensors(bytes: &[u8], device: &Device) -> Result<Vec<Read>, String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut named: Vec<(usize, String, Tensor, StorageDtype)> = Vec::new();
    for (name, view) in st.tensors() {
        let dtype = match view.dtype() {
            StDtype::F32 => StorageDtype::F32,
            StDtype::F64 => StorageDtype::F64,
            StDtype::F16 => StorageDtype::F16,
            StDtype::BF16 => StorageDtype::BF16,
            StDtype::I64 => StorageDtype::I64,
            StDtype::I32 => StorageDtype::I32,
            StDtype::I16 => StorageDtype::I16,
            StDtype::I8 => StorageDtype::I8,
            StDtype::U8 => StorageDtype::U8,
            StDtype::BOOL => StorageDtype::Bool,
            other => return Err(format!("tensor {name} has unsupported dtype {other:?}")),
        };
        let shape = view.shape().to_vec();
        let stride = row_major_strides(&shape);
        let data = view.data();
        let tensor = decode(dtype, data, &shape, &stride, 0, device).map_err(|e| format!("tensor {name}: {e}"))?;
        // Keep file order: the address of each tensor's bytes inside the buffer.
        let addr = data.as_ptr() as usize - bytes.as_ptr() as usize;
        named.push((addr, name, tensor, dtype));
    }
    named.sort_by_key(|(addr, name, _, _)| (*addr, name.clone()));
    Ok(named.into_iter().map(|(_, n, t, d)| (n, t, d)).collect())
}

pub(super) fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut stride = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        stride[d] = stride[d + 1] * shape[d + 1];
    }
    stride
}

pub(super) fn write_safetensors(tensors: &HashMap<String, Tensor>) -> Result<Vec<u8>, String> {
    let mut owned: Vec<(String, StDtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in tensors {
        let t = t.to_device(&Device::Cpu).map_err(|e| e.to_string())?;
        let flat = t.flatten_all().map_err(|e| e.to_string())?;
        let (dtype, data) = match t.dtype() {
            DType::F32 => (StDtype::F32, bytes_of(flat.to_vec1::<f32>().map_err(|e| e.to_string())?)),
            DType::I64 => (StDtype::I64, bytes_of(flat.to_vec1::<i64>().map_err(|e| e.to_string())?)),
            DType::U8 => (StDtype::U8, flat.to_vec1::<u8>().map_err(|e| e.to_string())?),
            other => return Err(format!("cannot save tensor {name} of dtype {other:?}")),
        };
        owned.push((name.clone(), dtype, t.dims().to_vec(), data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            safetensors::tensor::TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)).map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    safetensors::serialize(views, None).map_err(|e| e.to_string())
}

fn bytes_of<T: bytemuck::Pod>(values: Vec<T>) -> Vec<u8> {
    bytemuck::cast_slice(&values).to_vec()
}
