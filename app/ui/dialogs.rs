//! File dialogs behind a trait: rfd in the app, a script in tests. The app asks on a
//! thread of its own, so an open dialog never stops the window from painting. Where no
//! native dialog can be shown (no desktop portal on Linux), the trait says why and the app
//! opens its own browser, whose answer comes back the same way.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded};

use super::actions::FigureId;

/// What dialogs offer and what the browser highlights: the engine's model files.
pub use crate::engine::checkpoint::EXTENSIONS as CHECKPOINT_EXTENSIONS;

pub trait Dialogs: Send + Sync {
    /// Whether the native dialogs can be shown here; the error says why not, in a few
    /// words, and the app then opens its own browser. Called on the dialog thread.
    fn native(&self) -> Result<(), String> {
        Ok(())
    }
    /// A checkpoint file.
    fn open_model(&self) -> Option<PathBuf>;
    /// A folder of checkpoints (a training run).
    fn open_model_folder(&self) -> Option<PathBuf>;
    /// A dataset file or folder.
    fn open_data(&self) -> Option<PathBuf>;
    /// A folder to export figures into.
    fn save_folder(&self) -> Option<PathBuf>;
    /// A trajectory result (trajectory.json) to add to the Compare view.
    fn open_results(&self) -> Option<PathBuf>;
}

/// Native dialogs through rfd. On Linux and the BSDs rfd asks the desktop portal and, when
/// that call fails, runs zenity; with neither, it answers "cancelled", so `native` checks
/// first.
pub struct RfdDialogs;

impl Dialogs for RfdDialogs {
    fn native(&self) -> Result<(), String> {
        portal::check()
    }

    fn open_model(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open checkpoint")
            .add_filter("Checkpoints", &CHECKPOINT_EXTENSIONS)
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

    fn open_results(&self) -> Option<PathBuf> {
        rfd::FileDialog::new().set_title("Add a run to compare").add_filter("Trajectory results", &["json"]).pick_file()
    }
}

/// Whether rfd can show a dialog on this desktop, asked of the D-Bus session bus.
#[cfg(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
))]
mod portal {
    use std::time::Duration;

    const PORTAL: &str = "org.freedesktop.portal.Desktop";
    /// A bus that takes the connection but never answers must not hold the dialog forever;
    /// a portal started on demand answers well within this.
    const TIMEOUT: Duration = Duration::from_secs(5);

    /// Ok when rfd will show a dialog: through the portal, or else through zenity.
    pub fn check() -> Result<(), String> {
        match portal_answers() {
            Ok(()) => Ok(()),
            Err(_) if on_path("zenity") => Ok(()),
            Err(why) => Err(format!("{why}, and zenity is not installed")),
        }
    }

    /// Asks the bus on a thread of its own, so that a silent bus costs at most `TIMEOUT`.
    fn portal_answers() -> Result<(), String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("portal-check".into())
            .spawn(move || {
                tx.send(async_io::block_on(ask_bus())).ok();
            })
            .map_err(|e| format!("could not look for a desktop portal ({e})"))?;
        rx.recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| Err(format!("the D-Bus session bus did not answer within {} s", TIMEOUT.as_secs())))
    }

    async fn ask_bus() -> Result<(), String> {
        let conn = zbus::Connection::session().await.map_err(|e| format!("no D-Bus session bus ({e})"))?;
        let bus = zbus::fdo::DBusProxy::new(&conn).await.map_err(|e| format!("the D-Bus session bus failed ({e})"))?;
        let name = zbus::names::BusName::try_from(PORTAL).map_err(|e| e.to_string())?;
        let running = bus.name_has_owner(name).await.unwrap_or(false);
        let startable =
            running || bus.list_activatable_names().await.is_ok_and(|names| names.iter().any(|n| n.as_str() == PORTAL));
        if !startable {
            return Err(format!("no desktop portal ({PORTAL}) answered on the session bus"));
        }
        // Without a backend (GTK, KDE, GNOME, wlr...) the portal runs but offers no file chooser.
        conn.call_method(
            Some(PORTAL),
            "/org/freedesktop/portal/desktop",
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &("org.freedesktop.portal.FileChooser", "version"),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("the desktop portal offers no file chooser ({e})"))
    }

    /// An executable file named `program` in a folder of PATH.
    fn on_path(program: &str) -> bool {
        use std::os::unix::fs::PermissionsExt;
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| {
                std::fs::metadata(dir.join(program)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
        })
    }
}

/// macOS and Windows always have their own dialogs.
#[cfg(not(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
)))]
mod portal {
    pub fn check() -> Result<(), String> {
        Ok(())
    }
}

/// Answers queued in advance, for tests; an empty queue reads as cancelled. With
/// `unavailable` set, no native dialog can be shown, as without a desktop portal.
#[derive(Default)]
pub struct ScriptedDialogs {
    pub models: Mutex<VecDeque<PathBuf>>,
    pub data: Mutex<VecDeque<PathBuf>>,
    pub folders: Mutex<VecDeque<PathBuf>>,
    pub results: Mutex<VecDeque<PathBuf>>,
    pub unavailable: Option<String>,
}

impl ScriptedDialogs {
    /// Dialogs that cannot be shown, for `reason`.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self { unavailable: Some(reason.into()), ..Self::default() }
    }

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
    fn native(&self) -> Result<(), String> {
        self.unavailable.clone().map_or(Ok(()), Err)
    }
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
    fn open_results(&self) -> Option<PathBuf> {
        Self::next(&self.results)
    }
}

/// What a dialog's answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    OpenModel,
    OpenModelFolder,
    OpenData,
    OpenResults,
    Export(FigureId),
    ExportAll,
}

impl Purpose {
    /// The dialog's title.
    pub fn title(self) -> &'static str {
        match self {
            Purpose::OpenModel => "Open checkpoint",
            Purpose::OpenModelFolder => "Open training run (folder)",
            Purpose::OpenData => "Open dataset",
            Purpose::OpenResults => "Add runs to compare (trajectory.json, or a study's study.json)",
            Purpose::Export(_) | Purpose::ExportAll => "Export figures into",
        }
    }
}

/// How a dialog was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Picked(PathBuf),
    Cancelled,
    /// No native dialog can be shown here, for this reason.
    Unavailable(String),
}

/// A dialog being shown; its answer arrives on a channel.
pub struct Pending {
    pub purpose: Purpose,
    answer: Receiver<Answer>,
}

impl Pending {
    /// Shows the dialog for `purpose`; `done` runs when the user has answered (a repaint).
    pub fn ask(dialogs: &Arc<dyn Dialogs>, purpose: Purpose, done: impl FnOnce() + Send + 'static) -> Self {
        let (tx, answer) = bounded(1);
        let dialogs = dialogs.clone();
        let show = move || {
            let answer = match dialogs.native() {
                Err(why) => Answer::Unavailable(why),
                Ok(()) => match purpose {
                    Purpose::OpenModel => dialogs.open_model(),
                    Purpose::OpenModelFolder => dialogs.open_model_folder(),
                    Purpose::OpenData => dialogs.open_data(),
                    Purpose::OpenResults => dialogs.open_results(),
                    Purpose::Export(_) | Purpose::ExportAll => dialogs.save_folder(),
                }
                .map_or(Answer::Cancelled, Answer::Picked),
            };
            tx.send(answer).ok();
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

    /// A dialog the app shows itself (its file browser), which answers on the sender.
    pub fn in_app(purpose: Purpose) -> (Self, Sender<Answer>) {
        let (tx, answer) = bounded(1);
        (Self { purpose, answer }, tx)
    }

    /// The answer, once given; a dialog gone without answering was cancelled.
    pub fn answer(&self) -> Option<Answer> {
        match self.answer.try_recv() {
            Ok(a) => Some(a),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Answer::Cancelled),
        }
    }
}

impl<T: Dialogs> Dialogs for std::sync::Arc<T> {
    fn native(&self) -> Result<(), String> {
        (**self).native()
    }
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
    fn open_results(&self) -> Option<PathBuf> {
        (**self).open_results()
    }
}
