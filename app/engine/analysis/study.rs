//! The index a study writes beside its runs (`study.json`), and the trajectory results a
//! path names: one run's, or every run of a study, so that the app and `compare` open a
//! whole study as easily as one run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::trajectory::{RESULT_FILE, result_file};
use crate::engine::error::{EngineError, Result, read_file};

/// The index's name inside a study's `--out` folder.
pub const STUDY_FILE: &str = "study.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyIndex {
    /// The study file, as given.
    pub file: PathBuf,
    pub runs: Vec<StudyRun>,
    /// The comparison's folder, relative to the index.
    pub compare: PathBuf,
    /// Wall time of the whole study when one process ran it (none after a merge).
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyRun {
    pub name: String,
    /// The run's trajectory result, relative to the index.
    pub results: PathBuf,
    pub seconds: Option<f64>,
}

/// More runs than a study file names; a larger count read from a file is a lie.
const MAX_RUNS: usize = 10_000;

/// The trajectory results `path` names: a trajectory result (or its folder) is itself; a
/// study's index (or its folder) names every run's.
pub fn results_named(path: &Path) -> Result<Vec<PathBuf>> {
    let index = if path.is_dir() { path.join(STUDY_FILE) } else { path.to_path_buf() };
    let is_index = index.file_name().is_some_and(|n| n == STUDY_FILE) && index.is_file();
    if !is_index || path.is_dir() && path.join(RESULT_FILE).is_file() {
        return Ok(vec![result_file(path)]);
    }
    let study: StudyIndex = serde_json::from_slice(&read_file(&index)?)
        .map_err(|e| EngineError::data(&index, format!("not a study's index (the study.json `study` writes): {e}")))?;
    if study.runs.is_empty() || study.runs.len() > MAX_RUNS {
        return Err(EngineError::data(
            &index,
            format!("a study has 1 to {MAX_RUNS} runs, this names {}", study.runs.len()),
        ));
    }
    let base = index.parent().unwrap_or(Path::new(""));
    Ok(study.runs.iter().map(|r| base.join(&r.results)).collect())
}
