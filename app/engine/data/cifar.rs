//! CIFAR-10 binary batches: records of one label byte and 3x32x32 channel-major pixels.
//! The files' sizes are checked first; then only the records a subset asks for are read.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{Dataset, Known, Split, Subset, subset_indices, subset_name};
use crate::engine::error::{EngineError, Result, check_regular, read_file};

const RECORD: usize = 1 + 3 * 32 * 32;

pub(super) fn find(dir: &Path, split: Split, subset: Subset) -> Result<Option<Dataset>> {
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
    let split_name = if split == Split::Train { "train" } else { "test" };
    let mut d = load_named(&present, &dir, subset, format!("CIFAR-10 {split_name}"))?;
    if present.len() < files.len() {
        d.notes.push(format!("only {} of the {} training batches are present", present.len(), files.len()));
    }
    Ok(Some(d))
}

pub(super) fn load_files(files: &[PathBuf], source: &Path, subset: Subset) -> Result<Dataset> {
    load_named(files, source, subset, "CIFAR-10".into())
}

/// Records in each file, from its size (which must be a whole number of records).
fn record_counts(files: &[PathBuf]) -> Result<Vec<usize>> {
    files
        .iter()
        .map(|f| {
            check_regular(f)?;
            let len = std::fs::metadata(f).map_err(|e| EngineError::io("read", f, e))?.len();
            if len == 0 || len % RECORD as u64 != 0 {
                return Err(EngineError::data(
                    f,
                    format!("{len} bytes is not a whole number of CIFAR-10 records ({RECORD} bytes each)"),
                ));
            }
            Ok((len / RECORD as u64) as usize)
        })
        .collect()
}

fn load_named(files: &[PathBuf], source: &Path, subset: Subset, name: String) -> Result<Dataset> {
    let counts = record_counts(files)?;
    let total: usize = counts.iter().sum();
    let wanted = subset_indices(subset, total, source)?;
    let kept = wanted.as_ref().map_or(total, Vec::len);
    let mut images = Vec::with_capacity(kept * (RECORD - 1));
    let mut labels = Vec::with_capacity(kept);
    let mut first = 0;
    for (f, &count) in files.iter().zip(&counts) {
        // This file's records that are used, as indices into it (sorted: subsets keep file order).
        let mine: Option<Vec<usize>> = wanted
            .as_ref()
            .map(|w| w.iter().filter(|&&i| (first..first + count).contains(&i)).map(|i| i - first).collect());
        let mut take = |i: usize, rec: &[u8]| -> Result<()> {
            if rec[0] > 9 {
                return Err(EngineError::data(
                    f,
                    format!("record {i} has label {}, CIFAR-10 labels are 0 to 9", rec[0]),
                ));
            }
            labels.push(rec[0] as u32);
            images.extend_from_slice(&rec[1..]);
            Ok(())
        };
        match mine {
            None => {
                let bytes = read_file(f)?;
                for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
                    take(i, rec)?;
                }
            }
            Some(mine) => {
                let mut file = File::open(f).map_err(|e| EngineError::io("read", f, e))?;
                let mut rec = [0u8; RECORD];
                for i in mine {
                    file.seek(SeekFrom::Start((i * RECORD) as u64))
                        .and_then(|_| file.read_exact(&mut rec))
                        .map_err(|e| EngineError::io("read", f, e))?;
                    take(i, &rec)?;
                }
            }
        }
        first += count;
    }
    Ok(Dataset {
        name: subset_name(name, subset, kept, total),
        known: Some(Known::Cifar10),
        source: source.to_path_buf(),
        shape: [3, 32, 32],
        images,
        labels,
        classes: Some(Known::Cifar10.classes()),
        notes: Vec::new(),
    })
}
