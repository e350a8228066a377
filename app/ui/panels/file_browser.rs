//! The app's own file browser, for desktops where no native dialog can be shown (no desktop
//! portal on a bare window manager, a remote desktop, WSL, a container): a path field, the
//! folder's listing with what the purpose opens highlighted, parent, home and recent places,
//! and the keyboard. It answers on the same channel as a native dialog would.

use std::path::{Path, PathBuf};

use crossbeam_channel::Sender;
use egui::{Key, Modifiers, RichText};

use crate::ui::dialogs::{Answer, CHECKPOINT_EXTENSIONS, Purpose};
use crate::ui::theme;

/// Entries listed at most: a huge folder must not stall the frame that opens it.
pub const MAX_ENTRIES: usize = 5_000;
/// Entries past the cap are counted up to this many (names only, no metadata).
const MAX_COUNTED: usize = 1_000_000;

/// One file or folder of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    pub folder: bool,
    /// A file the purpose opens (for a folder purpose: one that marks the folder as the one).
    pub highlighted: bool,
}

/// A folder's entries, or why it could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Folders first, then files, each by name (case-insensitively).
    pub entries: Vec<Entry>,
    /// Entries past `cap`, left out (counted up to a million).
    pub more: usize,
    pub error: Option<String>,
}

/// Lists `dir` for `purpose`: hidden entries (dot names) only with `show_hidden`, at most
/// `cap` of them (the first the system gives; the rest are only counted).
pub fn list(dir: &Path, purpose: Purpose, show_hidden: bool, cap: usize) -> Listing {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) => {
            return Listing {
                error: Some(format!("cannot read this folder: {e}: {}", dir.display())),
                ..Listing::default()
            };
        }
    };
    let mut listing = Listing::default();
    for entry in read.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !show_hidden && name.starts_with('.') {
            continue;
        }
        if listing.entries.len() >= cap {
            listing.more += 1;
            if listing.more >= MAX_COUNTED {
                break;
            }
            continue;
        }
        let path = entry.path();
        // The entry's type comes with the listing; only links need a look at their target.
        let folder = match entry.file_type() {
            Ok(t) if t.is_symlink() => path.is_dir(),
            Ok(t) => t.is_dir(),
            Err(_) => false,
        };
        let highlighted = !folder && highlighted(purpose, &name);
        listing.entries.push(Entry { name, path, folder, highlighted });
    }
    listing.entries.sort_by(|a, b| b.folder.cmp(&a.folder).then_with(|| sort_key(&a.name).cmp(&sort_key(&b.name))));
    listing
}

fn sort_key(name: &str) -> (String, &str) {
    (name.to_lowercase(), name)
}

/// Whether the file `name` is what `purpose` opens: checkpoints for models (a folder of
/// them is a training run), and for data the files a dataset loads from.
fn highlighted(purpose: Purpose, name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let ext = Path::new(&lower).extension().and_then(|e| e.to_str()).unwrap_or_default();
    match purpose {
        Purpose::OpenModel | Purpose::OpenModelFolder => CHECKPOINT_EXTENSIONS.contains(&ext),
        Purpose::OpenData => matches!(ext, "bin" | "png") || is_idx(&lower),
        Purpose::OpenResults => ext == "json",
        Purpose::Export(_) | Purpose::ExportAll => false,
    }
}

/// IDX files (MNIST and its kin) are opened by their folder.
fn is_idx(lower_name: &str) -> bool {
    lower_name.contains("idx") && lower_name.contains("ubyte")
}

/// The one line that says why the built-in browser is shown.
pub fn explain(why: &str) -> String {
    let mut chars = why.chars();
    let first = chars.next().map(|c| c.to_uppercase().collect::<String>()).unwrap_or_default();
    format!("{first}{}; using the built-in browser", chars.as_str())
}

/// The browser while it is shown; dropped once it has answered.
pub struct FileBrowser {
    purpose: Purpose,
    why: String,
    answer: Sender<Answer>,
    dir: PathBuf,
    path_text: String,
    listing: Listing,
    selected: Option<usize>,
    show_hidden: bool,
    recent: Vec<PathBuf>,
    /// What went wrong with the last thing typed or chosen.
    problem: Option<String>,
    /// Bring the selection into view (after a key moved it).
    reveal: bool,
    /// The listing's scroll offset, as last drawn.
    scroll: f32,
}

impl FileBrowser {
    /// Opens beside `current` (the file or folder last opened for this purpose, selected)
    /// or else in the working folder.
    pub fn new(
        purpose: Purpose,
        why: String,
        answer: Sender<Answer>,
        current: Option<&Path>,
        recent: Vec<PathBuf>,
    ) -> Self {
        let mut b = Self {
            purpose,
            why,
            answer,
            dir: PathBuf::new(),
            path_text: String::new(),
            listing: Listing::default(),
            selected: None,
            show_hidden: false,
            recent,
            problem: None,
            reveal: false,
            scroll: 0.0,
        };
        match current.and_then(|c| Some((c.parent()?, c))).filter(|(dir, _)| dir.is_dir()) {
            Some((dir, c)) => b.go(dir.to_path_buf(), Some(c)),
            None => b.go(std::env::current_dir().ok().or_else(std::env::home_dir).unwrap_or_else(|| "/".into()), None),
        }
        b
    }

    /// Shows the folder `dir`, selecting `select` if it is listed.
    fn go(&mut self, dir: PathBuf, select: Option<&Path>) {
        self.dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        self.path_text = self.dir.display().to_string();
        self.listing = list(&self.dir, self.purpose, self.show_hidden, MAX_ENTRIES);
        let select = select.map(|s| std::fs::canonicalize(s).unwrap_or_else(|_| s.to_path_buf()));
        self.selected = select.and_then(|s| self.listing.entries.iter().position(|e| e.path == s));
        self.problem = None;
        self.reveal = true;
    }

    fn parent(&mut self) {
        if let Some(parent) = self.dir.parent().map(Path::to_path_buf) {
            let from = self.dir.clone();
            self.go(parent, Some(&from));
        }
    }

    /// A file or folder from the recent list or typed in: folders are shown, files are
    /// picked (or, for a folder purpose, shown selected in their folder).
    fn reach(&mut self, path: &Path) -> Option<PathBuf> {
        if path.is_dir() {
            self.go(path.to_path_buf(), None);
            None
        } else if path.is_file() {
            let parent = path.parent().map(Path::to_path_buf).unwrap_or_else(|| self.dir.clone());
            self.go(parent, Some(path));
            match self.selected {
                Some(i) if !self.wants_folder() => self.file_answer(i),
                _ => None,
            }
        } else {
            self.problem = Some(format!("no such file or folder: {}", path.display()));
            None
        }
    }

    /// Only a folder can answer this purpose.
    fn wants_folder(&self) -> bool {
        matches!(self.purpose, Purpose::OpenModelFolder | Purpose::Export(_) | Purpose::ExportAll)
    }

    /// Enter or a double click on entry `i`: a folder is entered, a file is picked.
    fn activate(&mut self, i: usize) -> Option<PathBuf> {
        let entry = self.listing.entries.get(i)?;
        if entry.folder {
            let dir = entry.path.clone();
            self.go(dir, None);
            return None;
        }
        self.file_answer(i)
    }

    /// What picking the file `i` answers: the file, its folder for IDX data, nothing (with
    /// a note) when the purpose wants a folder.
    fn file_answer(&mut self, i: usize) -> Option<PathBuf> {
        let entry = self.listing.entries.get(i)?;
        if self.wants_folder() {
            self.problem = Some("this asks for a folder: use “Choose this folder”".into());
            return None;
        }
        if self.purpose == Purpose::OpenData && is_idx(&entry.name.to_ascii_lowercase()) {
            return Some(self.dir.clone());
        }
        Some(entry.path.clone())
    }

    /// The path field's text as a path: `~` is home, a relative path is from this folder.
    fn typed(&self) -> PathBuf {
        let text = self.path_text.trim();
        let home = std::env::home_dir();
        let path = match (text.strip_prefix('~'), home) {
            (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
                home.join(rest.trim_start_matches('/'))
            }
            _ => PathBuf::from(text),
        };
        if path.is_absolute() { path } else { self.dir.join(path) }
    }

    fn send(&self, ctx: &egui::Context, answer: Answer) {
        self.answer.send(answer).ok();
        ctx.request_repaint();
    }

    /// Draws the browser; false once it has answered (picked or cancelled).
    pub fn show(&mut self, ctx: &egui::Context) -> bool {
        let path_id = egui::Id::unique("file_browser_path");
        let typing = ctx.memory(|m| m.has_focus(path_id));
        let keys = ctx.input_mut(|i| Keys {
            escape: i.consume_key(Modifiers::NONE, Key::Escape),
            up: i.consume_key(Modifiers::NONE, Key::ArrowUp),
            down: i.consume_key(Modifiers::NONE, Key::ArrowDown),
            enter: !typing && i.consume_key(Modifiers::NONE, Key::Enter),
            back: !typing && i.consume_key(Modifiers::NONE, Key::Backspace),
        });
        if keys.escape {
            self.send(ctx, Answer::Cancelled);
            return false;
        }
        let mut picked = self.keyboard(&keys);
        let screen = ctx.content_rect();
        let width = (screen.width() - 60.0).clamp(320.0, 760.0);
        let height = (screen.height() - 300.0).clamp(120.0, 380.0);
        let mut cancel = false;
        egui::Modal::new(egui::Id::unique("file_browser")).show(ctx, |ui| {
            ui.set_width(width);
            ui.heading(self.purpose.title());
            ui.add(egui::Label::new(RichText::new(explain(&self.why)).color(theme::NOTE)).wrap());
            ui.separator();
            self.toolbar(ui);
            if let Some(p) = self.path_field(ui, path_id) {
                picked = Some(p);
            }
            if let Some(problem) = &self.problem {
                ui.colored_label(theme::ERROR, problem);
            }
            ui.horizontal_top(|ui| {
                if let Some(p) = self.places(ui, height) {
                    picked = Some(p);
                }
                // Spacing, not a separator: a vertical line takes the height it is offered, and
                // in a window sized by its content that height grows frame by frame.
                ui.add_space(8.0);
                ui.vertical(|ui| {
                    if let Some(p) = self.entries(ui, height) {
                        picked = Some(p);
                    }
                });
            });
            ui.separator();
            let (p, c) = self.buttons(ui);
            picked = picked.take().or(p);
            cancel = c;
        });
        if let Some(path) = picked {
            self.send(ctx, Answer::Picked(path));
            return false;
        }
        if cancel {
            self.send(ctx, Answer::Cancelled);
            return false;
        }
        true
    }

    fn keyboard(&mut self, keys: &Keys) -> Option<PathBuf> {
        let n = self.listing.entries.len();
        if n > 0 && (keys.up || keys.down) {
            self.selected = Some(match self.selected {
                None if keys.down => 0,
                None => n - 1,
                Some(i) if keys.down => (i + 1).min(n - 1),
                Some(i) => i.saturating_sub(1),
            });
            self.reveal = true;
        }
        if keys.back {
            self.parent();
        }
        if keys.enter {
            return self.selected.and_then(|i| self.activate(i));
        }
        None
    }

    fn toolbar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if ui.button("Parent").on_hover_text("The folder above (Backspace)").clicked() {
                self.parent();
            }
            if let Some(home) = std::env::home_dir()
                && ui.button("Home").on_hover_text(home.display().to_string()).clicked()
            {
                self.go(home, None);
            }
            if ui.checkbox(&mut self.show_hidden, "Show hidden").changed() {
                let dir = self.dir.clone();
                let selected = self.selected.and_then(|i| self.listing.entries.get(i)).map(|e| e.path.clone());
                self.go(dir, selected.as_deref());
            }
        });
    }

    /// The editable path: Enter goes to a folder or picks a file.
    fn path_field(&mut self, ui: &mut egui::Ui, id: egui::Id) -> Option<PathBuf> {
        ui.horizontal(|ui| {
            let label = ui.label("Path");
            let go_width = 40.0;
            let field = egui::TextEdit::singleline(&mut self.path_text)
                .id(id)
                .desired_width(ui.available_width() - go_width - ui.spacing().item_spacing.x);
            let r = ui.add(field).labelled_by(label.id);
            let entered = r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
            if entered || ui.button("Go").clicked() {
                let path = self.typed();
                return self.reach(&path);
            }
            None
        })
        .inner
    }

    /// Home and the recent files of this purpose.
    fn places(&mut self, ui: &mut egui::Ui, height: f32) -> Option<PathBuf> {
        let mut reached = None;
        ui.vertical(|ui| {
            ui.set_width(170.0);
            ui.weak("Recent");
            fixed(egui::ScrollArea::vertical().id_salt("file_browser_recent"), height).show(ui, |ui| {
                if self.recent.is_empty() {
                    ui.weak("Nothing yet");
                }
                for p in self.recent.clone() {
                    let name =
                        p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned());
                    let button = egui::Button::new(name).truncate();
                    if ui.add(button).on_hover_text(p.display().to_string()).clicked() {
                        reached = self.reach(&p);
                    }
                }
            });
        });
        reached
    }

    /// The folder listing, drawn row by row as far as it is in view.
    fn entries(&mut self, ui: &mut egui::Ui, height: f32) -> Option<PathBuf> {
        if let Some(e) = &self.listing.error {
            ui.colored_label(theme::ERROR, e);
            return None;
        }
        if self.listing.entries.is_empty() {
            ui.weak("This folder is empty");
        }
        let row = ui.spacing().interact_size.y;
        let step = row + ui.spacing().item_spacing.y;
        let mut area = fixed(egui::ScrollArea::vertical().id_salt("file_browser_list"), height);
        if self.reveal
            && let Some(i) = self.selected
        {
            // Scroll just enough for the selected row to show.
            let top = i as f32 * step;
            if top < self.scroll {
                area = area.vertical_scroll_offset(top);
            } else if top + row > self.scroll + height {
                area = area.vertical_scroll_offset(top + row - height);
            }
        }
        self.reveal = false;
        let mut clicked = None;
        let mut activated = None;
        let out = area.show_rows(ui, row, self.listing.entries.len(), |ui, rows| {
            for i in rows {
                let (e, selected) = (&self.listing.entries[i], self.selected == Some(i));
                // A selected row takes the selection's own text colour, for contrast.
                let text = if e.folder {
                    RichText::new(format!("{}/", e.name)).strong()
                } else if selected {
                    RichText::new(&e.name).strong()
                } else if e.highlighted {
                    RichText::new(&e.name).color(theme::GOOD)
                } else {
                    RichText::new(&e.name).weak()
                };
                let button =
                    egui::Button::selectable(selected, text).truncate().min_size(egui::vec2(ui.available_width(), row));
                let r = ui.add(button);
                if r.double_clicked() {
                    activated = Some(i);
                } else if r.clicked() {
                    clicked = Some(i);
                }
            }
        });
        self.scroll = out.state.clamped_offset().y;
        if self.listing.more > 0 {
            let more = if self.listing.more >= MAX_COUNTED {
                format!("{MAX_COUNTED}+")
            } else {
                self.listing.more.to_string()
            };
            ui.weak(format!("{more} more not shown (the first {MAX_ENTRIES} are listed; type a path)"));
        }
        if let Some(i) = clicked {
            self.selected = Some(i);
            self.problem = None;
        }
        activated.and_then(|i| {
            self.selected = Some(i);
            self.activate(i)
        })
    }

    /// The selection, Cancel, Open and (for folders) Choose this folder; returns (picked, cancelled).
    fn buttons(&mut self, ui: &mut egui::Ui) -> (Option<PathBuf>, bool) {
        let mut picked = None;
        let mut cancel = false;
        ui.horizontal(|ui| {
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let folder = matches!(
                    self.purpose,
                    Purpose::OpenModelFolder | Purpose::OpenData | Purpose::Export(_) | Purpose::ExportAll
                );
                if folder && ui.button("Choose this folder").on_hover_text(self.dir.display().to_string()).clicked() {
                    picked = Some(self.dir.clone());
                }
                let open = ui.add_enabled(self.selected.is_some(), egui::Button::new("Open"));
                if open.on_hover_text("Enter a folder or pick a file (Enter, or a double click)").clicked() {
                    picked = self.selected.and_then(|i| self.activate(i));
                }
                if ui.button("Cancel").on_hover_text("Escape").clicked() {
                    cancel = true;
                }
                if let Some(e) = self.selected.and_then(|i| self.listing.entries.get(i)) {
                    ui.add(egui::Label::new(RichText::new(e.path.display().to_string()).weak()).truncate());
                }
            });
        });
        (picked, cancel)
    }
}

/// A scroll area exactly `height` tall: the modal keeps its size from the first frame
/// (a centred window that grew as its lists filled would move under the pointer).
fn fixed(area: egui::ScrollArea, height: f32) -> egui::ScrollArea {
    area.min_scrolled_height(height).max_height(height).auto_shrink([false, false])
}

/// The keys the browser answers to, taken before its widgets see them.
struct Keys {
    escape: bool,
    up: bool,
    down: bool,
    enter: bool,
    back: bool,
}
