//! What the worker owns: the device, the network, the dataset and caches built from them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use candle_core::Device;

use super::command::{DataSummary, LayerRow, ModelSummary, Source};
use crate::embedded;
use crate::engine::analysis::evalset::{Counts, EvalSet};
use crate::engine::analysis::landscape::{CheckpointEntry, list_checkpoints};
use crate::engine::card::{ModelCard, Normalize};
use crate::engine::checkpoint;
use crate::engine::data::{self, DataSpec, Dataset, Subset};
use crate::engine::device::{self, DeviceChoice};
use crate::engine::model::{Network, detect};
use crate::engine::setup;

/// The prepared evaluation subset, kept while its size and batch stay the same.
pub struct CachedEvalSet {
    pub subset: usize,
    pub batch: usize,
    pub set: EvalSet,
    pub data: Dataset,
    /// The layer the set's kept prefixes end before; none are kept if `None`.
    pub prefix_for: Option<String>,
}

pub struct WorkerState {
    pub device: Device,
    pub net: Option<Network>,
    pub model_source: Source,
    /// A folder of checkpoints was opened (learning landscape), by epoch.
    pub checkpoints: Vec<CheckpointEntry>,
    pub data: Option<Dataset>,
    pub data_source: Source,
    pub eval: Option<CachedEvalSet>,
    /// Unfiltered counts per (subset, batch, attack as JSON).
    pub baselines: Vec<((usize, usize, String), Counts)>,
}

/// Why a model could not be opened: unrecognised (ask for a card) or any other error.
pub enum OpenError {
    NeedCard { checkpoint: PathBuf, message: String },
    Other(anyhow::Error),
}

impl From<anyhow::Error> for OpenError {
    fn from(e: anyhow::Error) -> Self {
        OpenError::Other(e)
    }
}

impl From<crate::engine::EngineError> for OpenError {
    fn from(e: crate::engine::EngineError) -> Self {
        OpenError::Other(e.into())
    }
}

impl WorkerState {
    pub fn new(choice: DeviceChoice) -> Result<Self> {
        Ok(Self {
            device: device::open(choice)?,
            net: None,
            model_source: Source::Embedded,
            checkpoints: Vec::new(),
            data: None,
            data_source: Source::Embedded,
            eval: None,
            baselines: Vec::new(),
        })
    }

    pub fn net(&self) -> Result<&Network> {
        self.net.as_ref().ok_or_else(|| anyhow!("no model is open"))
    }

    pub fn dataset(&self) -> Result<&Dataset> {
        self.data.as_ref().ok_or_else(|| anyhow!("no dataset is open"))
    }

    /// Opens a model; the current one stays if this fails.
    pub fn open_model(&mut self, source: &Source) -> Result<(), OpenError> {
        let (net, checkpoints) = match source {
            Source::Embedded => (embedded::network(&self.device).context("loading the embedded model")?, Vec::new()),
            Source::Path(p) if p.is_dir() => {
                let entries = list_checkpoints(p, &self.device)?;
                let last = entries.last().ok_or_else(|| anyhow!("no checkpoints in {}", p.display()))?;
                (Network::load(&last.path, None, &self.device)?, entries)
            }
            Source::Path(p) => (self.open_file(p)?, Vec::new()),
        };
        self.net = Some(net);
        self.model_source = source.clone();
        self.checkpoints = checkpoints;
        self.forget_caches();
        Ok(())
    }

    fn open_file(&self, path: &Path) -> Result<Network, OpenError> {
        if ModelCard::beside(path).is_file() {
            return Ok(Network::load(path, None, &self.device).map_err(anyhow::Error::from)?);
        }
        let state = checkpoint::load(path, &self.device).map_err(anyhow::Error::from)?;
        if let Err(e) = detect::detect(&state) {
            return Err(OpenError::NeedCard { checkpoint: path.to_path_buf(), message: e.to_string() });
        }
        Network::build(state, None, &self.device)
            .map_err(|e| OpenError::Other(anyhow::Error::from(e).context(format!("opening {}", path.display()))))
    }

    /// Opens a dataset (test split); the current one stays if this fails.
    pub fn open_data(&mut self, source: &Source) -> Result<()> {
        let d = match source {
            Source::Embedded => embedded::dataset()?,
            Source::Path(p) => data::load(&DataSpec::new(p.clone()))?,
        };
        self.data = Some(d);
        self.data_source = source.clone();
        self.forget_caches();
        Ok(())
    }

    /// The network, the first `n` images (all if fewer) and the normalisation, checked to fit.
    pub fn prepared(&self, n: usize) -> Result<(&Network, Dataset, Normalize)> {
        let net = self.net()?;
        let data = self.dataset()?;
        setup::check_compatible(net, data)?;
        let norm = setup::normalization(net, Some(data))?;
        let part = data.clone().subset(Subset::First { n: n.clamp(1, data.len().max(1)) })?;
        Ok((net, part, norm))
    }

    pub fn forget_caches(&mut self) {
        self.eval = None;
        self.baselines.clear();
    }

    /// The first `subset` images (all if fewer) prepared in batches of `batch`.
    pub fn eval_set(&mut self, subset: usize, batch: usize) -> Result<&CachedEvalSet> {
        let fresh = self.eval.as_ref().is_some_and(|c| c.subset == subset && c.batch == batch);
        if !fresh {
            let net = self.net()?;
            let data = self.dataset()?;
            setup::check_compatible(net, data)?;
            let n = subset.clamp(1, data.len().max(1));
            let part = data.clone().subset(Subset::First { n })?;
            let norm = setup::normalization(net, Some(data))?;
            let set = EvalSet::new(net, &part, &norm, batch.max(1))?;
            self.eval = Some(CachedEvalSet { subset, batch, set, data: part, prefix_for: None });
        }
        self.eval.as_ref().ok_or_else(|| anyhow!("no evaluation set"))
    }

    pub fn model_summary(&self) -> Result<ModelSummary> {
        let net = self.net()?;
        let mut layers = Vec::new();
        let non_finite = net.non_finite()?;
        for l in net.params.layers() {
            let (min, max) = match net.params.get(&format!("{}.weight", l.name)) {
                Some(p) => {
                    let v: Vec<f32> = p.var.as_tensor().flatten_all()?.to_vec1()?;
                    let min = v.iter().copied().fold(f32::INFINITY, f32::min);
                    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    (min, max)
                }
                None => (f32::NAN, f32::NAN),
            };
            layers.push(LayerRow {
                name: l.name.clone(),
                kind: l.kind,
                shape: l.shape.clone(),
                parameters: l.parameters,
                min,
                max,
                filterable: l.filterable,
                non_finite: non_finite
                    .iter()
                    .filter(|(key, _)| key.strip_prefix(l.name.as_str()).is_some_and(|rest| rest.starts_with('.')))
                    .map(|(_, n)| n)
                    .sum(),
            });
        }
        let classes = net
            .card
            .classes
            .clone()
            .or_else(|| self.data.as_ref().and_then(|d| d.classes.clone()))
            .unwrap_or_else(|| (0..net.num_classes).map(|i| i.to_string()).collect());
        let std0 = setup::normalization(net, self.data.as_ref()).map(|n| n.channel(0).1).unwrap_or(1.0);
        let name = match &self.model_source {
            Source::Embedded => embedded::MODEL_NAME.to_string(),
            Source::Path(p) => p.display().to_string(),
        };
        Ok(ModelSummary {
            name,
            architecture: net.card.architecture.to_string(),
            parameters: net.params.parameter_count(),
            input: net.card.input,
            layers,
            graph: net.graph(),
            classes,
            default_eps: setup::default_eps(net, self.data.as_ref()),
            std0,
            warnings: net.warnings.clone(),
            checkpoints: self.checkpoints.iter().map(|c| (c.path.clone(), c.epoch)).collect(),
            source: self.model_source.clone(),
        })
    }

    pub fn data_summary(&self) -> Result<DataSummary> {
        let d = self.dataset()?;
        Ok(DataSummary {
            name: d.name.clone(),
            images: d.len(),
            shape: d.shape,
            notes: d.notes.clone(),
            source: self.data_source.clone(),
        })
    }
}
