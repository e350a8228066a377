//! Synaptic filtering and fragility analysis (METHOD.md sections 1-9).

pub mod dropout;
pub mod evalset;
pub mod filter;
pub mod landscape;
pub mod masks;
pub mod scores;
pub mod selective;
pub mod shard;
pub mod study;
pub mod sweep;
pub mod trajectory;
