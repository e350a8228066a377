//! Matching a network with a dataset: normalisation, default eps, and shape checks.

use crate::engine::card::Normalize;
use crate::engine::data::{Dataset, Known};
use crate::engine::error::{EngineError, Result};
use crate::engine::model::Network;

/// The dataset whose defaults apply (docs/METHOD.md section 10): the card's, else the data's own.
fn known(net: &Network, data: Option<&Dataset>) -> Option<Known> {
    net.card.dataset.as_deref().and_then(Known::from_name).or_else(|| data.and_then(|d| d.known))
}

/// Normalisation from the card, else the dataset's default (docs/METHOD.md section 10).
pub fn normalization(net: &Network, data: Option<&Dataset>) -> Result<Normalize> {
    if let Some(n) = &net.card.normalize {
        return Ok(n.clone());
    }
    known(net, data).map(Known::normalize).ok_or_else(|| {
        EngineError::config(
            "no input normalisation is known for this model and dataset: add \
             \"normalize\": {\"mean\": [...], \"std\": [...]} to the model card",
        )
    })
}

/// eps from the card, else the dataset's default (docs/METHOD.md section 10).
pub fn default_eps(net: &Network, data: Option<&Dataset>) -> Option<f64> {
    net.card.eps.or_else(|| known(net, data).map(Known::default_eps))
}

/// The dataset must match the network's input channels and size, and its labels its classes.
pub fn check_compatible(net: &Network, data: &Dataset) -> Result<()> {
    let [c, h, w] = net.card.input;
    let [dc, dh, dw] = data.shape;
    let size_ok = (dh, dw) == (h, w) || net.accepts_any_size();
    if dc != c || !size_ok {
        return Err(EngineError::data(
            &data.source,
            format!("the dataset's images are {dc}x{dh}x{dw} but the model takes {c}x{h}x{w}"),
        ));
    }
    data.check_labels(net.num_classes)
}
