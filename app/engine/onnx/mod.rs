//! ONNX models (`torch.onnx.export`, both exporters, opsets 13 to 20) opened as networks:
//! the graph runs on the engine's layers and candle's ops, so input gradients are exact and
//! every analysis works as on a native checkpoint. Loading only decodes data: nothing in
//! the file is executed, and external data must lie in the model's folder.

pub mod conformance;
mod graph;
mod lower;
mod ops;
pub mod proto;
mod value;

use std::path::Path;

use candle_core::Device;
use prost::Message;

pub use lower::{OPSETS, SUPPORTED};

use crate::engine::card::{Architecture, ModelCard};
use crate::engine::error::{EngineError, Result, read_file};
use crate::engine::model::{CardOrigin, Network};

/// Whether `path` names an ONNX file (by its extension, as exporters write it).
pub fn is_onnx(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Opens an ONNX model with the card given, else the card beside it, else a card made
/// from the graph's input shape.
pub fn load(path: &Path, card: Option<&Path>, device: &Device) -> Result<Network> {
    let bytes = read_file(path)?;
    proto::check_message_count(&bytes).map_err(|m| EngineError::checkpoint(path, m))?;
    let model = proto::ModelProto::decode(bytes.as_slice())
        .map_err(|e| EngineError::checkpoint(path, format!("not an ONNX model (its protobuf does not decode: {e})")))?;
    drop(bytes);
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| EngineError::checkpoint(path, "the model imports no opset of the default ONNX domain"))?;
    if !OPSETS.contains(&opset) {
        return Err(EngineError::checkpoint(
            path,
            format!("opset {opset} is not supported: export with an opset from {} to {}", OPSETS.start(), OPSETS.end()),
        ));
    }
    let graph = model.graph.as_ref().ok_or_else(|| EngineError::checkpoint(path, "the model has no graph"))?;
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let lowered = lower::lower(graph, folder, device).map_err(|m| EngineError::checkpoint(path, m))?;
    let (input, input_chw, batch) = image_input(&lowered).map_err(|m| EngineError::checkpoint(path, m))?;
    let output = match lowered.outputs.as_slice() {
        [o] => *o,
        outs => {
            let msg = format!("the graph has {} outputs; the explorer needs one, the class scores", outs.len());
            return Err(EngineError::checkpoint(path, msg));
        }
    };
    let beside = ModelCard::beside(path);
    let card_path = card.map(Path::to_path_buf).or_else(|| beside.is_file().then_some(beside));
    let (card, origin) = match card_path {
        Some(p) => (ModelCard::load_for_onnx(&p)?, CardOrigin::File(p)),
        None => {
            let [c, h, w] = input_chw.ok_or_else(|| {
                EngineError::checkpoint(
                    path,
                    "the graph's input has no fixed [C, H, W]: write a card beside it giving `input`",
                )
            })?;
            let note = format!("opened as an ONNX graph (opset {opset}) for {c}x{h}x{w} inputs; no card beside it");
            (ModelCard::onnx([c, h, w]), CardOrigin::Detected(note))
        }
    };
    if card.architecture != Architecture::Onnx {
        return Err(EngineError::card(
            &ModelCard::beside(path),
            format!(
                "the card says `{}` but the model is an ONNX graph: write `\"architecture\": \"onnx\"` or leave it out",
                card.architecture
            ),
        ));
    }
    let mut warnings = lowered.notes;
    if let CardOrigin::Detected(note) = &origin {
        warnings.push(note.clone());
    }
    let body = graph::Graph::new(lowered.program, input, output);
    Network::assemble(card, origin, lowered.params, warnings, Box::new(body), device).map_err(|e| match e {
        EngineError::Model(msg) => {
            let hint = match batch {
                Some(n) => format!(
                    " (the graph was exported for batches of {n}: export with a free batch dimension, \
                     `dynamic_axes` or `dynamic_shapes`)"
                ),
                None => String::new(),
            };
            EngineError::checkpoint(path, format!("{msg}{hint}"))
        }
        other => other,
    })
}

/// The one input that is not an initializer, the image batch: its slot, declared
/// `[C, H, W]` where fixed, and batch size where fixed.
type ImageInput = (usize, Option<[usize; 3]>, Option<usize>);

fn image_input(l: &lower::Lowered) -> std::result::Result<ImageInput, String> {
    let [only] = l.inputs.as_slice() else {
        let names: Vec<&str> = l.inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(format!("the graph has inputs {names:?}; the explorer needs exactly one, the image batch"));
    };
    if only.elem_type != 0 && only.elem_type != proto::data_type::FLOAT {
        return Err(format!("the input `{}` is not float32 (element type {})", only.name, only.elem_type));
    }
    let dims = only.dims.clone().unwrap_or_default();
    if !dims.is_empty() && dims.len() != 4 {
        return Err(format!(
            "the input `{}` has {} dimensions; an image batch has 4 [N, C, H, W]",
            only.name,
            dims.len()
        ));
    }
    let at = |i: usize| dims.get(i).copied().flatten();
    let chw = match (at(1), at(2), at(3)) {
        (Some(c), Some(h), Some(w)) => Some([c, h, w]),
        _ => None,
    };
    Ok((only.slot, chw, at(0)))
}
