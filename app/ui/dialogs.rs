//! File dialogs behind a trait: rfd in the app, a script in tests.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

pub trait Dialogs {
    /// A checkpoint file.
    fn open_model(&self) -> Option<PathBuf>;
    /// A folder of checkpoints (a training run).
    fn open_model_folder(&self) -> Option<PathBuf>;
    /// A dataset file or folder.
    fn open_data(&self) -> Option<PathBuf>;
    /// A folder to export figures into.
    fn save_folder(&self) -> Option<PathBuf>;
}

/// Native dialogs through rfd (xdg-portal on Linux: no portal running reads as cancelled).
pub struct RfdDialogs;

impl Dialogs for RfdDialogs {
    fn open_model(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open checkpoint")
            .add_filter("Checkpoints", &["safetensors", "pth", "pt"])
            .pick_file()
    }

    fn open_model_folder(&self) -> Option<PathBuf> {
        rfd::FileDialog::new().set_title("Open a folder of checkpoints").pick_folder()
    }

    fn open_data(&self) -> Option<PathBuf> {
        // Most datasets are folders (IDX, CIFAR-10, image folders); single files are .bin or .png.
        rfd::FileDialog::new().set_title("Open dataset folder").pick_folder()
    }

    fn save_folder(&self) -> Option<PathBuf> {
        rfd::FileDialog::new().set_title("Export figures into").pick_folder()
    }
}

/// Answers queued in advance, for tests; an empty queue reads as cancelled.
#[derive(Default)]
pub struct ScriptedDialogs {
    pub models: Mutex<VecDeque<PathBuf>>,
    pub data: Mutex<VecDeque<PathBuf>>,
    pub folders: Mutex<VecDeque<PathBuf>>,
}

impl ScriptedDialogs {
    fn next(q: &Mutex<VecDeque<PathBuf>>) -> Option<PathBuf> {
        q.lock().ok().and_then(|mut q| q.pop_front())
    }

    pub fn push(q: &Mutex<VecDeque<PathBuf>>, p: impl Into<PathBuf>) {
        if let Ok(mut q) = q.lock() {
            q.push_back(p.into());
        }
    }
}

impl Dialogs for ScriptedDialogs {
    fn open_model(&self) -> Option<PathBuf> {
        Self::next(&self.models)
    }
    fn open_model_folder(&self) -> Option<PathBuf> {
        Self::next(&self.models)
    }
    fn open_data(&self) -> Option<PathBuf> {
        Self::next(&self.data)
    }
    fn save_folder(&self) -> Option<PathBuf> {
        Self::next(&self.folders)
    }
}

impl<T: Dialogs> Dialogs for std::sync::Arc<T> {
    fn open_model(&self) -> Option<PathBuf> {
        (**self).open_model()
    }
    fn open_model_folder(&self) -> Option<PathBuf> {
        (**self).open_model_folder()
    }
    fn open_data(&self) -> Option<PathBuf> {
        (**self).open_data()
    }
    fn save_folder(&self) -> Option<PathBuf> {
        (**self).save_folder()
    }
}
