//! IDX files (MNIST, Fashion-MNIST), raw or gzip.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{Dataset, Known, Split};
use crate::engine::error::{EngineError, Result, read_file};

fn gunzip_if_needed(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| EngineError::data(path, format!("cannot decompress the gzip file ({e})")))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// Parses an IDX header: magic `0 0 0x08 ndim`, then ndim big-endian u32 sizes.
fn header(bytes: &[u8], path: &Path, want_dims: usize) -> Result<(Vec<usize>, usize)> {
    if bytes.len() < 4 {
        return Err(EngineError::data(path, "the IDX file is shorter than its 4-byte magic number"));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(EngineError::data(
            path,
            format!(
                "wrong IDX magic number {:02x}{:02x}{:02x}{:02x}: expected unsigned bytes (0x0000080{want_dims})",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    let ndim = bytes[3] as usize;
    if ndim != want_dims {
        return Err(EngineError::data(path, format!("the IDX file has {ndim} dimensions, expected {want_dims}")));
    }
    let start = 4 + 4 * ndim;
    if bytes.len() < start {
        return Err(EngineError::data(path, "the IDX header is truncated"));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().expect("4 bytes")) as usize)
        .collect();
    let expected = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
    let found = bytes.len() - start;
    if found != expected {
        let dims_txt = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
        return Err(EngineError::data(
            path,
            format!("the IDX header says {dims_txt} ({expected} bytes of data) but the file holds {found}"),
        ));
    }
    Ok((dims, start))
}

pub(super) fn parse_images(bytes: &[u8], path: &Path) -> Result<([usize; 3], Vec<u8>)> {
    let bytes = gunzip_if_needed(bytes.to_vec(), path)?;
    let (dims, start) = header(&bytes, path, 3)?;
    Ok(([1, dims[1], dims[2]], bytes[start..].to_vec()))
}

pub(super) fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u32>> {
    let bytes = gunzip_if_needed(bytes.to_vec(), path)?;
    let (_, start) = header(&bytes, path, 1)?;
    Ok(bytes[start..].iter().map(|&b| b as u32).collect())
}

/// Finds `{prefix}-{images,labels}-idx{3,1}-ubyte[.gz]` in `dir` (or its `raw/`).
fn locate(dir: &Path, prefix: &str, kind: &str, dims: usize) -> Option<PathBuf> {
    for sub in [dir.to_path_buf(), dir.join("raw")] {
        for sep in ['-', '.'] {
            for ext in ["", ".gz"] {
                let p = sub.join(format!("{prefix}-{kind}{sep}idx{dims}-ubyte{ext}"));
                if p.is_file() {
                    return Some(p);
                }
            }
        }
    }
    None
}

pub(super) fn find(dir: &Path, split: Split) -> Result<Option<Dataset>> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images = locate(dir, prefix, "images", 3);
    let labels = locate(dir, prefix, "labels", 1);
    let (images, labels) = match (images, labels) {
        (Some(i), Some(l)) => (i, l),
        (None, None) => {
            let other = if split == Split::Train { "t10k" } else { "train" };
            if locate(dir, other, "images", 3).is_some() {
                return Err(EngineError::data(
                    dir,
                    format!("this IDX folder has no {prefix}-images file for the {split:?} split"),
                ));
            }
            return Ok(None);
        }
        (Some(_), None) => return Err(EngineError::data(dir, format!("{prefix}-labels-idx1-ubyte is missing"))),
        (None, Some(_)) => return Err(EngineError::data(dir, format!("{prefix}-images-idx3-ubyte is missing"))),
    };
    let (shape, pixels) = parse_images(&read_file(&images)?, &images)?;
    let labels_v = parse_labels(&read_file(&labels)?, &labels)?;
    let n = pixels.len() / shape.iter().product::<usize>();
    if n != labels_v.len() {
        return Err(EngineError::data(dir, format!("{n} images but {} labels", labels_v.len())));
    }
    let lower = dir.to_string_lossy().to_ascii_lowercase();
    let known = if lower.contains("fashion") { Known::FashionMnist } else { Known::Mnist };
    Ok(Some(Dataset {
        name: format!(
            "{} {}",
            if known == Known::Mnist { "MNIST" } else { "Fashion-MNIST" },
            if split == Split::Train { "train" } else { "test" }
        ),
        known: Some(known),
        source: dir.to_path_buf(),
        shape,
        images: pixels,
        labels: labels_v,
        classes: Some(known.classes()),
        notes: Vec::new(),
    }))
}
