//! Runs one of the official ONNX operator test cases (`tests/fixtures/onnx_node/CASE`, written
//! by `scripts/onnx_node_cases.py`): the graph on its inputs, each output against the expected
//! one within ONNX's backend-test tolerance (relative 1e-3, absolute 1e-7).

use std::path::Path;

use candle_core::Device;
use prost::Message;

use super::proto::{ModelProto, TensorProto};
use super::value::{self, Value};
use super::{OPSETS, lower};
use crate::engine::model::{BnMode, ForwardCtx};

const RTOL: f32 = 1e-3;
const ATOL: f32 = 1e-7;

fn tensor(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let t = TensorProto::decode(bytes.as_slice()).map_err(|e| format!("{}: {e}", path.display()))?;
    value::decode(&t, path.parent().unwrap_or(Path::new(".")), &Device::Cpu)
}

fn numbers(v: &Value) -> Result<Vec<f32>, String> {
    match v {
        Value::Float(t) => t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| e.to_string()),
        Value::Int(i) => Ok(i.data.iter().map(|&x| x as f32).collect()),
    }
}

/// Runs the case in `dir`; the error says what went wrong or what differs.
pub fn run_case(dir: &Path) -> Result<(), String> {
    let bytes = std::fs::read(dir.join("model.onnx")).map_err(|e| e.to_string())?;
    super::proto::check_message_count(&bytes)?;
    let model = ModelProto::decode(bytes.as_slice()).map_err(|e| format!("decode: {e}"))?;
    let opset = model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version);
    if !opset.is_some_and(|v| OPSETS.contains(&v)) {
        return Err(format!("opset {opset:?} outside {OPSETS:?}"));
    }
    let graph = model.graph.as_ref().ok_or("no graph")?;
    let lowered = lower::lower(graph, dir, &Device::Cpu)?;
    let mut inputs = Vec::new();
    for (j, input) in lowered.inputs.iter().enumerate() {
        inputs.push((input.slot, tensor(&dir.join(format!("input_{j}.pb")))?));
    }
    let mut ctx = ForwardCtx::eval(BnMode::Running);
    let got = lowered.program.run_all(inputs, &lowered.outputs, &mut ctx).map_err(|e| e.to_string())?;
    for (j, g) in got.iter().enumerate() {
        let want = tensor(&dir.join(format!("output_{j}.pb")))?;
        let (gd, wd) = (g.dims(), want.dims());
        if gd != wd {
            return Err(format!("output {j} has shape {gd:?}, expected {wd:?}"));
        }
        let (a, b) = (numbers(g)?, numbers(&want)?);
        if let Some(i) = a
            .iter()
            .zip(&b)
            .position(|(x, y)| !((x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= ATOL + RTOL * y.abs()))
        {
            return Err(format!("output {j} element {i}: {} instead of {}", a[i], b[i]));
        }
    }
    Ok(())
}
