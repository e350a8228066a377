//! The engine's integration tests: loaders, the analyses against their references, the fast
//! CPU kernels against candle's plain ops. One binary for all of them, so the app is linked
//! once (each file under `tests/` would be a binary of its own).

#[path = "../common/mod.rs"]
mod common;

mod analysis_invariants;
mod analysis_reference;
mod apgd;
mod backprop;
mod checkpoints;
mod datasets;
mod ensemble;
mod mnist_real;
mod model_graph;
mod onnx_conformance;
mod onnx_models;
mod optimised_paths;
mod reference_models;
mod robust_archs;
mod worker_faults;
