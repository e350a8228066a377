//! What the app does with each event from the worker.

use super::app::ExplorerApp;
use super::session::CardRequest;
use crate::engine::card::EXAMPLE_CARD;
use crate::jobs::command::{Payload, Source};
use crate::jobs::{Event, JobKind};

impl ExplorerApp {
    pub(super) fn handle_event(&mut self, e: Event) {
        if !self.jobs.is_current(&e) {
            // An answer to a request that has since been replaced.
            return;
        }
        self.jobs.update(&e);
        let (kind, generation) = (e.kind, e.generation);
        match e.payload {
            Payload::Opened { model, data } => {
                if let Source::Path(p) = &model.source {
                    self.settings.remember_model(p);
                } else {
                    self.settings.model = None;
                }
                if let Source::Path(p) = &data.source {
                    self.settings.remember_data(p);
                } else {
                    self.settings.data = None;
                }
                for w in &model.warnings {
                    self.session.note(w.clone());
                }
                for n in &data.notes {
                    self.session.note(n.clone());
                }
                self.session.reset_results();
                self.session.model = Some(*model);
                self.session.data = Some(*data);
                self.after_open();
            }
            Payload::NeedCard { checkpoint, message } => {
                self.session.card_request = Some(CardRequest {
                    checkpoint,
                    message,
                    architecture: 0,
                    input: [1, 28, 28],
                    mean: "0.1307".into(),
                    std: "0.3081".into(),
                    dataset: String::new(),
                    layers_json: example_layers(),
                    stem: None,
                    activation: None,
                    error: None,
                });
            }
            Payload::Layer(layer) => {
                self.session.layer_key += 1;
                self.session.layer = Some(*layer);
                self.panels.mask.reset_view();
            }
            Payload::EvalEstimate(estimate) => self.session.on_estimate(generation, estimate),
            Payload::Evaluated(outcome) => self.session.on_evaluated(generation, outcome, self.filter_version),
            Payload::Samples(samples) => {
                self.session.samples = samples;
                self.session.samples_key += 1;
            }
            Payload::Sweep(ev) => self.session.sweeps.on_event(ev),
            Payload::SweepDone(result) => {
                self.session.sweeps.on_done(&result);
                if result.cancelled {
                    self.session.note("sweep cancelled: the steps finished so far are kept");
                }
            }
            Payload::Classes(c) => {
                self.session.layer_key += 1;
                let key = self.session.layer_key;
                self.session.classes.insert(c.layer.clone(), (key, c));
            }
            Payload::EpsPoint { eps, clean, adv } => self.session.eps_curve.push([eps, clean, adv]),
            Payload::EpsDone => {}
            Payload::Dropout(r) => {
                if r.cancelled {
                    self.session.note("nodal dropout cancelled: the kernels finished so far are kept");
                }
                self.session.dropout = Some(*r);
            }
            Payload::LandscapeStep { .. } => self.session.landscape_steps += 1,
            Payload::Landscape(r) => {
                if r.cancelled {
                    self.session.note("learning landscape cancelled");
                }
                self.session.landscape = Some(*r);
            }
            Payload::Epoch { arm, log } => {
                if arm == "selective" {
                    self.session.selective.push(log);
                } else {
                    self.session.regular.push(log);
                }
            }
            Payload::Trained(r) => {
                if r.cancelled {
                    self.session.note("training cancelled: finished epochs are kept");
                }
                self.session.trained = Some(*r);
            }
            Payload::Exported(paths) => {
                let dir = paths.first().and_then(|p| p.parent()).map(|d| d.display().to_string()).unwrap_or_default();
                self.session.note(format!("exported {} files to {dir}", paths.len()));
                self.session.exported = paths;
            }
            Payload::Runs { loaded, failed } => {
                for (path, result) in loaded {
                    self.settings.remember_run(&path);
                    let run = super::session::CompareRun { path, result: *result };
                    match self.session.runs.iter_mut().find(|r| r.path == run.path) {
                        Some(old) => *old = run,
                        None => self.session.runs.push(run),
                    }
                }
                for why in failed {
                    self.session.error(format!("cannot compare: {why}"));
                }
            }
            Payload::Note(text) => self.session.note(text),
            Payload::Progress { .. } | Payload::Cancelled => {}
            Payload::Failed(msg) => {
                if kind == JobKind::Load && self.session.model.is_none() && !self.fell_back {
                    // Nothing is open yet (the last files are broken or gone): show the
                    // embedded default rather than an empty window.
                    self.fell_back = true;
                    self.open(Some(Source::Embedded), Some(Source::Embedded));
                }
                let what = match kind {
                    JobKind::Load => "cannot open",
                    JobKind::Export => "cannot export",
                    other => other.label(),
                };
                self.session.error(format!("{what}: {msg}"));
            }
        }
    }
}

/// The example card's layers, as a start for a sequential card.
fn example_layers() -> String {
    serde_json::from_str::<serde_json::Value>(EXAMPLE_CARD)
        .ok()
        .and_then(|v| v.get("layers").cloned())
        .and_then(|l| serde_json::to_string_pretty(&l).ok())
        .unwrap_or_else(|| "[]".into())
}
