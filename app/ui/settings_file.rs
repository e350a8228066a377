//! The settings' own file, `settings.json` beside eframe's `app.ron`, replaced atomically:
//! eframe rewrites `app.ron` in place, so a kill during a save could leave it truncated.
//! Settings an earlier version kept in `app.ron` are read once, when no file exists yet.

use std::path::{Path, PathBuf};

use super::settings::Settings;
use crate::engine::fsutil::write_atomic;

/// The app's id: its window class and the name of its storage folder.
pub const APP_ID: &str = "fragility-explorer";
const FILE_NAME: &str = "settings.json";
/// Far above any real settings file (a few kilobytes): a larger one is not read.
const MAX_BYTES: u64 = 1 << 20;

pub struct SettingsFile {
    path: PathBuf,
}

impl SettingsFile {
    /// The file in the platform's data folder for this app (None where there is none).
    pub fn standard() -> Option<Self> {
        eframe::storage_dir(APP_ID).map(|dir| Self::at(dir.join(FILE_NAME)))
    }

    pub fn at(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored settings, or the defaults with what to tell the user when the file cannot
    /// be read; without a file, those an earlier version kept in eframe's storage.
    pub fn load(&self, legacy: Option<&dyn eframe::Storage>) -> (Settings, Option<String>) {
        let unreadable = |why: String| {
            let note = format!(
                "the stored settings could not be read ({why}): starting with the defaults, which replace \
                 them on exit: {}",
                self.path.display()
            );
            (Settings::default(), Some(note))
        };
        match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::load_or_explain(legacy),
            Err(e) => unreadable(e.to_string()),
            Ok(m) if !m.is_file() => unreadable("not a regular file".into()),
            Ok(m) if m.len() > MAX_BYTES => unreadable(format!("{} bytes, more than settings ever take", m.len())),
            Ok(_) => match std::fs::read(&self.path) {
                Err(e) => unreadable(e.to_string()),
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(s) => (s, None),
                    Err(e) => unreadable(format!("damaged, or written by another version: {e}")),
                },
            },
        }
    }

    /// Replaces the file whole (or leaves it as it was).
    pub fn save(&self, settings: &Settings) -> crate::engine::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| crate::engine::EngineError::io("create", dir, e))?;
        }
        let json = serde_json::to_vec_pretty(settings).expect("settings serialise");
        write_atomic(&self.path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_damaged_files_start_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = SettingsFile::at(dir.path().join("sub").join(FILE_NAME));
        assert_eq!(file.load(None), (Settings::default(), None));
        let mut s = Settings::default();
        s.remember_model(Path::new("/a.pth"));
        file.save(&s).unwrap();
        assert_eq!(file.load(None), (s, None));
        for damaged in [&b"{\"threshold\": \"x\"}"[..], b"\x00\x01", b"{\"model\": "] {
            std::fs::write(file.path(), damaged).unwrap();
            let (loaded, note) = file.load(None);
            assert_eq!(loaded, Settings::default());
            assert!(note.is_some_and(|n| n.contains("could not be read") && n.contains(FILE_NAME)));
        }
        std::fs::remove_file(file.path()).unwrap();
        std::fs::create_dir(file.path()).unwrap();
        assert!(file.load(None).1.is_some_and(|n| n.contains("not a regular file")));
    }
}
