//! The compute worker: commands in, events out, progress, cancellation.
//!
//! One named thread owns the device, the network, the dataset and the caches built from
//! them. The UI sends [`command::Command`]s over a bounded channel and never waits; the
//! worker answers with [`command::Event`]s tagged with the job's kind and generation, so
//! the UI can drop answers to requests it has since replaced.

pub mod command;
mod priority;
pub mod progress;
mod state;
mod tasks;
pub mod tracker;
pub mod worker;

pub use command::{Command, Event, Job, JobKind, Payload};
pub use tracker::JobTracker;
pub use worker::Worker;
