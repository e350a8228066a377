//! The eframe app: settings, session results, the worker, and the panels.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::actions::Action;
use super::autorun::RunStep;
use super::dialogs::{Dialogs, Pending, RfdDialogs};
use super::panels::Panels;
use super::session::Session;
use super::settings::{Settings, Tab};
use super::settings_file::SettingsFile;
use crate::engine::device::DeviceChoice;
use crate::jobs::command::Source;
use crate::jobs::{JobTracker, Worker};
use crate::render::heatmap::HeatmapResources;

/// How long each frame may spend taking events from the worker.
const EVENT_BUDGET: Duration = Duration::from_millis(10);
/// Quiet time after the last slider move before the network is re-evaluated: none, every
/// move sends an evaluation that stops the one before it (examples/bench_slider.rs measured
/// this against waiting; docs/PERFORMANCE.md, "Slider latency").
pub const DEBOUNCE: Duration = Duration::ZERO;

/// How the app starts.
#[derive(Default)]
pub struct AppOptions {
    /// Files given on the command line (they win over the stored last files).
    pub model: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub device: DeviceChoice,
    /// Ignore stored settings and files (tests, screenshots).
    pub fresh: bool,
    /// Read and write the settings here instead of the app's data folder (tests).
    pub settings_path: Option<PathBuf>,
    /// Take a screenshot into this file once the app is idle, then close.
    pub screenshot: Option<PathBuf>,
    pub tab: Option<Tab>,
    /// Jobs to run once the model is open (for screenshots): sweep, characterise, perturb,
    /// eps, dropout.
    pub autorun: Vec<RunStep>,
    /// Evaluation images and thresholds per sweep, instead of the stored ones.
    pub eval_images: Option<usize>,
    pub steps: Option<usize>,
    pub dialogs: Option<Arc<dyn Dialogs>>,
    /// Trajectory results to open in the Compare view.
    pub runs: Vec<PathBuf>,
}

/// A screenshot being taken for `--screenshot`.
struct Screenshot {
    path: PathBuf,
    idle_frames: u32,
    requested: bool,
    written: Arc<AtomicBool>,
    failed: Arc<std::sync::Mutex<Option<String>>>,
}

pub struct ExplorerApp {
    pub settings: Settings,
    pub session: Session,
    pub jobs: JobTracker,
    pub panels: Panels,
    pub(super) worker: Worker,
    pub(super) dialogs: Arc<dyn Dialogs>,
    /// The file dialog being shown, if any (one at a time).
    pub(super) dialog: Option<Pending>,
    pub(super) ctx: egui::Context,
    pub(super) actions: Vec<Action>,
    /// When the debounced evaluation is due.
    pub(super) eval_due: Option<Instant>,
    /// Bumped on every change of the filter; results made with another are stale.
    pub filter_version: u64,
    pub(super) autorun: Vec<RunStep>,
    /// The heatmap's GPU pipeline is installed (false without a wgpu renderer).
    pub gpu: bool,
    /// The first files failed to open and the embedded default was opened instead.
    pub(super) fell_back: bool,
    screenshot: Option<Screenshot>,
    /// Where the settings are kept; None for fresh starts.
    settings_file: Option<SettingsFile>,
}

impl ExplorerApp {
    pub fn new(cc: &eframe::CreationContext<'_>, mut options: AppOptions) -> anyhow::Result<Self> {
        // Fresh starts (tests, screenshots) neither read nor write the stored settings.
        let settings_file = match (&options.settings_path, options.fresh) {
            (Some(path), _) => Some(SettingsFile::at(path.clone())),
            (None, true) => None,
            (None, false) => SettingsFile::standard(),
        };
        let (mut settings, settings_note) = match &settings_file {
            Some(file) => file.load(cc.storage),
            None => (Settings::default(), None),
        };
        let gpu = match &cc.wgpu_render_state {
            Some(rs) => {
                HeatmapResources::install(rs);
                true
            }
            None => false,
        };
        let ctx = cc.egui_ctx.clone();
        let repaint = ctx.clone();
        let worker = Worker::spawn(options.device, move || repaint.request_repaint())?;
        if let Some(t) = options.tab {
            settings.layout.tab = t;
        }
        if let Some(n) = options.eval_images {
            settings.subset = n.max(1);
        }
        if let Some(n) = options.steps {
            // Simpson's rule needs an odd count of at least 3.
            settings.sweep.steps = (n.max(3) / 2) * 2 + 1;
        }
        // Command-line files win; else the last ones; else the embedded default.
        // Stored files that have since gone are forgotten rather than reported.
        let model = options.model.clone().or_else(|| settings.model.clone().filter(|p| p.exists()));
        let data = options.data.clone().or_else(|| settings.data.clone().filter(|p| p.exists()));
        let mut app = Self {
            settings,
            session: Session::default(),
            jobs: JobTracker::default(),
            panels: Panels::default(),
            worker,
            dialogs: options.dialogs.take().unwrap_or_else(|| Arc::new(RfdDialogs)),
            dialog: None,
            ctx,
            actions: Vec::new(),
            eval_due: None,
            filter_version: 0,
            autorun: std::mem::take(&mut options.autorun),
            gpu,
            fell_back: false,
            screenshot: options.screenshot.map(|path| Screenshot {
                path,
                idle_frames: 0,
                requested: false,
                written: Arc::new(AtomicBool::new(false)),
                failed: Arc::new(std::sync::Mutex::new(None)),
            }),
            settings_file,
        };
        if let Some(note) = settings_note {
            app.session.note(note);
        }
        app.open(Some(model.map_or(Source::Embedded, Source::Path)), Some(data.map_or(Source::Embedded, Source::Path)));
        if !options.runs.is_empty() {
            if options.tab.is_none() {
                app.settings.layout.tab = Tab::Compare;
            }
            app.apply(Action::AddRuns(std::mem::take(&mut options.runs)));
        }
        Ok(app)
    }

    /// Queues an action for the end of the frame.
    pub fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// A tab came into view: fetch what it shows for the current filter.
    pub fn tab_opened(&mut self, tab: Tab) {
        if tab == Tab::Perturbation && !self.jobs.is_running(crate::jobs::JobKind::Perturb) {
            self.actions.push(Action::Perturb);
        }
    }

    /// Whether nothing is running and the model is shown: tests and screenshots wait for this.
    pub fn is_idle(&self) -> bool {
        !self.jobs.any_running() && self.eval_due.is_none() && self.session.layer.is_some() && self.dialog.is_none()
    }

    fn drain_events(&mut self, ctx: &egui::Context) {
        let start = Instant::now();
        while let Some(event) = self.worker.try_recv() {
            self.handle_event(event);
            if start.elapsed() > EVENT_BUDGET {
                // More may wait: take them next frame, keep this one responsive.
                ctx.request_repaint();
                break;
            }
        }
    }

    fn dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect());
        let (runs, dropped): (Vec<PathBuf>, Vec<PathBuf>) = dropped.into_iter().partition(|p| is_run_result(p));
        if !runs.is_empty() {
            self.settings.layout.tab = Tab::Compare;
            self.actions.push(Action::AddRuns(runs));
        }
        for p in dropped {
            if is_model_path(&p) {
                self.actions.push(Action::OpenModel(p));
            } else {
                self.actions.push(Action::OpenData(p));
            }
        }
    }

    /// Sends the evaluation once it is due, unless the one sent before has not begun on the
    /// worker (it waits behind a long job): then as soon as it begins (its first event wakes
    /// the UI), so at most one evaluation waits in the queue however fast the slider moves.
    pub(super) fn debounce(&mut self, ctx: &egui::Context) {
        if let Some(due) = self.eval_due {
            let now = Instant::now();
            if now < due {
                ctx.request_repaint_after(due - now);
            } else if !self.eval_waiting() {
                self.eval_due = None;
                self.evaluate_now();
            }
        }
    }

    fn screenshot(&mut self, ctx: &egui::Context) {
        let idle = self.is_idle() && self.autorun.is_empty();
        let Some(s) = &mut self.screenshot else { return };
        if let Ok(mut failed) = s.failed.lock()
            && let Some(e) = failed.take()
        {
            eprintln!("error: screenshot: {e}");
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        if s.written.load(Ordering::SeqCst) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        if s.requested {
            ctx.request_repaint_after(Duration::from_millis(50));
            return;
        }
        // A few idle frames first, so plots and textures have settled.
        s.idle_frames = if idle { s.idle_frames + 1 } else { 0 };
        if s.idle_frames < 5 {
            ctx.request_repaint_after(Duration::from_millis(30));
            return;
        }
        s.requested = true;
        let (path, written, failed, ctx2) = (s.path.clone(), s.written.clone(), s.failed.clone(), ctx.clone());
        ctx.request_screenshot(move |image| {
            // Encoding and writing happen off the UI thread.
            std::thread::spawn(move || {
                let [w, h] = image.size;
                let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
                let result = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
                    .ok_or_else(|| "the screenshot has the wrong size".to_string())
                    .and_then(|img| img.save(&path).map_err(|e| format!("{e}: {}", path.display())));
                match result {
                    Ok(()) => written.store(true, Ordering::SeqCst),
                    Err(e) => {
                        if let Ok(mut f) = failed.lock() {
                            *f = Some(e);
                        }
                    }
                }
                ctx2.request_repaint();
            });
        });
    }
}

/// A trajectory result or a study's index, or a folder holding one: what the Compare view reads.
pub fn is_run_result(p: &std::path::Path) -> bool {
    use crate::engine::analysis::{study::STUDY_FILE, trajectory::RESULT_FILE};
    let result = |n: &std::ffi::OsStr| n == RESULT_FILE || n == STUDY_FILE;
    if p.is_dir() {
        [RESULT_FILE, STUDY_FILE].iter().any(|f| p.join(f).is_file())
    } else {
        p.file_name().is_some_and(result)
    }
}

/// Checkpoints by extension; a folder holding checkpoints is a training run.
pub fn is_model_path(p: &std::path::Path) -> bool {
    let checkpoint = |p: &std::path::Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| super::dialogs::CHECKPOINT_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
    };
    if p.is_dir() {
        return std::fs::read_dir(p).is_ok_and(|entries| entries.filter_map(Result::ok).any(|e| checkpoint(&e.path())));
    }
    checkpoint(p)
}

impl eframe::App for ExplorerApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let started = Instant::now();
        let ctx = ui.ctx().clone();
        self.drain_events(&ctx);
        self.dropped_files(&ctx);
        self.debounce(&ctx);
        self.run_autorun();
        self.dialog_answered();
        let mut panels = std::mem::take(&mut self.panels);
        panels.show(ui, self);
        self.panels = panels;
        let actions = std::mem::take(&mut self.actions);
        for a in actions {
            self.apply(a);
        }
        self.screenshot(&ctx);
        if self.jobs.any_running() {
            // Progress bars and ETAs move even between events.
            ctx.request_repaint_after(Duration::from_millis(250));
        }
        let ms = started.elapsed().as_secs_f32() * 1000.0;
        self.session.frame_ms = if ms > self.session.frame_ms { ms } else { self.session.frame_ms * 0.95 + ms * 0.05 };
    }

    fn save(&mut self, _storage: &mut dyn eframe::Storage) {
        if let Some(file) = &self.settings_file
            && let Err(e) = file.save(&self.settings)
        {
            self.session.error(format!("the settings could not be saved: {e}"));
        }
    }
}
