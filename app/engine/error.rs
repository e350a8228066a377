//! Typed errors of the engine. Messages say what is wrong first and the path last.

use std::path::{Path, PathBuf};

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{msg}: {}", path.display())]
    Checkpoint { msg: String, path: PathBuf },
    #[error("model card: {msg}: {}", path.display())]
    Card { msg: String, path: PathBuf },
    #[error("{0}")]
    Model(String),
    #[error("{msg}: {}", path.display())]
    Data { msg: String, path: PathBuf },
    #[error("{0}")]
    Config(String),
    // The cause is in the message, not a `#[source]`, so that printing the error chain
    // does not say it twice.
    #[error("cannot {action}: {cause}: {}", path.display())]
    Io { action: &'static str, path: PathBuf, cause: std::io::Error },
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("cancelled")]
    Cancelled,
}

impl EngineError {
    pub fn checkpoint(path: &Path, msg: impl Into<String>) -> Self {
        Self::Checkpoint { msg: msg.into(), path: path.to_path_buf() }
    }
    pub fn card(path: &Path, msg: impl Into<String>) -> Self {
        Self::Card { msg: msg.into(), path: path.to_path_buf() }
    }
    pub fn data(path: &Path, msg: impl Into<String>) -> Self {
        Self::Data { msg: msg.into(), path: path.to_path_buf() }
    }
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io { action, path: path.to_path_buf(), cause: source }
    }
    pub fn model(msg: impl Into<String>) -> Self {
        Self::Model(msg.into())
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Self::Config(msg.into())
    }
}

/// Reads a whole regular file, mapping the error to one that names the path. Anything else
/// (a named pipe, a device, a socket, a folder) is refused before it is opened: reading a
/// pipe blocks for ever and a device never ends.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    check_regular(path)?;
    std::fs::read(path).map_err(|e| EngineError::io("read", path, e))
}

/// Refuses whatever is not a regular file (symbolic links are followed), naming what it is.
pub fn check_regular(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| EngineError::io("read", path, e))?;
    if meta.is_file() {
        return Ok(());
    }
    let what = file_kind(&meta.file_type());
    Err(EngineError::io("read", path, std::io::Error::other(format!("{what}, not a regular file"))))
}

fn file_kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a named pipe";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    if t.is_dir() { "a folder" } else { "not a file" }
}
