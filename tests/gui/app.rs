//! The desktop app driven by widget labels with egui_kittest (wgpu renderer, software
//! Vulkan when there is no GPU). The worker computes in the background, so each test steps
//! frames until what it waits for holds, with a generous timeout instead of fixed sleeps.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};
use fragility_explorer::jobs::JobKind;
use fragility_explorer::jobs::command::{EvalEstimate, EvalOutcome};
use fragility_explorer::ui::actions::Action;
use fragility_explorer::ui::dialogs::{Purpose, ScriptedDialogs};
use fragility_explorer::ui::panels::file_browser::{self, MAX_ENTRIES};
use fragility_explorer::ui::session::ReadoutView;
use fragility_explorer::ui::settings::Tab;
use fragility_explorer::ui::{AppOptions, ExplorerApp};

const TIMEOUT: Duration = Duration::from_secs(240);

pub(crate) fn app(dialogs: Arc<ScriptedDialogs>, size: [f32; 2]) -> Harness<'static, ExplorerApp> {
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
pub(crate) fn wait(h: &mut Harness<'_, ExplorerApp>, what: &str, done: impl Fn(&ExplorerApp) -> bool) {
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
    h.state_mut().settings.sweep.steps = 7;
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

    // After the sweep the slider still moves the threshold, and the curve keeps its marker
    // (drawn at `settings.threshold`, named in the legend).
    drag(&mut h, "Threshold", 0.5, -60.0);
    assert_ne!(h.state().settings.threshold, alpha);
    h.step();
    h.get_by_label_contains("current threshold a");
}

#[test]
fn the_readout_shows_an_estimate_then_the_exact_count_and_never_a_stale_number() {
    let mut h = app(Arc::default(), [1300.0, 820.0]);
    let exact = h.state().session.readout.expect("a readout");
    h.get_by_label("on 100 images");

    // A filter change whose evaluation is in flight: its first estimate, with its interval.
    // The job is made up (no real one has its generation), so nothing else answers it.
    let generation = u64::MAX;
    let estimate = EvalEstimate { samples: 200, of: 1000, clean: 190, adv: 61, removed: 72, total: 288 };
    let a = h.state_mut();
    a.filter_version += 1;
    let version = a.filter_version;
    a.session.eval_asked(generation, version);
    a.session.on_estimate(generation, estimate);
    h.step();
    h.get_by_label("≈ 95.0 %");
    h.get_by_label("≈ 30.5 %");
    let (lo, hi) = estimate.clean_interval();
    assert!(lo < 0.95 && hi > 0.95, "{lo} {hi}");
    h.get_by_label(&format!("95 %: {:.1}–{:.1}", 100.0 * lo, 100.0 * hi));
    h.get_by_label("first 200 of 1,000 images · exact count follows…");
    h.get_by_label("72 of 288");

    // The exact count replaces it.
    let outcome = EvalOutcome { samples: 1000, clean: 948, adv: 310, base_clean: 990, base_adv: 400, ..exact };
    h.state_mut().session.on_evaluated(generation, EvalOutcome { removed: 72, ..outcome }, version);
    h.step();
    assert!(h.query_by_label_contains("≈").is_none());
    h.get_by_label("94.8 %");
    h.get_by_label("on 1,000 images");

    // The threshold moves on: no number is shown until one is made for it.
    h.state_mut().filter_version += 1;
    h.step();
    assert_eq!(h.state().session.readout_view(h.state().filter_version), ReadoutView::Pending);
    assert!(h.query_by_label("94.8 %").is_none() && h.query_by_label("on 1,000 images").is_none());
    h.get_by_label("Evaluating…");
    // A late estimate made for the threshold it has left shows nothing either.
    h.state_mut().session.on_estimate(generation, estimate);
    h.step();
    assert!(h.query_by_label_contains("≈").is_none());

    // The real path: two changes in a row, the second supersedes the first; the readout that
    // stays is for the current filter, exact, on the new subset (estimate first, then all).
    h.state_mut().settings.subset = 300;
    h.state_mut().push(Action::FilterChanged);
    h.step();
    h.state_mut().settings.threshold += 0.01;
    h.state_mut().push(Action::FilterChanged);
    wait(&mut h, "the readout on 300 images", |a| a.is_idle() && !a.session.readout_stale);
    let a = h.state();
    assert!(matches!(a.session.readout_view(a.filter_version), ReadoutView::Exact(r) if r.samples == 300));
    h.get_by_label("on 300 images");
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
    // Frame times while the worker computes are measured by examples/bench_frames.rs, not
    // asserted here: a slow shared machine must not fail the tests.
    h.get_all_by_label("Cancel").next().expect("a Cancel button").click();
    wait(&mut h, "the cancelled sweep", |a| !a.jobs.is_running(JobKind::Sweep));
    let s = &h.state().session;
    let kept: usize = s.sweeps.records.iter().map(|r| r.steps.len()).sum();
    assert!(kept >= 2, "the finished steps are kept");
    assert!(s.sweeps.records.iter().any(|r| !r.complete()), "the sweep stopped early");
    assert!(s.messages.iter().any(|m| m.text.contains("sweep cancelled")));
}

/// Pixels of the heatmap a snapshot may differ by: llvmpipe interpolates the shader's cell
/// coordinate a little differently on CPUs with and without AVX-512, so where a row of cells
/// ends on a pixel centre that pixel row can show the neighbouring cells (122 pixels, one row
/// of one kernel's tiles, on a Zen 3 EPYC against the reference made on a Zen 4). A moved
/// separator or panel changes far more than this.
const HEATMAP_EDGE_PIXELS: usize = 400;

fn snapshot(h: &mut Harness<'_, ExplorerApp>, name: &str, max_failed_pixels: usize) {
    h.remove_cursor();
    h.run_steps(3);
    let options = SnapshotOptions::new()
        .threshold(0.6)
        .max_failed_pixels(max_failed_pixels)
        .output_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots"));
    h.snapshot_options(name, &options);
}

#[test]
fn snapshots_of_the_main_views() {
    let mut h = app(Arc::default(), [960.0, 600.0]);
    h.state_mut().settings.layout.controls_panel = false;
    h.get_by_label("features.3").click();
    wait(&mut h, "features.3", |a| a.is_idle() && a.session.layer.as_ref().is_some_and(|l| l.name == "features.3"));
    snapshot(&mut h, "mask_view", HEATMAP_EDGE_PIXELS);

    h.state_mut().settings.sweep.steps = 5;
    h.state_mut().settings.layout.tab = Tab::Curves;
    h.step();
    h.get_by_label("Sweep").click();
    wait(&mut h, "the sweep", |a| a.is_idle() && a.session.sweeps.records.iter().any(|r| r.complete()));
    snapshot(&mut h, "curves_view", 0);

    h.state_mut().settings.samples = 6;
    h.get_by_label("Perturbation").click();
    wait(&mut h, "the samples", |a| a.is_idle() && !a.session.samples.is_empty());
    snapshot(&mut h, "perturbation_view", 0);
}

/// The labels of one axis: accessible labels that read as numbers beside an axis title node
/// (just above an x title, just right of a y title).
fn tick_labels(h: &Harness<'_, ExplorerApp>, title: egui::Rect, x_axis: bool) -> Vec<String> {
    h.query_all_by_role(egui::accesskit::Role::Label)
        .filter_map(|n| Some((n.value()?, n.rect())))
        .filter(|(v, r)| {
            let c = r.center();
            let beside = if x_axis {
                (title.top() - 40.0..=title.top() + 2.0).contains(&c.y)
            } else {
                (title.right() - 2.0..=title.right() + 70.0).contains(&c.x)
            };
            beside && v.trim().parse::<f64>().is_ok()
        })
        .map(|(v, _)| v)
        .collect()
}

/// Every axis titled `title` has at least `min` numeric tick labels.
fn assert_axis(h: &Harness<'_, ExplorerApp>, title: &str, x_axis: bool, min: usize) {
    let titles: Vec<egui::Rect> =
        h.query_all_by_role_and_label(egui::accesskit::Role::Label, title).map(|n| n.rect()).collect();
    assert!(!titles.is_empty(), "no axis titled `{title}`");
    for t in titles {
        let labels = tick_labels(h, t, x_axis);
        assert!(labels.len() >= min, "axis `{title}` has the tick labels {labels:?}, fewer than {min}");
    }
}

use crate::common::synthetic;

#[test]
fn curves_and_landscape_views_have_axes_ticks_legends_and_colorbars() {
    let mut h = app(Arc::default(), [1300.0, 820.0]);
    // The first layer is chosen on opening.
    wait(&mut h, "features.0", |a| a.is_idle() && a.session.layer.as_ref().is_some_and(|l| l.name == "features.0"));

    // The mask view: axes over the tiles, a colorbar with its title, the shade in the legend.
    assert_axis(&h, "output channel: row", false, 3);
    assert_axis(&h, "output channel: + column", true, 3);
    // The colorbar's title, and the histogram's axis.
    assert_eq!(h.query_all_by_role_and_label(egui::accesskit::Role::Label, "weight value").count(), 2);
    h.get_by_role_and_label(egui::accesskit::Role::Label, "removed by h1");

    // The threshold curve: several labelled ticks on the threshold axis (it used to show one),
    // both y axes titled with their units, every series in the legend.
    h.state_mut().settings.sweep.steps = 5;
    h.get_by_label("Curves").click();
    h.step();
    h.get_by_label("Sweep").click();
    wait(&mut h, "the sweep", |a| a.is_idle() && a.session.sweeps.records.iter().any(|r| r.complete()));
    assert_axis(&h, "threshold a (weight value)", true, 4);
    assert_axis(&h, "accuracy (%)", false, 5);
    h.get_by_role_and_label(egui::accesskit::Role::Label, "fraction retained ρ");
    for series in ["clean accuracy", "adversarial accuracy", "fraction retained ρ", "current threshold a"] {
        h.get_by_role_and_label(egui::accesskit::Role::CheckBox, series);
    }

    // The landscape of a run of four checkpoints: each map has its axes, the accuracy maps a
    // colorbar, the class maps the class legend.
    {
        let a = h.state_mut();
        let result = synthetic::landscape();
        let model = a.session.model.as_mut().expect("a model");
        model.checkpoints = result.checkpoints.iter().map(|c| (c.path.clone(), c.epoch)).collect();
        a.session.landscape = Some(result);
    }
    h.get_by_label("Landscape").click();
    h.run_steps(2);
    assert_axis(&h, "threshold step i", true, 4);
    assert_axis(&h, "epoch", false, 4);
    for title in ["clean accuracy (%)", "adversarial accuracy (%)"] {
        h.get_by_role_and_label(egui::accesskit::Role::Label, title);
    }
    for class in ["fragile", "robust", "antifragile"] {
        assert_eq!(h.query_all_by_role_and_label(egui::accesskit::Role::Label, class).count(), 2, "{class}");
    }
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
pub(crate) struct Dropped(pub(crate) std::path::PathBuf);

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
    drop_file(&mut h, ckpt);
    wait(&mut h, "the dropped model", |a| {
        a.is_idle() && a.session.model.as_ref().is_some_and(|m| m.name.ends_with("tiny_cnn.safetensors"))
    });
    assert!(h.state().session.readout.is_some());
    assert!(h.state().settings.recent_models.first().is_some_and(|p| p.ends_with("tiny_cnn.safetensors")));
}

/// Drops `path` on the window, as a file manager does.
fn drop_file(h: &mut Harness<'_, ExplorerApp>, path: std::path::PathBuf) {
    h.input_mut().dropped_files.push(Arc::new(Dropped(path)));
    h.step();
}

#[test]
fn the_model_panel_draws_an_onnx_graph_with_its_joins() {
    let mut h = app(Arc::default(), [1300.0, 900.0]);
    let onnx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/resnet18_cifar.ts.onnx");
    drop_file(&mut h, onnx);
    wait(&mut h, "the dropped ONNX model", |a| a.is_idle() && opened(a, "resnet18_cifar.ts.onnx"));
    let graph = h.state().session.model.as_ref().map(|m| m.graph.clone()).unwrap();
    assert!(graph.branches());
    // ResNet-18's eight residual sums are rows of the table, named by their blocks.
    assert_eq!(h.query_all_by_label("add of 2").count(), 8);
    for block in ["layer1.0", "layer2.0", "layer4.1"] {
        h.get_by_label(block);
    }
    h.get_by_label("layer2.0.downsample.0");
}

/// A copy of the tiny fixture checkpoint and its card in a fresh folder, beside a subfolder.
fn folder_with_a_checkpoint() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analysis");
    for f in ["tiny_cnn.safetensors", "tiny_cnn.json"] {
        std::fs::copy(fixtures.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::create_dir(dir.path().join("runs")).unwrap();
    dir
}

pub(crate) fn opened(a: &ExplorerApp, name: &str) -> bool {
    a.is_idle() && a.session.model.as_ref().is_some_and(|m| m.name.ends_with(name))
}

#[test]
fn ctrl_o_asks_the_native_dialog_for_a_checkpoint() {
    let dir = folder_with_a_checkpoint();
    let dialogs = Arc::new(ScriptedDialogs::default());
    ScriptedDialogs::push(&dialogs.models, dir.path().join("tiny_cnn.safetensors"));
    let mut h = app(dialogs.clone(), [1300.0, 820.0]);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::O);
    h.step();
    wait(&mut h, "the checkpoint", |a| opened(a, "tiny_cnn.safetensors"));
    assert!(h.state().panels.browser.is_none(), "the native dialog answered: no built-in browser");
    assert!(dialogs.models.lock().unwrap().is_empty(), "the dialog was asked once");
}

#[test]
fn without_a_portal_the_built_in_browser_opens_a_checkpoint() {
    let dir = folder_with_a_checkpoint();
    let why = "no desktop portal (org.freedesktop.portal.Desktop) answered on the session bus";
    let mut h = app(Arc::new(ScriptedDialogs::unavailable(why)), [1300.0, 820.0]);

    // The button opens the browser, which says why; Escape closes it and nothing changes.
    h.get_by_label("Open checkpoint…").click();
    wait(&mut h, "the browser", |a| a.panels.browser.is_some());
    h.run_steps(2);
    h.get_by_label("Open checkpoint");
    assert!(h.get_all_by_label_contains("No desktop portal (org.freedesktop.portal.Desktop)").next().is_some());
    let notes: Vec<_> = h.state().session.messages.iter().map(|m| m.text.clone()).collect();
    assert!(notes.iter().any(|n| n.contains("using the built-in browser")), "{notes:?}");
    h.key_press(egui::Key::Escape);
    h.step();
    wait(&mut h, "the browser to close", |a| a.panels.browser.is_none() && a.is_idle());
    assert!(h.state().session.model.as_ref().is_some_and(|m| m.name.contains("embedded")));

    // Ctrl+O takes the same way; up a folder, type the folder, then pick with the keyboard.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::O);
    h.step();
    wait(&mut h, "the browser again", |a| a.panels.browser.is_some());
    h.run_steps(2);
    let path = |h: &Harness<'_, ExplorerApp>| {
        h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Path").value().unwrap_or_default()
    };
    let start = path(&h);
    h.get_by_label("Parent").click();
    h.step();
    let parent = Path::new(&start).parent().expect("the working folder has a parent");
    assert_eq!(Path::new(&path(&h)), parent);
    h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Path").click();
    h.step();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.step();
    h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Path").type_text(&dir.path().display().to_string());
    h.step();
    h.key_press(egui::Key::Enter);
    h.run_steps(2);
    assert_eq!(Path::new(&path(&h)), dir.path().canonicalize().unwrap());
    // Folders first: runs/, then tiny_cnn.json, then tiny_cnn.safetensors.
    h.get_by_label("runs/");
    h.get_by_label("tiny_cnn.json");
    for _ in 0..3 {
        h.key_press(egui::Key::ArrowDown);
        h.step();
    }
    h.key_press(egui::Key::Enter);
    h.step();
    wait(&mut h, "the checkpoint", |a| opened(a, "tiny_cnn.safetensors"));
    assert!(h.state().panels.browser.is_none());
    // Only one note says why, however often the browser opens.
    let why_notes = h.state().session.messages.iter().filter(|m| m.text.contains("built-in browser")).count();
    assert!(why_notes <= 1, "{why_notes} notes");
}

#[test]
fn the_folder_listing_puts_folders_first_highlights_what_opens_and_caps() {
    let dir = tempfile::tempdir().unwrap();
    let files =
        ["b.safetensors", "a.pth", "card.json", "notes.txt", ".hidden.pt", "t10k-images-idx3-ubyte.gz", "batch.bin"];
    for f in files {
        std::fs::write(dir.path().join(f), b"x").unwrap();
    }
    for d in ["zeta", "Alpha", ".git"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    let names = |l: &file_browser::Listing| l.entries.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    let lit = |l: &file_browser::Listing| {
        l.entries.iter().filter(|e| e.highlighted).map(|e| e.name.clone()).collect::<Vec<_>>()
    };

    let models = file_browser::list(dir.path(), Purpose::OpenModel, false, MAX_ENTRIES);
    assert_eq!(
        names(&models),
        ["Alpha", "zeta", "a.pth", "b.safetensors", "batch.bin", "card.json", "notes.txt", "t10k-images-idx3-ubyte.gz"]
    );
    assert!(models.entries[..2].iter().all(|e| e.folder) && models.entries[2..].iter().all(|e| !e.folder));
    assert_eq!(lit(&models), ["a.pth", "b.safetensors"], "checkpoints stand out; cards do not");
    assert_eq!((models.more, models.error.clone()), (0, None));
    let data = file_browser::list(dir.path(), Purpose::OpenData, false, MAX_ENTRIES);
    assert_eq!(lit(&data), ["batch.bin", "t10k-images-idx3-ubyte.gz"]);
    assert!(lit(&file_browser::list(dir.path(), Purpose::ExportAll, false, MAX_ENTRIES)).is_empty());

    let hidden = file_browser::list(dir.path(), Purpose::OpenModel, true, MAX_ENTRIES);
    assert_eq!(hidden.entries.len(), 10, "hidden entries only on request");
    assert!(names(&hidden).contains(&".git".to_string()) && lit(&hidden).contains(&".hidden.pt".to_string()));

    // A huge folder is cut at the cap and says how many more there are.
    let capped = file_browser::list(dir.path(), Purpose::OpenModel, false, 3);
    assert_eq!((capped.entries.len(), capped.more), (3, 5));

    let missing = file_browser::list(&dir.path().join("gone"), Purpose::OpenModel, false, MAX_ENTRIES);
    let error = missing.error.expect("an error, not a panic");
    assert!(
        missing.entries.is_empty() && error.contains("cannot read this folder") && error.ends_with("gone"),
        "{error}"
    );
}

#[test]
fn the_native_dialog_check_answers_quickly_and_says_why_not() {
    use fragility_explorer::ui::dialogs::{Dialogs, RfdDialogs};
    let start = Instant::now();
    let answer = RfdDialogs.native();
    eprintln!("native dialogs here: {answer:?} after {:?}", start.elapsed());
    // A silent bus costs at most the check's timeout, never a hang.
    assert!(start.elapsed() < Duration::from_secs(8), "{:?}", start.elapsed());
    if let Err(why) = answer {
        assert!(why.contains("zenity"), "the reason names both ways that were tried: {why}");
    }
}

/// A checkpoint with a NaN weight: the model panel marks the layer, the evaluation is refused
/// with one error naming the tensor, and the app goes on answering.
#[test]
fn a_model_with_a_nan_weight_is_marked_and_its_analyses_refused() {
    let dir = folder_with_a_checkpoint();
    let path = dir.path().join("tiny_cnn.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    let (key, t) = tensors.iter().find(|(k, _)| k.ends_with(".weight")).map(|(k, t)| (k.clone(), t.clone())).unwrap();
    let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v[0] = f32::NAN;
    tensors.insert(key.clone(), candle_core::Tensor::from_vec(v, t.shape(), &candle_core::Device::Cpu).unwrap());
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let dialogs = Arc::new(ScriptedDialogs::default());
    ScriptedDialogs::push(&dialogs.models, &path);
    let mut h = app(dialogs, [1300.0, 820.0]);
    h.get_by_label("Open checkpoint…").click();
    wait(&mut h, "the refusal", |a| a.is_idle() && a.session.messages.iter().any(|m| m.error));
    let errors: Vec<String> = h.state().session.messages.iter().filter(|m| m.error).map(|m| m.text.clone()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("NaN or infinite") && errors[0].contains(&key), "{errors:?}");
    h.get_by_label("1 NaN/inf");
    h.get_by_label_contains("the analyses refuse this model");
    // The app still answers: the embedded model opens and evaluates.
    h.state_mut().push(Action::OpenEmbedded);
    wait(&mut h, "the embedded model", |a| {
        a.is_idle()
            && a.session.model.as_ref().is_some_and(|m| m.name.contains("embedded"))
            && a.session.readout.is_some()
    });
}
