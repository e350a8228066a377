//! The headless command line: every analysis the GUI runs, over the same engine.

mod common;
mod convert;
mod eval;
mod info;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::engine::EngineError;

#[derive(Parser, Debug)]
#[command(name = "fragility-explorer", version, about = "Find the fragile, robust and antifragile parameters of trained networks", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List a checkpoint's layers: name, kind, shape, parameter count, value range
    Info(info::InfoArgs),
    /// Measure clean and adversarial accuracy of a model on a dataset
    Eval(eval::EvalArgs),
    /// Save a checkpoint as safetensors with its model card
    Convert(convert::ConvertArgs),
}

/// Runs the command line; errors are printed once, with their causes, and give exit code 1
/// (130 when cancelled with Ctrl-C).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => eval::default_summary(),
        Some(Command::Info(a)) => info::run(&a),
        Some(Command::Eval(a)) => eval::run(&a),
        Some(Command::Convert(a)) => convert::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if matches!(e.downcast_ref::<EngineError>(), Some(EngineError::Cancelled)) => {
            eprintln!("cancelled");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
