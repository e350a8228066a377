//! The numerical engine: checkpoints, models, datasets, attacks and evaluation.
//! It depends on candle only, never on the GUI.

pub mod analysis;
pub mod attack;
pub mod card;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod fsutil;
pub mod model;
pub mod onnx;
pub mod progress;
pub mod setup;
pub mod train;

pub use error::{EngineError, Result};

/// The seed of every seeded choice (initial weights, data order, random subsets, PGD's random
/// start) unless the user gives another.
pub const DEFAULT_SEED: u64 = 0;
