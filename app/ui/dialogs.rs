//! File dialogs behind a trait: rfd in the app, a script in tests. The app asks on a
//! thread of its own, so an open dialog never stops the window from painting.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, TryRecvError, bounded};

use super::actions::FigureId;

pub trait Dialogs: Send + Sync {
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

/// What a dialog's answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    OpenModel,
    OpenModelFolder,
    OpenData,
    Export(FigureId),
    ExportAll,
}

/// A dialog being shown; its answer arrives on a channel.
pub struct Pending {
    pub purpose: Purpose,
    answer: Receiver<Option<PathBuf>>,
}

impl Pending {
    /// Shows the dialog for `purpose`; `done` runs when the user has answered (a repaint).
    pub fn ask(dialogs: &Arc<dyn Dialogs>, purpose: Purpose, done: impl FnOnce() + Send + 'static) -> Self {
        let (tx, answer) = bounded(1);
        let dialogs = dialogs.clone();
        let show = move || {
            let path = match purpose {
                Purpose::OpenModel => dialogs.open_model(),
                Purpose::OpenModelFolder => dialogs.open_model_folder(),
                Purpose::OpenData => dialogs.open_data(),
                Purpose::Export(_) | Purpose::ExportAll => dialogs.save_folder(),
            };
            tx.send(path).ok();
            done();
        };
        // macOS wants its dialogs on the main thread; elsewhere they run beside the UI. A
        // thread that cannot start drops its sender, which reads as cancelled.
        if cfg!(target_os = "macos") {
            show();
        } else {
            let _ = std::thread::Builder::new().name("file-dialog".into()).spawn(show);
        }
        Self { purpose, answer }
    }

    /// The answer, once given: Some(None) means cancelled.
    pub fn answer(&self) -> Option<Option<PathBuf>> {
        match self.answer.try_recv() {
            Ok(a) => Some(a),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(None),
        }
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
