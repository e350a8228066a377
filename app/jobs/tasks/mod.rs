//! The worker's handlers, one per command.

mod analysis;
mod evaluate;
mod export;
mod open;
mod perturb;
mod sweep;
mod training;

use anyhow::Result;

use super::command::{Command, Payload};
use super::state::WorkerState;
use crate::engine::progress::Ctrl;

/// Runs one command. Intermediate results go through `emit`; the final one is returned.
pub fn run(state: &mut WorkerState, cmd: Command, ctrl: Ctrl, emit: &dyn Fn(Payload)) -> Result<Option<Payload>> {
    match cmd {
        Command::Open { model, data, .. } => open::open(state, model, data, emit).map(Some),
        Command::SaveCardAndOpen { checkpoint, card, .. } => {
            open::save_card_and_open(state, &checkpoint, &card, emit).map(Some)
        }
        Command::Layer { layer, .. } => open::layer(state, &layer).map(Some),
        Command::Evaluate { filter, setup, .. } => {
            evaluate::evaluate(state, filter.as_ref(), &setup, ctrl, emit).map(Some)
        }
        Command::EpsCurve { filter, setup, eps, .. } => {
            evaluate::eps_curve(state, filter.as_ref(), &setup, &eps, ctrl, emit).map(Some)
        }
        Command::Perturb { filter, setup, samples, .. } => {
            perturb::samples(state, filter.as_ref(), &setup, samples, ctrl).map(Some)
        }
        Command::Sweep { config, subset, .. } => sweep::sweep(state, &config, subset, ctrl, emit).map(Some),
        Command::Landscape { config, subset, .. } => sweep::landscape(state, &config, subset, ctrl, emit).map(Some),
        Command::Dropout { config, subset, .. } => analysis::dropout(state, &config, subset, ctrl).map(Some),
        Command::Train { request, .. } => training::train(state, &request, ctrl, emit).map(Some),
        Command::Export { dir, items, .. } => export::export(&dir, items, ctrl).map(Some),
        Command::OpenRuns { paths, .. } => Ok(Some(open::runs(&paths))),
        Command::Shutdown => Ok(None),
    }
}
