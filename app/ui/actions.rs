//! What panels ask for; the app turns these into worker commands after the frame.

use std::path::PathBuf;

use crate::engine::analysis::filter::FilterKind;
use crate::engine::card::ModelCard;
use crate::jobs::JobKind;

/// The figures the app can export, one per plot or view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FigureId {
    Histogram,
    Mask,
    Perturbation,
    Sweep,
    Eps,
    Compression,
    Scores,
    Dropout,
    DropoutShift,
    Landscape,
    Training,
    Compare,
}

impl FigureId {
    pub const ALL: [FigureId; 12] = [
        FigureId::Histogram,
        FigureId::Mask,
        FigureId::Perturbation,
        FigureId::Sweep,
        FigureId::Eps,
        FigureId::Compression,
        FigureId::Scores,
        FigureId::Dropout,
        FigureId::DropoutShift,
        FigureId::Landscape,
        FigureId::Training,
        FigureId::Compare,
    ];

    /// File stem of the exported files.
    pub fn stem(self) -> &'static str {
        match self {
            FigureId::Histogram => "histogram",
            FigureId::Mask => "mask",
            FigureId::Perturbation => "perturbation",
            FigureId::Sweep => "sweep",
            FigureId::Eps => "accuracy-vs-eps",
            FigureId::Compression => "compression",
            FigureId::Scores => "scores",
            FigureId::Dropout => "nodal-dropout",
            FigureId::DropoutShift => "dropout-shift",
            FigureId::Landscape => "landscape",
            FigureId::Training => "training",
            FigureId::Compare => "compare",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Action {
    OpenModelDialog,
    OpenModelFolderDialog,
    OpenDataDialog,
    OpenModel(PathBuf),
    OpenData(PathBuf),
    OpenEmbedded,
    /// Add a trajectory result to the Compare view (a dialog asks which).
    AddRunDialog,
    AddRuns(Vec<PathBuf>),
    RemoveRun(usize),
    SelectLayer(String),
    /// The filter, threshold, eps or subset changed: re-evaluate (debounced).
    FilterChanged,
    /// Sweep the current layer (or global) with these filters; `all_layers` sweeps every layer.
    Sweep {
        filters: Vec<FilterKind>,
        all_layers: bool,
    },
    EpsCurve,
    Perturb,
    Dropout {
        layer: Option<String>,
    },
    Landscape,
    Train,
    Cancel(JobKind),
    Export(FigureId),
    ExportAll,
    SaveCard {
        checkpoint: PathBuf,
        card: Box<ModelCard>,
    },
}
