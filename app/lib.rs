//! fragility-explorer: which parameters of a trained network are fragile, robust or
//! antifragile, and how adversarial attacks exploit them.

pub mod cli;
pub mod embedded;
pub mod engine;
pub mod export;
pub mod jobs;
pub mod render;
pub mod ui;
