//! Arguments shared by subcommands: the model, the data, the device.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::embedded;
use crate::engine::DEFAULT_SEED;
use crate::engine::card::Architecture;
use crate::engine::data::{self, DataSpec, Dataset, Split, Subset};
use crate::engine::device::{self, DeviceChoice};
use crate::engine::model::{CardOrigin, Network};
use crate::export::format::group;

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Checkpoint: safetensors or a PyTorch .pth/.pt zip (default: the embedded MNIST CNN)
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Model card (default: the checkpoint's name with .json, else recognised from its keys)
    #[arg(long, value_name = "FILE")]
    pub card: Option<PathBuf>,
    /// Where to compute
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
}

impl ModelArgs {
    pub fn load(&self) -> Result<Network> {
        let dev = device::open(self.device)?;
        let net = match &self.model {
            Some(p) => Network::load(p, self.card.as_deref(), &dev)?,
            None => embedded::network(&dev).context("loading the embedded model")?,
        };
        for w in &net.warnings {
            eprintln!("warning: {w}");
        }
        Ok(net)
    }

    pub fn describe(&self, net: &Network) -> String {
        let name = self.model.as_ref().map_or(embedded::MODEL_NAME.to_string(), |p| p.display().to_string());
        let card = match &net.card_origin {
            CardOrigin::File(p) => format!("card {}", p.display()),
            CardOrigin::Detected(_) if net.card.architecture == Architecture::Onnx => {
                "card from the graph's input".to_string()
            }
            CardOrigin::Detected(_) => "architecture recognised from the keys".to_string(),
            CardOrigin::Given => "built-in card".to_string(),
        };
        format!("{name} ({}, {} parameters, {card})", net.card.architecture, group(net.params.parameter_count()))
    }
}

#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Dataset folder or file: IDX (MNIST, Fashion-MNIST), CIFAR-10 .bin batches, an image
    /// folder, or named PNGs (default: the embedded 1,000 MNIST test images)
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Which split to use
    #[arg(long, value_enum, default_value_t = Split::Test)]
    pub split: Split,
    /// Use only the first N images
    #[arg(long, value_name = "N", conflicts_with = "sample")]
    pub limit: Option<usize>,
    /// Use N images drawn at random (see --seed)
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Seed for --sample
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub data_seed: u64,
}

impl DataArgs {
    pub fn subset(&self) -> Subset {
        match (self.limit, self.sample) {
            (Some(n), _) => Subset::First { n },
            (None, Some(n)) => Subset::Random { n, seed: self.data_seed },
            _ => Subset::All,
        }
    }

    pub fn load(&self) -> Result<Dataset> {
        self.load_subset(self.subset())
    }

    /// Like `load`, but without --limit or --sample only the first `n` images (or all,
    /// if there are fewer).
    pub fn load_or_first(&self, n: usize) -> Result<Dataset> {
        match self.subset() {
            Subset::All => {
                let d = self.load_subset(Subset::All)?;
                if d.len() > n { Ok(d.subset(Subset::First { n })?) } else { Ok(d) }
            }
            s => self.load_subset(s),
        }
    }

    fn load_subset(&self, subset: Subset) -> Result<Dataset> {
        let d = match &self.data {
            Some(p) => data::load(&DataSpec { path: p.clone(), split: self.split, subset })?,
            None => embedded::dataset()?.subset(subset)?,
        };
        for n in &d.notes {
            eprintln!("note: {n}");
        }
        Ok(d)
    }
}

/// Creates an output folder and proves it can be written, before any work starts: a folder
/// that refuses files is found in a second, not after an hour of sweeping.
pub fn prepare_out(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the output folder {}", dir.display()))?;
    let probe = dir.join(format!(".fragility-explorer-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| format!("cannot write into the output folder {}", dir.display()))?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}

/// Where a finished or cancelled result is written: `dir`, unless the result was cancelled
/// and `dir` already holds a complete one (its `main` file without `"cancelled": true`).
/// Then the partial result goes to a new folder inside `dir`, so both are kept, and the
/// user is told where.
pub fn result_dir(dir: &std::path::Path, main: &str, cancelled: bool) -> Result<PathBuf> {
    let complete_before = std::fs::read(dir.join(main))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.get("cancelled") != Some(&serde_json::Value::Bool(true)));
    if !(cancelled && complete_before) {
        return Ok(dir.to_path_buf());
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let partial = dir.join(format!("cancelled-{stamp}"));
    prepare_out(&partial)?;
    eprintln!(
        "{} holds a complete earlier result: the cancelled one goes to {} instead",
        dir.join(main).display(),
        partial.display()
    );
    Ok(partial)
}
