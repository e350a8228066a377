//! Opening models and datasets, saving cards, reading a layer.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

use crate::engine::card::ModelCard;
use crate::engine::setup;
use crate::jobs::command::{LayerData, Payload, Source};
use crate::jobs::state::{OpenError, WorkerState};

/// Bins of the weight histogram.
pub const HISTOGRAM_BINS: usize = 64;

pub fn open(
    state: &mut WorkerState,
    model: Option<Source>,
    data: Option<Source>,
    emit: &dyn Fn(Payload),
) -> Result<Payload> {
    if let Some(source) = &data {
        state.open_data(source)?;
    } else if state.data.is_none() {
        state.open_data(&Source::Embedded)?;
    }
    if let Some(source) = &model {
        match state.open_model(source) {
            Ok(()) => {}
            Err(OpenError::NeedCard { checkpoint, message }) => return Ok(Payload::NeedCard { checkpoint, message }),
            Err(OpenError::Other(e)) => return Err(e),
        }
    } else if state.net.is_none() {
        state.open_model(&Source::Embedded).map_err(|e| match e {
            OpenError::Other(e) => e,
            OpenError::NeedCard { message, .. } => anyhow!(message),
        })?;
    }
    opened(state, emit)
}

/// The summaries, after a check that model and data fit (said as an error, the model
/// stays open so another dataset can be chosen).
fn opened(state: &WorkerState, emit: &dyn Fn(Payload)) -> Result<Payload> {
    let payload = Payload::Opened { model: Box::new(state.model_summary()?), data: Box::new(state.data_summary()?) };
    if let (Ok(net), Ok(data)) = (state.net(), state.dataset())
        && let Err(e) = setup::check_compatible(net, data)
    {
        emit(payload);
        return Err(anyhow::Error::from(e).context("the dataset does not fit the model; open another dataset"));
    }
    Ok(payload)
}

pub fn save_card_and_open(
    state: &mut WorkerState,
    checkpoint: &Path,
    card: &ModelCard,
    emit: &dyn Fn(Payload),
) -> Result<Payload> {
    let path = ModelCard::beside(checkpoint);
    card.save(&path).with_context(|| format!("saving the model card {}", path.display()))?;
    match state.open_model(&Source::Path(checkpoint.to_path_buf())) {
        Ok(()) => opened(state, emit),
        Err(OpenError::NeedCard { message, .. }) => Err(anyhow!(message)),
        Err(OpenError::Other(e)) => Err(e.context("the saved card does not fit the checkpoint")),
    }
}

pub fn layer(state: &mut WorkerState, name: &str) -> Result<Payload> {
    let net = state.net()?;
    let info = net.params.layer(name).ok_or_else(|| anyhow!("no layer named `{name}`"))?;
    let p = net.params.get(&format!("{name}.weight")).ok_or_else(|| anyhow!("layer `{name}` has no weight"))?;
    let values: Vec<f32> = p.var.as_tensor().flatten_all()?.to_vec1()?;
    let min = values.iter().copied().fold(f32::INFINITY, f32::min);
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut histogram = vec![0u32; HISTOGRAM_BINS];
    let span = (max - min).max(f32::MIN_POSITIVE);
    for &v in &values {
        if v.is_finite() {
            let b = (((v - min) / span) * HISTOGRAM_BINS as f32) as usize;
            histogram[b.min(HISTOGRAM_BINS - 1)] += 1;
        }
    }
    Ok(Payload::Layer(Box::new(LayerData {
        name: name.to_string(),
        shape: info.shape.clone(),
        min,
        max,
        max_abs: min.abs().max(max.abs()),
        histogram,
        values: std::sync::Arc::new(values),
    })))
}

/// Reads trajectory results for the Compare view (a study's path gives all its runs); each
/// that fails is reported, the others kept.
pub fn runs(paths: &[PathBuf]) -> Payload {
    let (mut loaded, mut failed) = (Vec::new(), Vec::new());
    for named in paths {
        let results = match crate::engine::analysis::study::results_named(named) {
            Ok(r) => r,
            Err(e) => {
                failed.push(e.to_string());
                continue;
            }
        };
        for path in results {
            match crate::engine::analysis::trajectory::load(&path) {
                Ok(r) => loaded.push((path, Box::new(r))),
                Err(e) => failed.push(e.to_string()),
            }
        }
    }
    Payload::Runs { loaded, failed }
}
