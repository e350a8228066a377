//! The desktop app driven by widget labels with egui_kittest (wgpu renderer, software
//! Vulkan when there is no GPU). The worker computes in the background, so each test steps
//! frames until what it waits for holds, with a generous timeout instead of fixed sleeps.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};
use fragility_explorer::jobs::JobKind;
use fragility_explorer::ui::dialogs::ScriptedDialogs;
use fragility_explorer::ui::settings::Tab;
use fragility_explorer::ui::{AppOptions, ExplorerApp};

const TIMEOUT: Duration = Duration::from_secs(240);

fn app(dialogs: Arc<ScriptedDialogs>, size: [f32; 2]) -> Harness<'static, ExplorerApp> {
    let mut h = Harness::builder().with_size(size).wgpu().build_eframe(move |cc| {
        let options = AppOptions {
            fresh: true,
            // Small evaluations keep the tests quick on two cores.
            eval_images: Some(100),
            dialogs: Some(dialogs),
            ..AppOptions::default()
        };
        ExplorerApp::new(cc, options).expect("the app starts")
    });
    wait(&mut h, "the embedded model", |a| a.is_idle() && a.session.readout.is_some());
    h
}

/// Steps frames until `done` holds; fails with `what` after the timeout.
fn wait(h: &mut Harness<'_, ExplorerApp>, what: &str, done: impl Fn(&ExplorerApp) -> bool) {
    let start = Instant::now();
    while !done(h.state()) {
        if start.elapsed() > TIMEOUT {
            let messages: Vec<_> = h.state().session.messages.iter().map(|m| m.text.clone()).collect();
            let a = h.state();
            let model = a.session.model.as_ref().map(|m| m.name.clone());
            let card = a.session.card_request.as_ref().map(|c| c.error.clone());
            panic!(
                "timed out waiting for {what}; messages: {messages:?}, model {model:?}, idle {}, card {card:?}",
                a.is_idle()
            );
        }
        h.step();
        // Yield to the worker; the loop ends as soon as the condition holds.
        std::thread::sleep(Duration::from_millis(5));
    }
    h.step();
}

/// Drags a slider's handle from its current place by `dx` points.
fn drag(h: &mut Harness<'_, ExplorerApp>, label: &str, from: f32, dx: f32) {
    let rect = h.get_by_role_and_label(egui::accesskit::Role::Slider, label).rect();
    let start = egui::pos2(rect.left() + from * rect.width(), rect.center().y);
    h.hover_at(start);
    h.step();
    h.drag_at(start);
    h.step();
    for i in 1..=5 {
        h.hover_at(start + egui::vec2(dx * i as f32 / 5.0, 0.0));
        h.step();
    }
    h.drop_at(start + egui::vec2(dx, 0.0));
    h.step();
}

#[test]
fn explore_by_hand_layer_threshold_readout_and_curve() {
    let mut h = app(Arc::default(), [1300.0, 820.0]);
    let first = h.state().session.readout.expect("a readout");
    assert!(first.samples == 100 && first.total == 288, "{first:?}");
    h.get_by_label("Clean accuracy");

    // Choose a layer.
    h.get_by_label("classifier.2").click();
    wait(&mut h, "classifier.2", |a| a.is_idle() && a.session.layer.as_ref().is_some_and(|l| l.name == "classifier.2"));
    let before = h.state().session.readout.expect("a readout");
    assert_eq!(before.total, 1280);

    // Drag the threshold to the right: more weights removed, accuracy recomputed.
    drag(&mut h, "Threshold", 0.25, 80.0);
    let alpha = h.state().settings.threshold;
    wait(&mut h, "the new readout", |a| {
        a.is_idle() && a.session.readout.is_some_and(|r| r.removed != before.removed && !a.session.readout_stale)
    });
    let after = h.state().session.readout.expect("a readout");
    assert!(after.removed > before.removed, "{before:?} -> {after:?} at {alpha}");
    h.get_by_label_contains(&format!("of {}", "1,280"));

    // The curve: sweep this layer and filter, watching it stream in.
    h.state_mut().settings.steps = 7;
    h.get_by_label("Curves").click();
    h.step();
    h.get_by_label("Sweep").click();
    let mut seen = Vec::new();
    let start = Instant::now();
    loop {
        h.step();
        let steps =
            h.state().session.sweeps.record("classifier.2", h.state().settings.filter).map_or(0, |r| r.steps.len());
        if seen.last() != Some(&steps) {
            seen.push(steps);
        }
        if steps == 7 && !h.state().jobs.is_running(JobKind::Sweep) {
            break;
        }
        assert!(start.elapsed() < TIMEOUT, "the sweep did not finish: {seen:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(seen.len() >= 3, "the curve grew in steps: {seen:?}");
    h.get_by_label_contains("7 of 7 steps");

    // The threshold curve follows the slider: the marker is at the current threshold.
    drag(&mut h, "Threshold", 0.5, -60.0);
    assert_ne!(h.state().settings.threshold, alpha);
}

#[test]
fn a_bad_file_shows_an_error_and_the_app_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.safetensors");
    std::fs::write(&bad, b"this is not a checkpoint").unwrap();
    let dialogs = Arc::new(ScriptedDialogs::default());
    ScriptedDialogs::push(&dialogs.models, &bad);
    let mut h = app(dialogs, [1300.0, 820.0]);
    h.get_by_label("Open checkpoint…").click();
    wait(&mut h, "the error", |a| a.session.messages.iter().any(|m| m.error));
    let message = h.state().session.messages.iter().find(|m| m.error).unwrap().text.clone();
    assert!(message.contains("not a checkpoint") && message.contains("broken.safetensors"), "{message}");
    h.get_by_label_contains("not a checkpoint");
    // The embedded model is still open and still answers.
    assert!(h.state().session.model.as_ref().is_some_and(|m| m.name.contains("embedded")));
    h.get_by_label("features.3").click();
    wait(&mut h, "features.3", |a| a.is_idle() && a.session.readout.is_some_and(|r| r.total == 18_432));
    h.get_by_label("Dismiss").click();
    h.step();
    assert!(h.state().session.messages.iter().all(|m| !m.error));
}

#[test]
fn export_writes_the_figure_files() {
    let dir = tempfile::tempdir().unwrap();
    let dialogs = Arc::new(ScriptedDialogs::default());
    ScriptedDialogs::push(&dialogs.folders, dir.path());
    let mut h = app(dialogs, [1300.0, 820.0]);
    h.get_all_by_label("Export figure…").next().expect("an export button").click();
    wait(&mut h, "the export", |a| {
        !a.jobs.is_running(JobKind::Export)
            && (!a.session.exported.is_empty() || a.session.messages.iter().any(|m| m.error))
    });
    let errors: Vec<_> = h.state().session.messages.iter().filter(|m| m.error).map(|m| m.text.clone()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    for ext in ["png", "svg", "csv", "json"] {
        let found = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.path().extension().is_some_and(|x| x == ext));
        assert!(found, "no .{ext} in {}", dir.path().display());
    }
}

#[test]
fn cancelling_a_sweep_keeps_its_finished_steps() {
    let mut h = app(Arc::default(), [1300.0, 820.0]);
    h.get_by_label("Characterise all layers").click();
    wait(&mut h, "the first steps", |a| a.session.sweeps.records.iter().map(|r| r.steps.len()).sum::<usize>() >= 2);
    assert!(h.state().jobs.is_running(JobKind::Sweep));
    // The UI keeps its pace while the worker computes.
    let mut frames = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        h.step();
        frames.push(t.elapsed().as_secs_f32() * 1000.0);
    }
    frames.sort_by(f32::total_cmp);
    eprintln!(
        "frames while sweeping: median {:.2} ms, max {:.2} ms",
        frames[frames.len() / 2],
        frames[frames.len() - 1]
    );
    assert!(frames[frames.len() / 2] < 16.0, "median frame {} ms", frames[frames.len() / 2]);
    h.get_all_by_label("Cancel").next().expect("a Cancel button").click();
    wait(&mut h, "the cancelled sweep", |a| !a.jobs.is_running(JobKind::Sweep));
    let s = &h.state().session;
    let kept: usize = s.sweeps.records.iter().map(|r| r.steps.len()).sum();
    assert!(kept >= 2, "the finished steps are kept");
    assert!(s.sweeps.records.iter().any(|r| !r.complete()), "the sweep stopped early");
    assert!(s.messages.iter().any(|m| m.text.contains("sweep cancelled")));
}

fn snapshot(h: &mut Harness<'_, ExplorerApp>, name: &str) {
    h.remove_cursor();
    h.run_steps(3);
    let options = SnapshotOptions::new()
        .threshold(0.6)
        .output_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots"));
    h.snapshot_options(name, &options);
}

#[test]
fn snapshots_of_the_main_views() {
    let mut h = app(Arc::default(), [960.0, 600.0]);
    h.state_mut().settings.layout.controls_panel = false;
    h.get_by_label("features.3").click();
    wait(&mut h, "features.3", |a| a.is_idle() && a.session.layer.as_ref().is_some_and(|l| l.name == "features.3"));
    snapshot(&mut h, "mask_view");

    h.state_mut().settings.steps = 5;
    h.state_mut().settings.layout.tab = Tab::Curves;
    h.step();
    h.get_by_label("Sweep").click();
    wait(&mut h, "the sweep", |a| a.is_idle() && a.session.sweeps.records.iter().any(|r| r.complete()));
    snapshot(&mut h, "curves_view");

    h.state_mut().settings.samples = 6;
    h.get_by_label("Perturbation").click();
    wait(&mut h, "the samples", |a| a.is_idle() && !a.session.samples.is_empty());
    snapshot(&mut h, "perturbation_view");
}

#[test]
fn an_unrecognised_checkpoint_asks_for_a_card_and_opens_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mystery.safetensors");
    let dev = candle_core::Device::Cpu;
    let tensors = std::collections::HashMap::from([
        (
            "encoder.block.weight".to_string(),
            candle_core::Tensor::zeros((10, 784), candle_core::DType::F32, &dev).unwrap(),
        ),
        ("encoder.block.bias".to_string(), candle_core::Tensor::zeros(10, candle_core::DType::F32, &dev).unwrap()),
    ]);
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let dialogs = Arc::new(ScriptedDialogs::default());
    ScriptedDialogs::push(&dialogs.models, &path);
    let mut h = app(dialogs, [1300.0, 820.0]);
    h.get_by_label("Open checkpoint…").click();
    wait(&mut h, "the card dialog", |a| a.session.card_request.is_some());
    h.get_by_label("Describe this checkpoint");
    // Sequential is the first architecture; its layers are written as JSON.
    h.state_mut().session.card_request.as_mut().unwrap().layers_json =
        r#"[{"type": "flatten"}, {"type": "linear", "key": "encoder.block"}]"#.into();
    // Let the new window settle where it will be drawn before clicking in it.
    h.run_steps(4);
    h.get_by_label("Save card and open").click();
    wait(&mut h, "the model", |a| {
        a.is_idle() && a.session.model.as_ref().is_some_and(|m| m.name.ends_with("mystery.safetensors"))
    });
    assert!(path.with_extension("json").is_file(), "the card is saved beside the checkpoint");
    assert!(h.state().session.card_request.is_none());
    assert_eq!(h.state().session.readout.map(|r| r.total), Some(7840));
}

/// A file dropped onto the window.
#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn dropping_a_checkpoint_opens_it() {
    let mut h = app(Arc::default(), [1300.0, 820.0]);
    let ckpt = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analysis/tiny_cnn.safetensors");
    h.input_mut().dropped_files.push(Arc::new(Dropped(ckpt)));
    h.step();
    wait(&mut h, "the dropped model", |a| {
        a.is_idle() && a.session.model.as_ref().is_some_and(|m| m.name.ends_with("tiny_cnn.safetensors"))
    });
    assert!(h.state().session.readout.is_some());
    assert!(h.state().settings.recent_models.first().is_some_and(|p| p.ends_with("tiny_cnn.safetensors")));
}
