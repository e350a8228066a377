//! The default model and data compiled into the binary (see assets/default/ATTRIBUTION.md).

use std::path::Path;

use candle_core::Device;

use crate::engine::Result;
use crate::engine::card::ModelCard;
use crate::engine::checkpoint;
use crate::engine::data::{self, Dataset, Known};
use crate::engine::model::{CardOrigin, Network};

const MODEL: &[u8] = include_bytes!("../assets/default/mnist_cnn_small.safetensors");
const CARD: &str = include_str!("../assets/default/mnist_cnn_small.json");
const IMAGES: &[u8] = include_bytes!("../assets/default/mnist-test-1000-images-idx3-ubyte.gz");
const LABELS: &[u8] = include_bytes!("../assets/default/mnist-test-1000-labels-idx1-ubyte.gz");

pub const MODEL_NAME: &str = "embedded: mnist_cnn_small";
pub const DATA_NAME: &str = "embedded: MNIST test, first 1,000";

pub fn network(device: &Device) -> Result<Network> {
    let name = Path::new(MODEL_NAME);
    let state = checkpoint::load_bytes(name, MODEL, device)?;
    let card = ModelCard::parse(CARD, name)?;
    Network::build(state, Some((card, CardOrigin::Given)), device)
}

pub fn dataset() -> Result<Dataset> {
    data::from_idx_bytes(DATA_NAME, IMAGES, LABELS, Some(Known::Mnist))
}
