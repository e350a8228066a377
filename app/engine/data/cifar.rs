//! CIFAR-10 binary batches: records of one label byte and 3x32x32 channel-major pixels.

use std::path::{Path, PathBuf};

use super::{Dataset, Known, Split};
use crate::engine::error::{EngineError, Result, read_file};

const RECORD: usize = 1 + 3 * 32 * 32;

pub(super) fn find(dir: &Path, split: Split) -> Result<Option<Dataset>> {
    let dir =
        if dir.join("cifar-10-batches-bin").is_dir() { dir.join("cifar-10-batches-bin") } else { dir.to_path_buf() };
    let files: Vec<PathBuf> = match split {
        Split::Test => vec![dir.join("test_batch.bin")],
        Split::Train => (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).collect(),
    };
    let present: Vec<PathBuf> = files.iter().filter(|f| f.is_file()).cloned().collect();
    let any_cifar = dir.join("test_batch.bin").is_file() || dir.join("data_batch_1.bin").is_file();
    if !any_cifar {
        return Ok(None);
    }
    if present.is_empty() {
        return Err(EngineError::data(
            &dir,
            format!("this CIFAR-10 folder has no batch files for the {split:?} split"),
        ));
    }
    let mut d = load_files(&present, &dir)?;
    if present.len() < files.len() {
        d.notes.push(format!("only {} of the {} training batches are present", present.len(), files.len()));
    }
    d.name = format!("CIFAR-10 {}", if split == Split::Train { "train" } else { "test" });
    Ok(Some(d))
}

pub(super) fn load_files(files: &[PathBuf], source: &Path) -> Result<Dataset> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        let bytes = read_file(f)?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            return Err(EngineError::data(
                f,
                format!("{} bytes is not a whole number of CIFAR-10 records ({RECORD} bytes each)", bytes.len()),
            ));
        }
        for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
            if rec[0] > 9 {
                return Err(EngineError::data(
                    f,
                    format!("record {i} has label {}, CIFAR-10 labels are 0 to 9", rec[0]),
                ));
            }
            labels.push(rec[0] as u32);
            images.extend_from_slice(&rec[1..]);
        }
    }
    Ok(Dataset {
        name: "CIFAR-10".into(),
        known: Some(Known::Cifar10),
        source: source.to_path_buf(),
        shape: [3, 32, 32],
        images,
        labels,
        classes: Some(Known::Cifar10.classes()),
        notes: Vec::new(),
    })
}
