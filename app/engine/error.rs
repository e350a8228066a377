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
    #[error("cannot {action}: {source}: {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
        Self::Io { action, path: path.to_path_buf(), source }
    }
    pub fn model(msg: impl Into<String>) -> Self {
        Self::Model(msg.into())
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Self::Config(msg.into())
    }
}

/// Reads a whole file, mapping the error to one that names the path.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| EngineError::io("read", path, e))
}
