//! The command line run as a user runs it (the built binary, the README's commands) and the
//! figures it exports. One binary for both, so the app is linked once.

#[path = "../common/mod.rs"]
mod common;

mod commands;
mod eval_runs;
mod figures;
mod kill;
mod shards;
mod trajectory;
