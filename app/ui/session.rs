//! Runtime results the panels show: what the worker sent, kept until replaced.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use super::sweep_store::SweepStore;
use crate::engine::analysis::dropout::DropoutResult;
use crate::engine::analysis::landscape::LandscapeResult;
use crate::engine::analysis::selective::SelectiveResult;
use crate::engine::train::EpochLog;
use crate::jobs::command::{DataSummary, EvalOutcome, LayerData, ModelSummary, SampleView, WeightClasses};

/// A message shown once in the status line.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub text: String,
    pub error: bool,
    pub at: Instant,
}

/// The card dialog for a checkpoint that was not recognised.
#[derive(Debug, Clone)]
pub struct CardRequest {
    pub checkpoint: PathBuf,
    pub message: String,
    pub architecture: usize,
    pub input: [usize; 3],
    pub mean: String,
    pub std: String,
    pub dataset: String,
    /// For `sequential`: the layers as JSON.
    pub layers_json: String,
    pub error: Option<String>,
}

#[derive(Default)]
pub struct Session {
    pub model: Option<ModelSummary>,
    pub data: Option<DataSummary>,
    pub layer: Option<LayerData>,
    /// Increments per layer received: the heatmap uploads when it changes.
    pub layer_key: u64,
    pub classes: HashMap<String, (u64, WeightClasses)>,
    pub readout: Option<EvalOutcome>,
    /// The filter the readout was made with differs from the current one.
    pub readout_stale: bool,
    pub sweeps: SweepStore,
    pub eps_curve: Vec<[f64; 3]>,
    pub samples: Vec<SampleView>,
    pub samples_key: u64,
    pub dropout: Option<DropoutResult>,
    pub landscape: Option<LandscapeResult>,
    pub landscape_steps: usize,
    pub regular: Vec<EpochLog>,
    pub selective: Vec<EpochLog>,
    pub trained: Option<SelectiveResult>,
    pub messages: Vec<Message>,
    pub card_request: Option<CardRequest>,
    pub exported: Vec<PathBuf>,
    /// Longest recent frame, in milliseconds.
    pub frame_ms: f32,
}

impl Session {
    pub fn error(&mut self, text: impl Into<String>) {
        self.push(text.into(), true);
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.push(text.into(), false);
    }

    fn push(&mut self, text: String, error: bool) {
        // The same message twice in a row is shown once.
        if self.messages.last().is_some_and(|m| m.text == text) {
            return;
        }
        self.messages.push(Message { text, error, at: Instant::now() });
        if self.messages.len() > 6 {
            self.messages.remove(0);
        }
    }

    /// Forgets every result that belonged to the previous model or dataset.
    pub fn reset_results(&mut self) {
        self.layer = None;
        self.classes.clear();
        self.readout = None;
        self.sweeps.clear();
        self.eps_curve.clear();
        self.samples.clear();
        self.dropout = None;
        self.landscape = None;
        self.landscape_steps = 0;
        self.regular.clear();
        self.selective.clear();
        self.trained = None;
    }

    /// The layer row of the model summary by name.
    pub fn layer_row(&self, name: &str) -> Option<&crate::jobs::command::LayerRow> {
        self.model.as_ref().and_then(|m| m.layers.iter().find(|l| l.name == name))
    }
}
