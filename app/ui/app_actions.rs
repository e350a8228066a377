//! Turning panel actions into worker commands.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::actions::{Action, FigureId};
use super::app::{DEBOUNCE, ExplorerApp};
use super::autorun::RunStep;
use super::dialogs::{Answer, Pending, Purpose};
use super::figures;
use super::panels::file_browser::{self, FileBrowser};
use super::settings::{Settings, Tab};
use crate::engine::analysis::dropout::DropoutConfig;
use crate::engine::analysis::filter::{Filter, FilterKind, h0_end, threshold_span};
use crate::engine::analysis::selective::SelectiveConfig;
use crate::engine::analysis::sweep::{Scope, SweepConfig};
use crate::engine::attack::AttackConfig;
use crate::engine::model::BnMode;
use crate::engine::train::TrainConfig;
use crate::jobs::command::{EvalSetup, FilterChoice, Source, TrainRequest};
use crate::jobs::{Command, Job, JobKind};

/// Images per batch of every evaluation the app runs.
const BATCH: usize = crate::engine::eval::DEFAULT_BATCH;

impl ExplorerApp {
    /// Sends a command for a new job of `kind`; the previous job of that kind is stopped.
    fn send(&mut self, kind: JobKind, make: impl FnOnce(Job) -> Command) {
        let job = self.jobs.start(kind);
        if let Err(e) = self.worker.send(make(job)) {
            self.jobs.abandon(kind);
            self.session.error(e);
        }
    }

    pub(super) fn open(&mut self, model: Option<Source>, data: Option<Source>) {
        self.send(JobKind::Load, |job| Command::Open { job, model, data });
    }

    /// After a model (or dataset) opened: pick the layer, fit the threshold, evaluate.
    pub(super) fn after_open(&mut self) {
        let Some(model) = &self.session.model else { return };
        let filterable: Vec<&str> = model.layers.iter().filter(|l| l.filterable).map(|l| l.name.as_str()).collect();
        let keep = self.settings.layer.as_deref().filter(|l| filterable.contains(l)).map(str::to_string);
        let first_time = keep.is_none();
        let layer = keep.or_else(|| filterable.first().map(|s| s.to_string()));
        if let Some(eps) = model.default_eps.filter(|_| !self.settings.eps_chosen) {
            self.settings.attack.eps = eps;
            self.settings.eps_chosen = true;
        }
        if let Some(layer) = layer {
            self.select_layer(layer, first_time);
        }
        if self.settings.layout.tab == Tab::Perturbation {
            self.actions.push(Action::Perturb);
        }
    }

    /// Shows a layer; the threshold is kept if it fits the layer's range (or `reset`).
    fn select_layer(&mut self, layer: String, reset: bool) {
        self.settings.layer = Some(layer.clone());
        let (lo, hi) = self.threshold_range();
        if reset || !(lo..=hi).contains(&self.settings.threshold) {
            self.settings.threshold = default_threshold(self.settings.filter, lo, hi);
        }
        self.send(JobKind::Layer, |job| Command::Layer { job, layer });
        // The evaluation runs at once on a new layer, whatever the slider's quiet time.
        self.filter_changed_after(Duration::ZERO);
    }

    fn filter_changed(&mut self) {
        self.filter_changed_after(DEBOUNCE);
    }

    /// The filter, threshold, attack or subset changed: what the readout shows is now for
    /// another filter, and a new evaluation goes out after `quiet` (at once when zero).
    fn filter_changed_after(&mut self, quiet: Duration) {
        self.filter_version += 1;
        self.session.readout_stale = true;
        self.eval_due = Some(Instant::now() + quiet);
        let ctx = self.ctx.clone();
        self.debounce(&ctx);
    }

    /// The threshold slider's range for the current layer, scope and filter.
    pub fn threshold_range(&self) -> (f64, f64) {
        let (lo, hi) = match self.settings.scope {
            Scope::Global => (self.settings.sweep.global_range[0], self.settings.sweep.global_range[1]),
            Scope::Local => self
                .settings
                .layer
                .as_deref()
                .and_then(|l| self.session.layer_row(l))
                .map_or((-1.0, 1.0), |r| (r.min as f64, r.max as f64)),
        };
        threshold_span(self.settings.filter, lo, hi, h0_end(lo, hi, self.settings.scope == Scope::Global))
    }

    /// The current filter at the slider's threshold as a sweep applies it to the shown layer,
    /// whose values span `[lo, hi]` (the global range instead in global scope): h3 with the
    /// sweep's pulse width.
    pub fn current_filter(&self, lo: f64, hi: f64) -> Filter {
        let range = match self.settings.scope {
            Scope::Local => [lo, hi],
            Scope::Global => self.settings.sweep.global_range,
        };
        Filter::in_sweep(self.settings.filter, self.settings.threshold, range, self.settings.sweep.steps)
    }

    pub fn attack_config(&self) -> AttackConfig {
        attack_config(&self.settings)
    }

    pub fn eval_setup(&self) -> EvalSetup {
        eval_setup(&self.settings)
    }

    pub fn filter_choice(&self) -> Option<FilterChoice> {
        filter_choice(&self.settings)
    }

    /// The command behind the accuracy readout for these settings, sent after every change
    /// of the filter, threshold, attack or subset (examples/bench_slider.rs sends it too).
    pub fn evaluate_command(settings: &Settings, job: Job) -> Command {
        Command::Evaluate { job, filter: filter_choice(settings), setup: eval_setup(settings) }
    }

    /// Whether the evaluation sent last has not begun on the worker yet (it waits behind
    /// another job): a newer one would only queue up behind it.
    pub(super) fn eval_waiting(&self) -> bool {
        self.jobs.status(JobKind::Eval).is_some_and(|s| s.running && s.stage.is_empty())
    }

    pub(super) fn evaluate_now(&mut self) {
        if self.session.model.is_none() {
            return;
        }
        // The job stops the one before it; the readout takes answers from this one only.
        let job = self.jobs.start(JobKind::Eval);
        let generation = job.generation;
        match self.worker.send(Self::evaluate_command(&self.settings, job)) {
            Ok(()) => self.session.eval_asked(generation, self.filter_version),
            Err(e) => {
                self.jobs.abandon(JobKind::Eval);
                self.session.error(e);
            }
        }
        if self.settings.layout.tab == Tab::Perturbation {
            self.request_samples();
        }
    }

    fn request_samples(&mut self) {
        let (filter, setup, samples) = (self.filter_choice(), self.eval_setup(), self.settings.samples);
        self.send(JobKind::Perturb, |job| Command::Perturb { job, filter, setup, samples });
    }

    /// Identifies the attack, subset and step count a sweep is made with.
    fn sweep_key(&self) -> String {
        format!("{:?}|{}|{:?}", self.attack_config(), self.settings.subset, self.settings.sweep)
    }

    fn sweep_config(&self, filters: Vec<FilterKind>, all_layers: bool) -> SweepConfig {
        let mut cfg = SweepConfig::new(self.settings.scope, self.attack_config());
        cfg.filters = filters;
        cfg.options = self.settings.sweep.clone();
        if self.settings.scope == Scope::Local && !all_layers {
            cfg.layers = self.settings.layer.iter().cloned().collect();
        }
        cfg
    }

    pub(super) fn apply(&mut self, action: Action) {
        match action {
            Action::OpenModelDialog => self.ask(Purpose::OpenModel),
            Action::OpenModelFolderDialog => self.ask(Purpose::OpenModelFolder),
            Action::OpenDataDialog => self.ask(Purpose::OpenData),
            Action::OpenModel(p) => self.open(Some(Source::Path(p)), None),
            Action::OpenData(p) => self.open(None, Some(Source::Path(p))),
            Action::OpenEmbedded => self.open(Some(Source::Embedded), Some(Source::Embedded)),
            Action::AddRunDialog => self.ask(Purpose::OpenResults),
            Action::AddRuns(paths) => self.send(JobKind::Compare, |job| Command::OpenRuns { job, paths }),
            Action::RemoveRun(i) => {
                if i < self.session.runs.len() {
                    self.session.runs.remove(i);
                }
            }
            Action::SelectLayer(l) => self.select_layer(l, false),
            Action::FilterChanged => self.filter_changed(),
            Action::Sweep { filters, all_layers } => {
                let key = self.sweep_key();
                let (config, subset) = (Box::new(self.sweep_config(filters, all_layers)), self.settings.subset);
                self.session.sweeps.begin(&key, &config);
                self.send(JobKind::Sweep, |job| Command::Sweep { job, config, subset });
            }
            Action::EpsCurve => {
                let base = self.settings.attack.eps;
                if base <= 0.0 {
                    return self.session.error("set eps above 0 first: the curve spans 0 to twice the current eps");
                }
                self.session.eps_curve.clear();
                let eps: Vec<f64> = (0..=10).map(|i| base * 2.0 * i as f64 / 10.0).collect();
                let (filter, setup) = (self.filter_choice(), self.eval_setup());
                self.send(JobKind::EpsCurve, |job| Command::EpsCurve { job, filter, setup, eps });
            }
            Action::Perturb => self.request_samples(),
            Action::Dropout { layer } => {
                let config = DropoutConfig { layer, attack: self.attack_config(), bn: BnMode::Running, batch: BATCH };
                let subset = self.settings.subset;
                self.send(JobKind::Dropout, |job| Command::Dropout { job, config, subset });
            }
            Action::Landscape => {
                let (config, subset) =
                    (Box::new(self.sweep_config(FilterKind::PAPER.to_vec(), true)), self.settings.subset);
                self.session.landscape = None;
                self.session.landscape_steps = 0;
                self.send(JobKind::Landscape, |job| Command::Landscape { job, config, subset });
            }
            Action::Train => self.train(),
            Action::Cancel(kind) => self.jobs.cancel(kind),
            Action::Export(id) => self.ask(Purpose::Export(id)),
            Action::ExportAll => self.ask(Purpose::ExportAll),
            Action::SaveCard { checkpoint, card } => {
                self.session.card_request = None;
                self.send(JobKind::Load, |job| Command::SaveCardAndOpen { job, checkpoint, card });
            }
        }
    }

    /// Shows a file dialog beside the UI; its answer is acted on when it comes.
    fn ask(&mut self, purpose: Purpose) {
        if self.dialog.is_some() {
            return;
        }
        let ctx = self.ctx.clone();
        self.dialog = Some(Pending::ask(&self.dialogs, purpose, move || ctx.request_repaint()));
    }

    /// Acts on the answer of the dialog being shown, once the user has given it.
    pub(super) fn dialog_answered(&mut self) {
        let Some(answer) = self.dialog.as_ref().and_then(Pending::answer) else { return };
        let Some(purpose) = self.dialog.take().map(|d| d.purpose) else { return };
        let path = match answer {
            Answer::Picked(path) => path,
            Answer::Cancelled => return,
            Answer::Unavailable(why) => return self.browse(purpose, why),
        };
        match purpose {
            Purpose::OpenModel | Purpose::OpenModelFolder => self.open(Some(Source::Path(path)), None),
            Purpose::OpenData => self.open(None, Some(Source::Path(path))),
            Purpose::OpenResults => self.apply(Action::AddRuns(vec![path])),
            Purpose::Export(id) => self.export(path, &[id]),
            Purpose::ExportAll => {
                let stamp =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                self.export(path.join(format!("fragility-explorer-{stamp}")), &FigureId::ALL);
            }
        }
    }

    /// No native dialog here: the built-in browser asks instead and answers the same way.
    /// The status line says why, once.
    fn browse(&mut self, purpose: Purpose, why: String) {
        if !self.panels.browser_explained {
            self.panels.browser_explained = true;
            self.session.note(file_browser::explain(&why));
        }
        let (current, recent) = match purpose {
            Purpose::OpenModel | Purpose::OpenModelFolder => {
                (self.settings.model.clone(), self.settings.recent_models.clone())
            }
            Purpose::OpenData => (self.settings.data.clone(), self.settings.recent_data.clone()),
            Purpose::OpenResults => (self.settings.recent_runs.first().cloned(), self.settings.recent_runs.clone()),
            Purpose::Export(_) | Purpose::ExportAll => (None, Vec::new()),
        };
        let (pending, answer) = Pending::in_app(purpose);
        self.panels.browser = Some(FileBrowser::new(purpose, why, answer, current.as_deref(), recent));
        self.dialog = Some(pending);
    }

    fn train(&mut self) {
        let mut sweep = self.sweep_config(vec![FilterKind::H3], true);
        sweep.scope = Scope::Local;
        let config = SelectiveConfig {
            train: TrainConfig {
                epochs: self.settings.train_epochs.max(1),
                every: crate::engine::train::DEFAULT_EVERY,
                seed: crate::engine::DEFAULT_SEED,
                batch: crate::engine::train::DEFAULT_BATCH,
                lr: crate::engine::train::adam::DEFAULT_LR,
                test_attack: Some(self.attack_config()),
            },
            selection: self.settings.selection,
            sweep,
        };
        let out = std::env::temp_dir().join(format!("fragility-explorer-training-{}", std::process::id()));
        self.session.regular.clear();
        self.session.selective.clear();
        self.session.trained = None;
        let request = Box::new(TrainRequest { config, train_images: self.settings.train_images, out });
        self.send(JobKind::Training, |job| Command::Train { job, request });
    }

    fn export(&mut self, dir: PathBuf, ids: &[FigureId]) {
        let items: Vec<_> = ids.iter().flat_map(|&id| figures::build_all(id, self)).collect();
        if items.is_empty() {
            self.session.error("nothing to export yet: run the analysis first");
            return;
        }
        self.send(JobKind::Export, |job| Command::Export { job, dir, items });
    }

    /// Jobs asked for on the command line, started one after another once the model is open.
    pub(super) fn run_autorun(&mut self) {
        if self.autorun.is_empty() || !self.is_idle() {
            return;
        }
        let action = match self.autorun.remove(0) {
            RunStep::Layer(layer) => return self.select_layer(layer, false),
            RunStep::Classes => {
                self.settings.view_mode = super::settings::ViewMode::ClassesAdversarial;
                return;
            }
            RunStep::Sweep => Action::Sweep { filters: vec![self.settings.filter], all_layers: false },
            RunStep::Characterise => Action::Sweep { filters: FilterKind::PAPER.to_vec(), all_layers: true },
            RunStep::Compression => {
                self.panels.curves.curve = super::panels::curves::Curve::Compression;
                Action::Sweep { filters: vec![FilterKind::H0, FilterKind::H1, FilterKind::H2], all_layers: false }
            }
            RunStep::Eps => {
                self.panels.curves.curve = super::panels::curves::Curve::Eps;
                Action::EpsCurve
            }
            RunStep::Perturb => Action::Perturb,
            RunStep::Dropout => Action::Dropout { layer: None },
            RunStep::Train => Action::Train,
            RunStep::Landscape => Action::Landscape,
        };
        self.apply(action);
    }
}

fn attack_config(s: &Settings) -> AttackConfig {
    AttackConfig {
        eps: s.attack.eps.max(0.0),
        pgd_steps: s.attack.pgd_steps.max(1),
        attack_steps: s.attack.attack_steps.max(1),
        restarts: s.attack.restarts.max(1),
        ..s.attack.clone()
    }
}

fn eval_setup(s: &Settings) -> EvalSetup {
    EvalSetup { attack: attack_config(s), subset: s.subset.max(1), batch: BATCH }
}

fn filter_choice(s: &Settings) -> Option<FilterChoice> {
    Some(FilterChoice {
        kind: s.filter,
        scope: s.scope,
        layer: s.layer.clone()?,
        alpha: s.threshold,
        steps: s.sweep.steps,
        global_range: s.sweep.global_range,
    })
}

/// Where the threshold starts on a new layer: a quarter of the way into the range, so
/// the mask shows something at once.
pub fn default_threshold(kind: FilterKind, lo: f64, hi: f64) -> f64 {
    match kind {
        FilterKind::H2 => hi - 0.25 * (hi - lo),
        _ => lo + 0.25 * (hi - lo),
    }
}
