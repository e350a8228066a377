//! How long-running engine work reports progress and learns it should stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Receives progress from engine loops; the CLI draws a bar, the GUI a progress
/// indicator, tests nothing.
pub trait Progress: Sync {
    /// A new stage of `total` units begins.
    fn start(&self, _stage: &str, _total: usize) {}
    /// `n` more units are done.
    fn advance(&self, _n: usize) {}
}

/// Progress that goes nowhere.
pub struct Silent;
impl Progress for Silent {}

/// A shared flag, set from another thread, checked by engine loops between batches.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What an engine job is given besides its inputs.
#[derive(Clone, Copy)]
pub struct Ctrl<'a> {
    pub progress: &'a dyn Progress,
    pub stop: &'a StopFlag,
}

impl Ctrl<'_> {
    /// Err(Cancelled) once the stop flag is set.
    pub fn check(&self) -> crate::engine::Result<()> {
        if self.stop.is_stopped() { Err(crate::engine::EngineError::Cancelled) } else { Ok(()) }
    }
}

/// A control that never stops and reports nothing, for tests and one-off calls.
pub fn quiet() -> (Silent, StopFlag) {
    (Silent, StopFlag::new())
}
