//! The headless command line: every analysis the GUI runs, over the same engine.

mod analysis;
pub(crate) mod common;
mod compare;
mod convert;
mod eps_curve;
mod eval;
mod eval_out;
mod figure;
mod gui;
mod info;
mod merge;
mod parts;
mod progress;
mod shards;
mod study;
mod train;
mod trajectory;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::engine::EngineError;

#[derive(Parser, Debug)]
#[command(name = "fragility-explorer", version, about = "Find the fragile, robust and antifragile parameters of trained networks", long_about = None)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Without a command the explorer opens, taking the same options as `gui`.
    #[command(flatten)]
    pub gui: gui::GuiArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open the desktop explorer (the default when no command is given)
    Gui(gui::GuiArgs),
    /// List a checkpoint's layers: name, kind, shape, parameter count, value range
    Info(info::InfoArgs),
    /// Measure clean and adversarial accuracy of a model on a dataset
    Eval(eval::EvalArgs),
    /// Save a checkpoint as safetensors with its model card
    Convert(convert::ConvertArgs),
    /// Filter weights step by step (h0-h3), re-attack, and score each layer's fragility
    Sweep(analysis::SweepCmd),
    /// Remove one kernel at a time (nodal dropout) and measure whether the attack targets fragile ones
    Dropout(analysis::DropoutCmd),
    /// Train a network from a model card (or resume), checkpointing every K epochs
    Train(train::TrainCmd),
    /// Local sweeps over a folder of checkpoints: the learning landscape
    Landscape(analysis::LandscapeCmd),
    /// Every checkpoint of a run characterised (sweeps, scores, nodal dropout) and compared through training
    Trajectory(trajectory::TrajectoryCmd),
    /// Selective backpropagation against regular training from the same checkpoint
    Selective(train::SelectiveCmd),
    /// Render figures (PNG, SVG, CSV, JSON) headless from saved results
    Figure(figure::FigureArgs),
    /// Runs through training side by side (trajectory results), figures on shared axes
    Compare(compare::CompareArgs),
    /// Every run of a study file characterised through training and compared (shardable)
    Study(study::StudyCmd),
    /// Combine the output folders of `--shard I/N` runs into the unsharded result
    Merge(merge::MergeArgs),
}

/// Runs one command, as `main` does after parsing (the fuzz harness calls it in-process).
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Gui(a) => gui::run(&a),
        Command::Figure(a) => figure::run(&a),
        Command::Compare(a) => compare::run(&a),
        Command::Info(a) => info::run(&a),
        Command::Eval(a) => eval::run(&a),
        Command::Convert(a) => convert::run(&a),
        Command::Sweep(a) => analysis::run_sweep(&a),
        Command::Dropout(a) => analysis::run_dropout(&a),
        Command::Train(a) => train::run_train(&a),
        Command::Landscape(a) => analysis::run_landscape(&a),
        Command::Trajectory(a) => trajectory::run(&a),
        Command::Selective(a) => train::run_selective(&a),
        Command::Study(a) => study::run(&a),
        Command::Merge(a) => merge::run(&a),
    }
}

/// Runs the command line; errors are printed once, with their causes, and give exit code 1
/// (130 when cancelled with Ctrl-C).
/// A command's output piped into `head` ends when the reader stops, as other command-line
/// tools' does, instead of panicking in `println!` (Rust ignores SIGPIPE by default). Not for
/// the app, whose display and portal connections must see a closed socket as an error.
fn quit_quietly_on_closed_pipe() {
    #[cfg(target_os = "linux")]
    // SAFETY: restores the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => gui::run(&cli.gui),
        Some(c) => {
            quit_quietly_on_closed_pipe();
            run(c)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<progress::StoppedEarly>() => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
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
