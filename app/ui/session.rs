//! Runtime results the panels show: what the worker sent, kept until replaced.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use super::sweep_store::SweepStore;
use crate::engine::analysis::dropout::DropoutResult;
use crate::engine::analysis::landscape::LandscapeResult;
use crate::engine::analysis::selective::SelectiveResult;
use crate::engine::train::EpochLog;
use crate::jobs::command::{
    DataSummary, EvalEstimate, EvalOutcome, LayerData, ModelSummary, SampleView, WeightClasses,
};

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
    /// Where the architecture has them (`Architecture::has_stem`, `has_activation`); None:
    /// read from the weights, or the architecture's default.
    pub stem: Option<crate::engine::card::Stem>,
    pub activation: Option<crate::engine::card::Activation>,
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
    /// The exact counts of the last evaluation that answered (see [`Session::readout_view`]).
    pub readout: Option<EvalOutcome>,
    /// The filter version `readout` was made for.
    pub readout_version: u64,
    /// The filter the readout was made with differs from the current one.
    pub readout_stale: bool,
    /// A first estimate of the evaluation in flight, with the filter version it is for.
    pub estimate: Option<(u64, EvalEstimate)>,
    /// The evaluation in flight: its job generation and the filter version it was asked for.
    pub eval_asked: Option<(u64, u64)>,
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
    /// Trajectory results in the Compare view, in the order added.
    pub runs: Vec<CompareRun>,
    /// Longest recent frame, in milliseconds.
    pub frame_ms: f32,
}

/// What the accuracy readout shows for the current filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadoutView<'a> {
    /// The exact counts over the whole evaluation subset.
    Exact(&'a EvalOutcome),
    /// A first estimate from the first images; the exact counts follow.
    Estimate(&'a EvalEstimate),
    /// Nothing made for this filter yet: no number is shown.
    Pending,
}

impl Session {
    /// An evaluation was sent as job `generation` for filter version `version`; it replaces
    /// any earlier one, whose answers are ignored from now on.
    pub fn eval_asked(&mut self, generation: u64, version: u64) {
        self.eval_asked = Some((generation, version));
        self.estimate = None;
    }

    /// The filter version the evaluation job `generation` was asked for, if it is the newest.
    fn asked_version(&self, generation: u64) -> Option<u64> {
        self.eval_asked.filter(|&(g, _)| g == generation).map(|(_, v)| v)
    }

    /// A first estimate from job `generation`.
    pub fn on_estimate(&mut self, generation: u64, estimate: EvalEstimate) {
        if let Some(v) = self.asked_version(generation) {
            self.estimate = Some((v, estimate));
        }
    }

    /// The exact counts from job `generation`; `current` is the filter version now.
    pub fn on_evaluated(&mut self, generation: u64, outcome: EvalOutcome, current: u64) {
        if let Some(v) = self.asked_version(generation) {
            self.readout = Some(outcome);
            self.readout_version = v;
            self.readout_stale = v != current;
            self.estimate = None;
        }
    }

    /// What to show for filter version `current`: only numbers made for it, the exact ones
    /// first; a readout or estimate made for a threshold the slider has left is never shown.
    pub fn readout_view(&self, current: u64) -> ReadoutView<'_> {
        match (&self.readout, &self.estimate) {
            (Some(r), _) if self.readout_version == current => ReadoutView::Exact(r),
            (_, Some((v, e))) if *v == current => ReadoutView::Estimate(e),
            _ => ReadoutView::Pending,
        }
    }

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
        self.estimate = None;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(clean: usize) -> EvalOutcome {
        EvalOutcome {
            samples: 1000,
            clean,
            adv: clean / 2,
            base_clean: 990,
            base_adv: 500,
            removed: 7,
            total: 288,
            blind: 0,
            black_box_gain: 0,
            single_step_gain: 0,
        }
    }

    fn estimate(clean: usize) -> EvalEstimate {
        EvalEstimate { samples: 200, of: 1000, clean, adv: clean / 2, removed: 7, total: 288 }
    }

    #[test]
    fn the_estimate_then_the_exact_count_for_the_current_filter() {
        let mut s = Session::default();
        assert_eq!(s.readout_view(0), ReadoutView::Pending);
        s.eval_asked(1, 1);
        s.on_estimate(1, estimate(190));
        assert_eq!(s.readout_view(1), ReadoutView::Estimate(&estimate(190)));
        s.on_evaluated(1, outcome(950), 1);
        assert_eq!(s.readout_view(1), ReadoutView::Exact(&outcome(950)));
        assert!(!s.readout_stale && s.estimate.is_none());
    }

    #[test]
    fn a_superseded_evaluation_never_shows() {
        let mut s = Session::default();
        s.eval_asked(1, 1);
        s.on_evaluated(1, outcome(950), 1);
        // The slider moves twice; the first evaluation's answers come late and are ignored.
        s.eval_asked(2, 2);
        s.eval_asked(3, 3);
        assert_eq!(s.readout_view(3), ReadoutView::Pending, "the old readout is for another threshold");
        s.on_estimate(2, estimate(100));
        s.on_evaluated(2, outcome(500), 3);
        assert_eq!(s.readout_view(3), ReadoutView::Pending);
        assert_eq!(s.readout, Some(outcome(950)));
        s.on_estimate(3, estimate(180));
        assert_eq!(s.readout_view(3), ReadoutView::Estimate(&estimate(180)));
        s.on_evaluated(3, outcome(900), 3);
        assert_eq!(s.readout_view(3), ReadoutView::Exact(&outcome(900)));
    }

    #[test]
    fn a_filter_change_before_the_next_evaluation_hides_the_numbers() {
        let mut s = Session::default();
        s.eval_asked(1, 1);
        s.on_estimate(1, estimate(190));
        // The filter is now version 2 but its evaluation has not been sent yet.
        assert_eq!(s.readout_view(2), ReadoutView::Pending);
        // The answer to version 1 arrives: kept, marked stale, not shown for version 2.
        s.on_evaluated(1, outcome(950), 2);
        assert!(s.readout_stale);
        assert_eq!(s.readout_view(2), ReadoutView::Pending);
        assert_eq!(s.readout_view(1), ReadoutView::Exact(&outcome(950)));
    }
}

/// One run in the Compare view: where its result was read from, and the result.
#[derive(Debug, Clone)]
pub struct CompareRun {
    pub path: PathBuf,
    pub result: crate::engine::analysis::trajectory::TrajectoryResult,
}
