//! What the UI asks of the worker and what the worker answers.

use std::path::PathBuf;
use std::sync::Arc;

use crate::engine::analysis::dropout::{DropoutConfig, DropoutResult};
use crate::engine::analysis::evalset::{Z95, wilson_interval};
use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::landscape::LandscapeResult;
use crate::engine::analysis::selective::SelectiveResult;
use crate::engine::analysis::sweep::{Scope, SweepConfig, SweepEvent, SweepResult};
use crate::engine::analysis::trajectory::TrajectoryResult;
use crate::engine::attack::AttackConfig;
use crate::engine::card::ModelCard;
use crate::engine::model::{LayerKind, ModelGraph};
use crate::engine::progress::StopFlag;
use crate::engine::train::EpochLog;
use crate::export::figures::Figure;
use crate::export::figures::builders::PerturbationSample;
use crate::export::tables::Table;

/// The kinds of job; a newer job of a kind supersedes the older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKind {
    Load,
    Layer,
    Eval,
    Perturb,
    Sweep,
    EpsCurve,
    Dropout,
    Landscape,
    Training,
    Compare,
    Export,
}

impl JobKind {
    pub const ALL: [JobKind; 11] = [
        JobKind::Load,
        JobKind::Layer,
        JobKind::Eval,
        JobKind::Perturb,
        JobKind::Sweep,
        JobKind::EpsCurve,
        JobKind::Dropout,
        JobKind::Landscape,
        JobKind::Training,
        JobKind::Compare,
        JobKind::Export,
    ];

    pub fn label(self) -> &'static str {
        match self {
            JobKind::Load => "Loading",
            JobKind::Layer => "Reading layer",
            JobKind::Eval => "Evaluating",
            JobKind::Perturb => "Attacking samples",
            JobKind::Sweep => "Sweep",
            JobKind::EpsCurve => "Accuracy against eps",
            JobKind::Dropout => "Nodal dropout",
            JobKind::Landscape => "Learning landscape",
            JobKind::Training => "Training",
            JobKind::Compare => "Reading runs",
            JobKind::Export => "Exporting",
        }
    }
}

/// Identifies one job: its kind, generation and stop flag.
#[derive(Debug, Clone)]
pub struct Job {
    pub kind: JobKind,
    pub generation: u64,
    pub stop: StopFlag,
}

/// Where a model or dataset comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Embedded,
    Path(PathBuf),
}

/// The filter applied to the network for evaluation and the perturbation view.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterChoice {
    pub kind: FilterKind,
    pub scope: Scope,
    /// The layer (local scope).
    pub layer: String,
    pub alpha: f64,
    /// Thresholds per sweep: sets the pulse width.
    pub steps: usize,
    pub global_range: [f64; 2],
}

/// How the evaluation subset and attack are set.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSetup {
    pub attack: AttackConfig,
    /// First N images of the dataset.
    pub subset: usize,
    pub batch: usize,
}

pub enum Command {
    /// Open a model (a file, a folder of checkpoints, or the embedded one) and a dataset.
    Open {
        job: Job,
        model: Option<Source>,
        data: Option<Source>,
    },
    /// Save a card beside a checkpoint that could not be recognised, then open it.
    SaveCardAndOpen {
        job: Job,
        checkpoint: PathBuf,
        card: Box<ModelCard>,
    },
    /// The unfiltered values, histogram and range of one layer.
    Layer {
        job: Job,
        layer: String,
    },
    Evaluate {
        job: Job,
        filter: Option<FilterChoice>,
        setup: EvalSetup,
    },
    Perturb {
        job: Job,
        filter: Option<FilterChoice>,
        setup: EvalSetup,
        samples: usize,
    },
    Sweep {
        job: Job,
        config: Box<SweepConfig>,
        subset: usize,
    },
    EpsCurve {
        job: Job,
        filter: Option<FilterChoice>,
        setup: EvalSetup,
        eps: Vec<f64>,
    },
    Dropout {
        job: Job,
        config: DropoutConfig,
        subset: usize,
    },
    Landscape {
        job: Job,
        config: Box<SweepConfig>,
        subset: usize,
    },
    Train {
        job: Job,
        request: Box<TrainRequest>,
    },
    Export {
        job: Job,
        dir: PathBuf,
        items: Vec<ExportItem>,
    },
    /// Read trajectory results to compare (files, or the folders holding them).
    OpenRuns {
        job: Job,
        paths: Vec<PathBuf>,
    },
    Shutdown,
}

impl Command {
    pub fn job(&self) -> Option<&Job> {
        match self {
            Command::Open { job, .. }
            | Command::SaveCardAndOpen { job, .. }
            | Command::Layer { job, .. }
            | Command::Evaluate { job, .. }
            | Command::Perturb { job, .. }
            | Command::Sweep { job, .. }
            | Command::EpsCurve { job, .. }
            | Command::Dropout { job, .. }
            | Command::Landscape { job, .. }
            | Command::Train { job, .. }
            | Command::Export { job, .. }
            | Command::OpenRuns { job, .. } => Some(job),
            Command::Shutdown => None,
        }
    }
}

/// Regular against selective training from the current checkpoint.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// `train.epochs` counts the epochs to add to the checkpoint's own.
    pub config: crate::engine::analysis::selective::SelectiveConfig,
    /// Training images (first N of the train split, or of the dataset when it has none).
    pub train_images: usize,
    pub out: PathBuf,
}

/// Builds a figure and its data table; run on the worker, so large views (a 400k-weight
/// heatmap) never cost the UI a frame.
pub type FigureBuilder = Box<dyn FnOnce() -> anyhow::Result<(Figure, Table)> + Send>;

/// One figure to write: how to build it, and its config.
pub struct ExportItem {
    pub stem: String,
    pub build: FigureBuilder,
    pub config: serde_json::Value,
}

/// A filterable (or other parameterised) layer as the model panel lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRow {
    pub name: String,
    pub kind: LayerKind,
    pub shape: Vec<usize>,
    pub parameters: usize,
    pub min: f32,
    pub max: f32,
    pub filterable: bool,
    /// NaN or infinite values in the layer's tensors (analyses refuse such a network).
    pub non_finite: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    pub name: String,
    pub architecture: String,
    pub parameters: usize,
    /// The image shape the network takes (channels, height, width).
    pub input: [usize; 3],
    pub layers: Vec<LayerRow>,
    /// What feeds what: the layers in forward order and where branches meet.
    pub graph: ModelGraph,
    pub classes: Vec<String>,
    /// Default eps of the card or dataset.
    pub default_eps: Option<f64>,
    /// Normalisation std of channel 0, to show eps in pixel units.
    pub std0: f32,
    pub warnings: Vec<String>,
    /// A folder of checkpoints was opened: the learning landscape can run.
    pub checkpoints: Vec<(PathBuf, usize)>,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataSummary {
    pub name: String,
    pub images: usize,
    pub shape: [usize; 3],
    pub notes: Vec<String>,
    pub source: Source,
}

/// One layer's unfiltered weights, for the heatmap, the histogram and hover.
#[derive(Debug, Clone)]
pub struct LayerData {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Arc<Vec<f32>>,
    pub min: f32,
    pub max: f32,
    pub max_abs: f32,
    /// Histogram bin edges span [min, max].
    pub histogram: Vec<u32>,
}

/// Counts of one evaluation of the filtered network, with the baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalOutcome {
    pub samples: usize,
    pub clean: usize,
    pub adv: usize,
    pub base_clean: usize,
    pub base_adv: usize,
    pub removed: usize,
    pub total: usize,
    /// Samples the attack could not move by their gradient (zero or non-finite).
    pub blind: usize,
    /// Samples the ensemble's black-box attack fooled after its gradient attacks.
    pub black_box_gain: usize,
    /// Samples one FGSM step fooled that the iterative attack left robust.
    pub single_step_gain: usize,
}

/// A first estimate of an evaluation from its first images, sent before the exact counts
/// when the evaluation subset is larger than the estimate's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalEstimate {
    /// Images counted: the first ones of the evaluation subset.
    pub samples: usize,
    /// Images of the whole evaluation.
    pub of: usize,
    pub clean: usize,
    pub adv: usize,
    pub removed: usize,
    pub total: usize,
}

impl EvalEstimate {
    /// 95 % interval of the clean accuracy over all `of` images.
    pub fn clean_interval(&self) -> (f64, f64) {
        wilson_interval(self.clean, self.samples, self.of, Z95)
    }

    /// 95 % interval of the adversarial accuracy over all `of` images.
    pub fn adv_interval(&self) -> (f64, f64) {
        wilson_interval(self.adv, self.samples, self.of, Z95)
    }
}

/// One sample of the perturbation view, images already coloured.
#[derive(Debug, Clone)]
pub struct SampleView {
    pub index: usize,
    pub size: [usize; 2],
    pub clean_rgb: Vec<u8>,
    pub perturbation_rgb: Vec<u8>,
    pub adv_rgb: Vec<u8>,
    /// Largest |perturbation| in pixel units (the colour scale).
    pub perturbation_scale: f32,
    pub label: u32,
    pub clean_pred: u32,
    pub clean_conf: f32,
    pub adv_pred: u32,
    pub adv_conf: f32,
    /// The pixels themselves, for the exported figure.
    pub raw: PerturbationSample,
}

/// Per-weight classes of one layer from its h3 sweep: 0 fragile, 1 robust, 2 antifragile.
#[derive(Debug, Clone)]
pub struct WeightClasses {
    pub layer: String,
    pub clean: Arc<Vec<u8>>,
    pub adv: Arc<Vec<u8>>,
    /// Both in one byte per weight, as the heatmap's class texture holds them: clean | adv << 2.
    pub packed: Arc<Vec<u8>>,
}

pub enum Payload {
    Opened {
        model: Box<ModelSummary>,
        data: Box<DataSummary>,
    },
    /// The checkpoint has no card and its architecture was not recognised.
    NeedCard {
        checkpoint: PathBuf,
        message: String,
    },
    Layer(Box<LayerData>),
    /// A first estimate of the evaluation; `Evaluated` with the exact counts follows.
    EvalEstimate(EvalEstimate),
    Evaluated(EvalOutcome),
    Samples(Vec<SampleView>),
    Sweep(SweepEvent),
    SweepDone(Box<SweepResult>),
    Classes(WeightClasses),
    EpsPoint {
        eps: f64,
        clean: f64,
        adv: f64,
    },
    EpsDone,
    Dropout(Box<DropoutResult>),
    LandscapeStep {
        checkpoint: usize,
        event: SweepEvent,
    },
    Landscape(Box<LandscapeResult>),
    Epoch {
        arm: String,
        log: EpochLog,
    },
    Trained(Box<SelectiveResult>),
    Exported(Vec<PathBuf>),
    /// Trajectory results read for the Compare view, and why the others could not be.
    Runs {
        loaded: Vec<(PathBuf, Box<TrajectoryResult>)>,
        failed: Vec<String>,
    },
    Progress {
        stage: String,
        done: usize,
        total: usize,
        eta_s: Option<f64>,
    },
    /// Something the user should know that does not stop the job.
    Note(String),
    /// The job ended without a result because it was cancelled.
    Cancelled,
    Failed(String),
}

pub struct Event {
    pub kind: JobKind,
    pub generation: u64,
    pub payload: Payload,
}
