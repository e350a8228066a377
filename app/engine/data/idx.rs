//! IDX files (MNIST, Fashion-MNIST), raw or gzip, read as streams: the header first, checked
//! before anything is allocated, then only the images a subset asks for. A raw file's length
//! must match its header exactly; a gzip stream is never inflated past what the header
//! announces, so a compression bomb costs no more memory than an honest file of its header.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::GzDecoder;

use super::{Dataset, Known, Split, Subset, subset_indices, subset_name};
use crate::engine::error::{EngineError, Result, check_regular};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A byte stream that can skip ahead: by seeking in a plain file, by reading past in a
/// decompressed or in-memory one.
trait Stream: Read {
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        let copied = std::io::copy(&mut self.take(n), &mut std::io::sink())?;
        if copied < n { Err(std::io::ErrorKind::UnexpectedEof.into()) } else { Ok(()) }
    }
}

impl Stream for BufReader<File> {
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        self.seek_relative(i64::try_from(n).map_err(std::io::Error::other)?)
    }
}
impl<R: BufRead> Stream for GzDecoder<R> {}
impl Stream for &[u8] {}

/// An IDX file whose header has been read and checked.
struct Idx<'a> {
    path: PathBuf,
    dims: Vec<usize>,
    /// Bytes of one item (an image, a label).
    item: usize,
    gzip: bool,
    stream: Box<dyn Stream + 'a>,
    /// Items read or skipped so far.
    at: usize,
}

impl<'a> Idx<'a> {
    fn open_file(path: &Path, want_dims: usize) -> Result<Idx<'static>> {
        check_regular(path)?;
        let file = File::open(path).map_err(|e| EngineError::io("read", path, e))?;
        let len = file.metadata().map_err(|e| EngineError::io("read", path, e))?.len();
        let mut reader = BufReader::new(file);
        let head = reader.fill_buf().map_err(|e| EngineError::io("read", path, e))?;
        let gzip = head.starts_with(&GZIP_MAGIC);
        let named_gz = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
        if named_gz && !gzip {
            let start: Vec<String> = head.iter().take(4).map(|b| format!("{b:02x}")).collect();
            return Err(EngineError::data(
                path,
                format!("the file is named .gz but is not gzip-compressed (it starts with {})", start.join(" ")),
            ));
        }
        let stream: Box<dyn Stream> = if gzip { Box::new(GzDecoder::new(reader)) } else { Box::new(reader) };
        let idx = Idx::open(path, stream, gzip, want_dims)?;
        let data = u64::try_from(idx.dims.iter().product::<usize>()).unwrap_or(u64::MAX);
        if !gzip && len.checked_sub(idx.header_len()) != Some(data) {
            return Err(idx.length_error(len.saturating_sub(idx.header_len())));
        }
        Ok(idx)
    }

    fn open_bytes(name: &Path, bytes: &'a [u8], want_dims: usize) -> Result<Idx<'a>> {
        let gzip = bytes.starts_with(&GZIP_MAGIC);
        let stream: Box<dyn Stream + 'a> = if gzip { Box::new(GzDecoder::new(bytes)) } else { Box::new(bytes) };
        let idx = Idx::open(name, stream, gzip, want_dims)?;
        if !gzip && (bytes.len() as u64).checked_sub(idx.header_len()) != Some(idx.data_len() as u64) {
            return Err(idx.length_error((bytes.len() as u64).saturating_sub(idx.header_len())));
        }
        Ok(idx)
    }

    /// Reads the magic number `0 0 0x08 ndim` and ndim big-endian u32 sizes.
    fn open(path: &Path, mut stream: Box<dyn Stream + 'a>, gzip: bool, want_dims: usize) -> Result<Idx<'a>> {
        let mut magic = [0u8; 4];
        read_exact(&mut stream, &mut magic, path, gzip, "the IDX file is shorter than its 4-byte magic number")?;
        if magic[..3] != [0, 0, 0x08] {
            return Err(EngineError::data(
                path,
                format!(
                    "wrong IDX magic number {:02x}{:02x}{:02x}{:02x}: expected unsigned bytes (0x0000080{want_dims})",
                    magic[0], magic[1], magic[2], magic[3]
                ),
            ));
        }
        let ndim = magic[3] as usize;
        if ndim != want_dims {
            return Err(EngineError::data(path, format!("the IDX file has {ndim} dimensions, expected {want_dims}")));
        }
        let mut dims = Vec::with_capacity(ndim);
        for _ in 0..ndim {
            let mut d = [0u8; 4];
            read_exact(&mut stream, &mut d, path, gzip, "the IDX header is truncated")?;
            dims.push(u32::from_be_bytes(d) as usize);
        }
        let text = dims_text(&dims);
        if dims.contains(&0) {
            return Err(EngineError::data(
                path,
                format!("the IDX header's sizes {text} hold a 0: the file has no data"),
            ));
        }
        let Some(total) = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) else {
            return Err(EngineError::data(
                path,
                format!("the IDX header's sizes {text} overflow this machine's memory"),
            ));
        };
        let item = total / dims[0];
        Ok(Idx { path: path.to_path_buf(), dims, item, gzip, stream, at: 0 })
    }

    fn count(&self) -> usize {
        self.dims[0]
    }

    fn header_len(&self) -> u64 {
        4 + 4 * self.dims.len() as u64
    }

    fn data_len(&self) -> usize {
        self.count() * self.item
    }

    fn length_error(&self, found: u64) -> EngineError {
        let what = if self.gzip { "the decompressed stream holds" } else { "the file holds" };
        EngineError::data(
            &self.path,
            format!(
                "the IDX header says {} ({} bytes of data) but {what} {found}",
                dims_text(&self.dims),
                self.data_len()
            ),
        )
    }

    /// The items at `indices` (ascending, below the count), one after another.
    fn read(&mut self, indices: &[usize]) -> Result<Vec<u8>> {
        let wanted = indices.len() as u64 * self.item as u64;
        crate::engine::fsutil::check_fits_in_memory(wanted, "the images asked for")
            .map_err(|e| EngineError::data(&self.path, e))?;
        // Grown as data arrives, never sized from the header alone: a header announcing huge
        // images costs nothing until their bytes are there.
        let mut out = Vec::with_capacity((indices.len() * self.item).min(1 << 22));
        for &i in indices {
            debug_assert!(i >= self.at && i < self.count());
            let gap = (i - self.at) as u64 * self.item as u64;
            if gap > 0 {
                self.stream.skip(gap).map_err(|e| self.stream_error(e))?;
            }
            let got =
                (&mut self.stream).take(self.item as u64).read_to_end(&mut out).map_err(|e| self.stream_error(e))?;
            if got < self.item {
                return Err(self.stream_error(std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.at = i + 1;
        }
        Ok(out)
    }

    /// After every item was read: a stream that goes on past its header is refused.
    fn expect_end(&mut self) -> Result<()> {
        let mut extra = 0u64;
        let mut buf = [0u8; 4096];
        // Counting a bomb's surplus would be unbounded: a little is enough to say it is there.
        while extra < (1 << 20) {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => extra += n as u64,
                Err(e) => return Err(self.stream_error(e)),
            }
        }
        if extra > 0 {
            let more = if extra >= (1 << 20) { "more than " } else { "" };
            return Err(EngineError::data(
                &self.path,
                format!(
                    "the IDX header says {} ({} bytes of data) but the data goes on for {more}{extra} bytes more",
                    dims_text(&self.dims),
                    self.data_len()
                ),
            ));
        }
        Ok(())
    }

    fn stream_error(&self, e: std::io::Error) -> EngineError {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            let what = if self.gzip { "the decompressed stream ends" } else { "the file ends" };
            EngineError::data(
                &self.path,
                format!("the IDX header says {} but {what} before image {}", dims_text(&self.dims), self.at + 1),
            )
        } else if self.gzip {
            EngineError::data(&self.path, format!("cannot decompress the gzip file ({e})"))
        } else {
            EngineError::io("read", &self.path, e)
        }
    }
}

fn read_exact(stream: &mut Box<dyn Stream + '_>, buf: &mut [u8], path: &Path, gzip: bool, short: &str) -> Result<()> {
    stream.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => EngineError::data(path, short),
        _ if gzip => EngineError::data(path, format!("cannot decompress the gzip file ({e})")),
        _ => EngineError::io("read", path, e),
    })
}

fn dims_text(dims: &[usize]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
}

/// Images and labels of one split, only those `subset` asks for.
struct Parsed {
    shape: [usize; 3],
    images: Vec<u8>,
    labels: Vec<u32>,
    total: usize,
}

fn parse(mut images: Idx<'_>, mut labels: Idx<'_>, subset: Subset) -> Result<Parsed> {
    if images.count() != labels.count() {
        return Err(EngineError::data(
            &images.path,
            format!("{} images but {} labels ({})", images.count(), labels.count(), labels.path.display()),
        ));
    }
    let total = images.count();
    let all = subset_indices(subset, total, &images.path)?;
    let indices: Vec<usize> = all.clone().unwrap_or_else(|| (0..total).collect());
    let shape = [1, images.dims[1], images.dims[2]];
    let pixels = images.read(&indices)?;
    let label_bytes = labels.read(&indices)?;
    if all.is_none() {
        images.expect_end()?;
        labels.expect_end()?;
    }
    Ok(Parsed { shape, images: pixels, labels: label_bytes.into_iter().map(u32::from).collect(), total })
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

/// The split's IDX pair in `dir`, with the subset taken while reading (None: not an IDX folder).
pub(super) fn find(dir: &Path, split: Split, subset: Subset) -> Result<Option<Dataset>> {
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
    let parsed = parse(Idx::open_file(&images, 3)?, Idx::open_file(&labels, 1)?, subset)?;
    let lower = dir.to_string_lossy().to_ascii_lowercase();
    let known = if lower.contains("fashion") { Known::FashionMnist } else { Known::Mnist };
    let name = format!(
        "{} {}",
        if known == Known::Mnist { "MNIST" } else { "Fashion-MNIST" },
        if split == Split::Train { "train" } else { "test" }
    );
    Ok(Some(dataset(name, Some(known), dir.to_path_buf(), parsed, subset)))
}

/// A dataset from in-memory IDX files (gzip or raw), with the subset taken while reading.
pub(super) fn from_bytes(
    name: &str,
    images: &[u8],
    labels: &[u8],
    known: Option<Known>,
    subset: Subset,
) -> Result<Dataset> {
    let source = PathBuf::from(name);
    let parsed = parse(Idx::open_bytes(&source, images, 3)?, Idx::open_bytes(&source, labels, 1)?, subset)?;
    Ok(dataset(name.to_string(), known, source, parsed, subset))
}

fn dataset(name: String, known: Option<Known>, source: PathBuf, p: Parsed, subset: Subset) -> Dataset {
    let name = subset_name(name, subset, p.labels.len(), p.total);
    Dataset {
        name,
        known,
        source,
        shape: p.shape,
        images: p.images,
        labels: p.labels,
        classes: known.map(Known::classes),
        notes: Vec::new(),
    }
}
