//! Hostile files opened as a user opens files: every failing case of the fuzz harness's
//! regression corpus (and a pipe and a folder where a checkpoint should be) through the file
//! dialog, a drop and the Recent menu. Each shows one error naming the file, the model that
//! was open before stays open and answers. A remembered file that fails at start falls back to
//! the embedded default and is forgotten; a damaged settings file starts the defaults and says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use fragility_explorer::ui::actions::Action;
use fragility_explorer::ui::dialogs::ScriptedDialogs;
use fragility_explorer::ui::{AppOptions, ExplorerApp};

use crate::app::{Dropped, app, opened, wait};
use crate::regressions;
use crate::targets::Seed;

/// How a file reaches the app.
#[derive(Debug, Clone, Copy)]
enum Route {
    Dialog,
    Drop,
    Recent,
}

/// What a file is opened as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum As {
    Model,
    Data,
}

/// A hostile input on disk: what to open, as what, and the file the error must name (the
/// card beside a checkpoint, the images file of a dataset folder).
struct Hostile {
    name: String,
    path: PathBuf,
    kind: As,
    culprit: String,
}

/// Writes a seed's files into a folder of their own; the path a user would open.
fn write_seed(root: &Path, i: usize, target: &str, seed: &Seed) -> Option<(PathBuf, As)> {
    let dir = root.join(format!("case-{i}"));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in &seed.files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let named = |ext: &str| seed.files.iter().find(|(n, _)| n.ends_with(ext)).map(|(n, _)| dir.join(n));
    match target {
        "pth" => Some((named(".pth")?, As::Model)),
        "card" => Some((named(".safetensors")?, As::Model)),
        "idx" => Some((dir, As::Data)),
        _ => None,
    }
}

fn hostile_files(root: &Path) -> Vec<Hostile> {
    let mut out: Vec<Hostile> = regressions::all()
        .into_iter()
        .enumerate()
        .filter(|(_, case)| case.expect.is_err())
        .filter_map(|(i, case)| {
            let (path, kind) = write_seed(root, i, case.target, &case.seed)?;
            let culprit = case.seed.files[case.seed.mutated].0.clone();
            Some(Hostile { name: case.name.to_string(), path, kind, culprit })
        })
        .collect();
    let pipe = root.join("pipe.pth");
    let c = std::ffi::CString::new(pipe.to_str().unwrap()).unwrap();
    // SAFETY: a C string that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    out.push(Hostile {
        name: "a named pipe as a checkpoint".into(),
        path: pipe,
        kind: As::Model,
        culprit: "pipe.pth".into(),
    });
    let folder = root.join("folder.safetensors");
    std::fs::create_dir(&folder).unwrap();
    let culprit = "folder.safetensors".into();
    out.push(Hostile { name: "a folder named like a checkpoint".into(), path: folder, kind: As::Model, culprit });
    out
}

fn errors(a: &ExplorerApp) -> Vec<String> {
    a.session.messages.iter().filter(|m| m.error).map(|m| m.text.clone()).collect()
}

fn open(h: &mut Harness<'_, ExplorerApp>, dialogs: &ScriptedDialogs, file: &Hostile, route: Route) {
    match route {
        Route::Dialog => {
            let (queue, button) = match file.kind {
                As::Model => (&dialogs.models, "Open checkpoint…"),
                As::Data => (&dialogs.data, "Open dataset…"),
            };
            ScriptedDialogs::push(queue, &file.path);
            h.get_by_label(button).click();
        }
        Route::Drop => h.input_mut().dropped_files.push(Arc::new(Dropped(file.path.clone()))),
        Route::Recent => {
            let settings = &mut h.state_mut().settings;
            match file.kind {
                As::Model => settings.recent_models = vec![file.path.clone()],
                As::Data => settings.recent_data = vec![file.path.clone()],
            }
            h.run();
            h.get_by_label("Recent").click();
            h.run();
            h.get_by_label(&file.path.display().to_string()).click();
        }
    }
    h.step();
}

#[test]
fn hostile_files_opened_any_way_give_one_error_and_keep_the_open_model() {
    let root = tempfile::tempdir().unwrap();
    let files = hostile_files(root.path());
    assert!(files.len() >= 15, "the corpus has its failing cases: {}", files.len());
    let dialogs = Arc::new(ScriptedDialogs::default());
    let mut h = app(dialogs.clone(), [1300.0, 820.0]);
    // The model open before: the tiny fixture CNN, on the embedded images.
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analysis/tiny_cnn.safetensors");
    h.state_mut().push(Action::OpenModel(tiny));
    wait(&mut h, "the tiny CNN", |a| opened(a, "tiny_cnn.safetensors") && a.session.readout.is_some());
    let data_before = h.state().session.data.as_ref().map(|d| d.name.clone());
    for file in &files {
        for route in [Route::Dialog, Route::Drop, Route::Recent] {
            let what = format!("{} by {route:?}", file.name);
            // The same message twice in a row is shown once: start each open from none.
            h.state_mut().session.messages.clear();
            open(&mut h, &dialogs, file, route);
            wait(&mut h, &what, |a| a.is_idle() && !errors(a).is_empty());
            let new = &errors(h.state());
            assert_eq!(new.len(), 1, "{what}: {new:?}");
            assert!(new[0].contains(&file.culprit), "{what}: the error names {}: {}", file.culprit, new[0]);
            let a = h.state();
            assert!(opened(a, "tiny_cnn.safetensors"), "{what}: the open model changed");
            assert_eq!(a.session.data.as_ref().map(|d| d.name.clone()), data_before, "{what}: the data changed");
            assert!(a.session.readout.is_some(), "{what}: the readout is gone");
        }
    }
    // The worker still answers: a new threshold gets a new exact count.
    let version = h.state().filter_version;
    h.state_mut().push(Action::FilterChanged);
    wait(&mut h, "a readout after all that", |a| {
        a.is_idle() && a.filter_version > version && a.session.readout.is_some()
    });
}

fn app_with_settings(settings: &Path) -> Harness<'static, ExplorerApp> {
    let path = settings.to_path_buf();
    let mut h = Harness::builder().with_size([1300.0, 820.0]).wgpu().build_eframe(move |cc| {
        let options = AppOptions { settings_path: Some(path), eval_images: Some(100), ..AppOptions::default() };
        ExplorerApp::new(cc, options).expect("the app starts")
    });
    wait(&mut h, "a model", |a| a.is_idle() && a.session.readout.is_some());
    h
}

/// Saves as eframe does on exit (the app keeps its settings in its own file, not in eframe's).
fn save(h: &mut Harness<'_, ExplorerApp>) {
    struct Nowhere;
    impl eframe::Storage for Nowhere {
        fn get_string(&self, _: &str) -> Option<String> {
            None
        }
        fn set_string(&mut self, _: &str, _: String) {}
        fn remove_string(&mut self, _: &str) {}
        fn flush(&mut self) {}
    }
    eframe::App::save(h.state_mut(), &mut Nowhere);
}

#[test]
fn a_remembered_file_that_fails_at_start_is_reported_and_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.pth");
    std::fs::write(&broken, b"PK\x03\x04 not really a zip archive").unwrap();
    let settings = dir.path().join("settings.json");
    std::fs::write(&settings, serde_json::json!({ "model": broken, "recent_models": [broken] }).to_string()).unwrap();
    let mut h = app_with_settings(&settings);
    let errors = errors(h.state());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("broken.pth"), "{errors:?}");
    assert!(h.state().session.model.as_ref().is_some_and(|m| m.name.contains("embedded")));
    save(&mut h);
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&settings).unwrap()).unwrap();
    assert!(stored["model"].is_null(), "the failing file is not opened at the next start: {stored}");
    // A second start opens the embedded default without an error.
    let h = app_with_settings(&settings);
    assert!(errors_of(&h).is_empty(), "{:?}", errors_of(&h));
}

fn errors_of(h: &Harness<'_, ExplorerApp>) -> Vec<String> {
    errors(h.state())
}

#[test]
fn a_damaged_or_foreign_settings_file_starts_the_defaults_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.json");
    for damaged in [&b"{\"model\": "[..], b"\x00\x01\x02", b"{\"threshold\": \"high\"}"] {
        std::fs::write(&settings, damaged).unwrap();
        let mut h = app_with_settings(&settings);
        let notes: Vec<String> = h.state().session.messages.iter().map(|m| m.text.clone()).collect();
        assert!(notes.iter().any(|n| n.contains("could not be read") && n.contains("defaults")), "{notes:?}");
        assert!(h.state().session.model.as_ref().is_some_and(|m| m.name.contains("embedded")));
        // On exit the defaults replace the damaged file, whole.
        save(&mut h);
        let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&settings).unwrap()).unwrap();
        assert!(stored.is_object(), "{stored}");
    }
}
