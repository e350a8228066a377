//! Datasets: IDX (MNIST, Fashion-MNIST), CIFAR-10 binary batches, image folders and
//! PNG files named `<name>_<index>_<label>.png`, held as u8 pixels until batched.

mod cifar;
mod folder;
mod idx;

use std::ops::Range;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::engine::card::Normalize;
use crate::engine::error::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    #[default]
    Test,
}

/// Which images of a split to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Subset {
    #[default]
    All,
    /// The first `n` images, in file order.
    First { n: usize },
    /// `n` images drawn without replacement with a seeded generator, kept in file order.
    Random { n: usize, seed: u64 },
}

/// Where a dataset comes from and which part of it to use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    pub path: PathBuf,
    #[serde(default)]
    pub split: Split,
    #[serde(default)]
    pub subset: Subset,
}

impl DataSpec {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), split: Split::Test, subset: Subset::All }
    }
}

/// Datasets with defaults in docs/METHOD.md (normalisation, eps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Known {
    Mnist,
    FashionMnist,
    Cifar10,
}

impl Known {
    pub fn from_name(name: &str) -> Option<Self> {
        let n: String = name.to_ascii_lowercase().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        match n.as_str() {
            "mnist" => Some(Self::Mnist),
            "fashionmnist" | "fmnist" => Some(Self::FashionMnist),
            "cifar10" | "cifar" => Some(Self::Cifar10),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion-mnist",
            Self::Cifar10 => "cifar10",
        }
    }

    /// METHOD.md section 10.
    pub fn normalize(self) -> Normalize {
        let (mean, std) = match self {
            Self::Mnist => (vec![0.1307], vec![0.3081]),
            Self::FashionMnist => (vec![0.2860], vec![0.3530]),
            Self::Cifar10 => (vec![0.5; 3], vec![0.5; 3]),
        };
        Normalize { mean, std }
    }

    pub fn default_eps(self) -> f64 {
        match self {
            Self::Mnist | Self::FashionMnist => 0.3,
            Self::Cifar10 => 0.015,
        }
    }

    pub fn classes(self) -> Vec<String> {
        let names: &[&str] = match self {
            Self::Mnist => &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            Self::FashionMnist => &[
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
            Self::Cifar10 => {
                &["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
            }
        };
        names.iter().map(|s| s.to_string()).collect()
    }
}

#[derive(Debug, Clone)]
pub struct Dataset {
    /// A short description for display: "MNIST test (1,000 of 10,000)".
    pub name: String,
    pub known: Option<Known>,
    pub source: PathBuf,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// Pixels, image after image, each channel-major (C, H, W).
    pub images: Vec<u8>,
    pub labels: Vec<u32>,
    pub classes: Option<Vec<String>>,
    /// Said once to the user (a split that does not exist here, ...).
    pub notes: Vec<String>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Highest label + 1, or the number of class names if larger.
    pub fn num_classes(&self) -> usize {
        let from_labels = self.labels.iter().max().map_or(0, |m| *m as usize + 1);
        from_labels.max(self.classes.as_ref().map_or(0, Vec::len))
    }

    /// Normalised images `range` as an (N, C, H, W) f32 tensor and labels as u32.
    pub fn batch(&self, range: Range<usize>, norm: &Normalize, device: &Device) -> Result<(Tensor, Tensor)> {
        let [c, h, w] = self.shape;
        let plane = h * w;
        let n = range.len();
        let mut x = Vec::with_capacity(n * c * plane);
        for i in range.clone() {
            for (ch, pixels) in self.image(i).chunks_exact(plane).enumerate() {
                let (mean, std) = norm.channel(ch);
                // The same f32 operations as torchvision's ToTensor then Normalize.
                x.extend(pixels.iter().map(|&p| (p as f32 / 255.0 - mean) / std));
            }
        }
        let x = Tensor::from_vec(x, (n, c, h, w), device)?;
        let y = Tensor::from_slice(&self.labels[range], n, device)?;
        Ok((x, y))
    }

    /// Keeps the images at `indices` (in that order).
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset { images, labels: indices.iter().map(|&i| self.labels[i]).collect(), ..self.clone_meta() }
    }

    fn clone_meta(&self) -> Dataset {
        Dataset {
            name: self.name.clone(),
            known: self.known,
            source: self.source.clone(),
            shape: self.shape,
            images: Vec::new(),
            labels: Vec::new(),
            classes: self.classes.clone(),
            notes: self.notes.clone(),
        }
    }

    /// Applies a subset choice; asking for more images than there are is an error.
    pub fn subset(self, subset: Subset) -> Result<Dataset> {
        let total = self.len();
        let Some(indices) = subset_indices(subset, total, &self.source)? else { return Ok(self) };
        let mut out = self.select(&indices);
        out.name = subset_name(std::mem::take(&mut out.name), subset, indices.len(), total);
        Ok(out)
    }

    /// Checks that the labels fit the class count (after loading, against a model).
    pub fn check_labels(&self, classes: usize) -> Result<()> {
        if let Some(max) = self.labels.iter().max()
            && *max as usize >= classes
        {
            return Err(EngineError::data(
                &self.source,
                format!("label {max} does not fit a network with {classes} classes"),
            ));
        }
        Ok(())
    }
}

/// Opens the dataset at `spec.path`, whatever its format, and applies the subset.
pub fn load(spec: &DataSpec) -> Result<Dataset> {
    let path = &spec.path;
    // Every loader takes the subset before decoding: an evaluation of N images decodes
    // about N images, however large the set.
    let subset = spec.subset;
    let data = if path.is_dir() {
        if let Some(d) = idx::find(path, spec.split, subset)? {
            d
        } else if let Some(d) = cifar::find(path, spec.split, subset)? {
            d
        } else {
            folder::load(path, spec.split, subset)?
        }
    } else if path.is_file() {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("bin") => cifar::load_files(&[path.to_path_buf()], path, subset)?,
            Some("png") => folder::load_named_pngs(path, subset)?,
            _ => {
                return Err(EngineError::data(
                    path,
                    "not a dataset: expected a folder (IDX, CIFAR-10 binary, image folder or named PNGs), \
                     a CIFAR-10 .bin batch or a PNG file",
                ));
            }
        }
    } else if let Some(d) = folder::load_prefix(path, subset)? {
        d
    } else {
        return Err(EngineError::data(path, "no such file or folder"));
    };
    if data.is_empty() {
        return Err(EngineError::data(path, "the dataset holds no images"));
    }
    Ok(data)
}

/// The items a subset keeps, in file order, chosen before any of them is decoded; with the
/// count they were chosen from.
fn keep<T>(items: Vec<T>, subset: Subset, source: &Path) -> Result<(Vec<T>, usize)> {
    let total = items.len();
    if total == 0 {
        return Ok((items, 0));
    }
    let Some(indices) = subset_indices(subset, total, source)? else { return Ok((items, total)) };
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    Ok((indices.into_iter().filter_map(|i| slots[i].take()).collect(), total))
}

/// A dataset's name with the part of it that is used, as `subset` leaves it.
fn subset_name(name: String, subset: Subset, kept: usize, total: usize) -> String {
    match subset {
        Subset::All => name,
        _ => format!("{name} ({kept} of {total})"),
    }
}

/// A dataset from in-memory IDX files (gzip or raw), e.g. the embedded default.
pub fn from_idx_bytes(name: &str, images: &[u8], labels: &[u8], known: Option<Known>) -> Result<Dataset> {
    idx::from_bytes(name, images, labels, known, Subset::All)
}

/// The indices a subset keeps of `total` images, ascending (None: all of them). Asking for
/// none, or for more than there are, is an error.
pub(crate) fn subset_indices(subset: Subset, total: usize, source: &Path) -> Result<Option<Vec<usize>>> {
    let (n, indices) = match subset {
        Subset::All => return Ok(None),
        Subset::First { n } => (n, (0..n.min(total)).collect::<Vec<_>>()),
        Subset::Random { n, seed } => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut idx = sample(&mut rng, total, n.min(total)).into_vec();
            idx.sort_unstable();
            (n, idx)
        }
    };
    if n == 0 {
        return Err(EngineError::data(source, "a subset of 0 images was asked for"));
    }
    if n > total {
        return Err(EngineError::data(source, format!("{n} images were asked for but this split has only {total}")));
    }
    Ok(Some(indices))
}

fn display_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}
