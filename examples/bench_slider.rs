//! Slider latency: from a threshold change to the accuracy readout, through the app's own
//! worker, and the UI's frame time while a sweep runs.
//!
//!     cargo run --release --example bench_slider -- [--thresholds 30] [--seed 0]
//!         [--cases default-200,default-1000,resnet18-200,resnet18-1000,drag,frames]
//!         [--drags 8] [--frames 200]
//!
//! - `default-N`, `resnet18-N`: the embedded model (or the ResNet-18 fixture
//!   tests/fixtures/models/resnet18_tv.safetensors: width 4, torchvision stem, 1x28x28, random
//!   weights) on the first N embedded MNIST test images. On every filterable layer the
//!   app's first evaluation of the layer (what selecting it sends; it builds the kept prefix)
//!   is timed as `layer_switch`, then `--thresholds` random thresholds (seeded, uniform in the
//!   layer's slider range) one after another: each sends the command the app sends after a
//!   threshold change (`ExplorerApp::evaluate_command`, app settings: filter h1, local scope,
//!   FGSM regenerated at the model's default eps, clean and adversarial counts) and times
//!   the first estimate and the exact readout from the moment the command is sent.
//! - `drag`: the slider dragged at 60 Hz (12 moves, a random walk) and stopped, on the
//!   embedded model with 1,000 images: the time from the last move to the first estimate and
//!   to the exact readout for the last threshold, for the app's policy (every move sends an
//!   evaluation that stops the one before; at most one waits) against waiting for a quiet
//!   time after the last move, on the same paths.
//! - `frames`: the app itself (egui_kittest with the wgpu renderer, as tests/gui.rs) with
//!   1,000 evaluation images while "Characterise all layers" runs, the threshold slider
//!   dragged by the pointer: each frame's update (`Harness::step`: the app's `ui`, layout,
//!   AccessKit) and its render (`Harness::render`: tessellation, wgpu drawing and the read-back
//!   of the image, on the software Vulkan driver without a GPU), at 60 frames per second,
//!   on the mask view and then on the curves view. For comparison: idle frames (each view,
//!   nothing running) and a window of the same size filled by one rectangle (the software
//!   rasteriser's floor).
//!
//! Each case also gives `other_load`: the mean CPU use of other processes while it ran, in
//! cores out of the machine's; times measured beside other work are longer.
//!
//! Prints one JSON line on stdout; progress goes to stderr.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use fragility_explorer::engine::analysis::filter::FilterKind;
use fragility_explorer::engine::device::DeviceChoice;
use fragility_explorer::jobs::command::{ModelSummary, Source};
use fragility_explorer::jobs::{Command, Event, JobKind, JobTracker, Payload, Worker};
use fragility_explorer::ui::actions::Action;
use fragility_explorer::ui::settings::{Settings, Tab};
use fragility_explorer::ui::{AppOptions, ExplorerApp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// The slider moves this often while dragged (a 60 Hz display).
const FRAME: Duration = Duration::from_micros(16_667);
/// No event for this long means the worker is stuck.
const QUIET: Duration = Duration::from_secs(600);

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The nearest-rank percentile `q` (0-1] of `v`.
fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn stats(v: &[f64]) -> Value {
    json!({
        "n": v.len(),
        "median_ms": round2(percentile(v, 0.5)),
        "p95_ms": round2(percentile(v, 0.95)),
    })
}

/// The UI's side of the worker: the same worker, commands and job tracker the app uses.
struct Ui {
    worker: Worker,
    jobs: JobTracker,
    wake: Receiver<()>,
}

impl Ui {
    fn new() -> Result<Self> {
        let (tx, wake) = bounded(1);
        // What the app's repaint request is to it: a wake-up (a full channel already is one).
        let worker = Worker::spawn(DeviceChoice::Cpu, move || {
            tx.try_send(()).ok();
        })?;
        Ok(Self { worker, jobs: JobTracker::default(), wake })
    }

    fn send(&mut self, kind: JobKind, make: impl FnOnce(fragility_explorer::jobs::Job) -> Command) -> Result<u64> {
        let job = self.jobs.start(kind);
        let generation = job.generation;
        self.worker.send(make(job)).map_err(|e| anyhow!(e))?;
        Ok(generation)
    }

    /// The next event, waiting until `deadline` at most.
    fn recv_until(&self, deadline: Instant) -> Result<Option<Event>> {
        loop {
            if let Some(e) = self.worker.try_recv() {
                return Ok(Some(e));
            }
            match self.wake.recv_deadline(deadline) {
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => bail!("the worker has stopped"),
            }
        }
    }

    fn recv(&self) -> Result<Event> {
        self.recv_until(Instant::now() + QUIET)?.ok_or_else(|| anyhow!("no answer from the worker in {QUIET:?}"))
    }

    /// Waits for the end of job `generation`; its final payload.
    fn finish(&self, generation: u64) -> Result<Payload> {
        loop {
            let e = self.recv()?;
            if e.generation != generation {
                continue;
            }
            match e.payload {
                Payload::Progress { .. } | Payload::Note(_) | Payload::EvalEstimate(_) => {}
                Payload::Failed(m) => bail!("{m}"),
                Payload::Cancelled => bail!("cancelled"),
                p => return Ok(p),
            }
        }
    }

    fn open(&mut self, model: Source) -> Result<ModelSummary> {
        let g =
            self.send(JobKind::Load, |job| Command::Open { job, model: Some(model), data: Some(Source::Embedded) })?;
        match self.finish(g)? {
            Payload::Opened { model, .. } => Ok(*model),
            Payload::NeedCard { message, .. } => bail!("the model needs a card: {message}"),
            _ => bail!("unexpected answer to open"),
        }
    }

    /// Sends the readout's evaluation for `settings`; milliseconds from sending to the first
    /// estimate (if one came) and to the exact counts.
    fn evaluate(&mut self, settings: &Settings) -> Result<(Option<f64>, f64)> {
        let t0 = Instant::now();
        let g = self.send(JobKind::Eval, |job| ExplorerApp::evaluate_command(settings, job))?;
        let mut estimate = None;
        loop {
            let e = self.recv()?;
            if e.generation != g {
                continue;
            }
            match e.payload {
                Payload::EvalEstimate(_) => estimate = Some(ms(t0.elapsed())),
                Payload::Evaluated(_) => return Ok((estimate, ms(t0.elapsed()))),
                Payload::Failed(m) => bail!("{m}"),
                Payload::Cancelled => bail!("cancelled"),
                _ => {}
            }
        }
    }
}

/// The slider's range on a layer, local scope (as `ExplorerApp::threshold_range`).
fn slider_range(model: &ModelSummary, layer: &str, filter: FilterKind) -> Result<(f64, f64)> {
    let row = model.layers.iter().find(|l| l.name == layer).ok_or_else(|| anyhow!("no layer {layer}"))?;
    let (lo, hi) = (row.min as f64, row.max as f64);
    Ok(match filter {
        FilterKind::H0 => (0.0, lo.abs().max(hi.abs())),
        _ => (lo, hi),
    })
}

fn filterable(model: &ModelSummary) -> Vec<String> {
    model.layers.iter().filter(|l| l.filterable).map(|l| l.name.clone()).collect()
}

fn app_settings(model: &ModelSummary, images: usize) -> Settings {
    let mut settings = Settings { subset: images, ..Settings::default() };
    settings.attack.eps = model.default_eps.unwrap_or(0.0);
    settings
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/resnet18_tv.safetensors")
}

/// Random thresholds on every filterable layer, one evaluation each.
fn thresholds_case(name: &str, images: usize, thresholds: usize, seed: u64) -> Result<Value> {
    let mut ui = Ui::new()?;
    let (source, label) = match name {
        "default" => (Source::Embedded, "embedded mnist_cnn_small".to_string()),
        "resnet18" => (Source::Path(fixture()), "tests/fixtures/models/resnet18_tv.safetensors".to_string()),
        other => bail!("unknown model {other}"),
    };
    let model = ui.open(source)?;
    let mut settings = app_settings(&model, images);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut finals, mut estimates, mut switches) = (Vec::new(), Vec::new(), Vec::new());
    let mut per_layer = serde_json::Map::new();
    for layer in filterable(&model) {
        let (lo, hi) = slider_range(&model, &layer, settings.filter)?;
        settings.layer = Some(layer.clone());
        settings.threshold = lo + 0.25 * (hi - lo);
        // What selecting the layer sends: its values, then the evaluation at once.
        let l = layer.clone();
        ui.send(JobKind::Layer, |job| Command::Layer { job, layer: l })?;
        let (_, switch) = ui.evaluate(&settings)?;
        switches.push(switch);
        let mut here = Vec::new();
        for _ in 0..thresholds {
            settings.threshold = rng.random_range(lo..=hi);
            let (estimate, exact) = ui.evaluate(&settings)?;
            estimates.extend(estimate);
            here.push(exact);
        }
        eprintln!(
            "{name} {images}: {layer}: switch {switch:.0} ms, readout median {:.1} ms, p95 {:.1} ms",
            percentile(&here, 0.5),
            percentile(&here, 0.95)
        );
        per_layer.insert(
            layer,
            json!({"median_ms": round2(percentile(&here, 0.5)), "p95_ms": round2(percentile(&here, 0.95))}),
        );
        finals.extend(here);
    }
    let mut row = stats(&finals);
    row["case"] = json!(format!("{name}_{}_{images}", settings.filter.name()));
    row["model"] = json!(label);
    row["images"] = json!(images);
    row["filter"] = json!(settings.filter.name());
    row["attack"] = json!(format!("fgsm regenerated, eps {}", settings.attack.eps));
    if !estimates.is_empty() {
        row["first_estimate_median_ms"] = json!(round2(percentile(&estimates, 0.5)));
        row["first_estimate_p95_ms"] = json!(round2(percentile(&estimates, 0.95)));
    }
    row["layer_switch_median_ms"] = json!(round2(percentile(&switches, 0.5)));
    row["per_layer"] = Value::Object(per_layer);
    Ok(row)
}

/// When a drag's evaluations go out.
#[derive(Clone, Copy)]
enum Policy {
    /// At every move, unless the one sent before has not begun (as the app does).
    EveryChange,
    /// This long after the last move.
    Quiet(Duration),
}

/// One drag of the slider through `path` at 60 Hz; milliseconds from the last move to the
/// first estimate (if one came) and to the exact readout for the last threshold.
fn drag(ui: &mut Ui, settings: &mut Settings, path: &[f64], policy: Policy) -> Result<(Option<f64>, f64)> {
    let quiet = match policy {
        Policy::EveryChange => Duration::ZERO,
        Policy::Quiet(d) => d,
    };
    let start = Instant::now();
    let move_at = |i: usize| start + FRAME * i as u32;
    let (mut next, mut version) = (0, 0u64);
    let mut due: Option<Instant> = None;
    // The newest evaluation sent: generation, filter version, whether it has answered at all.
    let mut latest: Option<(u64, u64, bool)> = None;
    let mut estimate = None;
    loop {
        let now = Instant::now();
        while next < path.len() && now >= move_at(next) {
            settings.threshold = path[next];
            version += 1;
            due = Some(move_at(next) + quiet);
            next += 1;
        }
        let waiting = latest.is_some_and(|(_, _, answered)| !answered);
        if let Some(d) = due
            && now >= d
            && !waiting
        {
            let g = ui.send(JobKind::Eval, |job| ExplorerApp::evaluate_command(settings, job))?;
            latest = Some((g, version, false));
            due = None;
        }
        let mut deadline = now + QUIET;
        if next < path.len() {
            deadline = deadline.min(move_at(next));
        }
        if let Some(d) = due
            && !waiting
        {
            deadline = deadline.min(d);
        }
        let Some(e) = ui.recv_until(deadline)? else { continue };
        let Some((g, v, answered)) = latest.as_mut() else { continue };
        if e.generation != *g {
            continue;
        }
        *answered = true;
        let last = next == path.len() && *v == version;
        match e.payload {
            Payload::EvalEstimate(_) if last => estimate = Some(ms(Instant::now() - move_at(path.len() - 1))),
            Payload::Evaluated(_) if last => return Ok((estimate, ms(Instant::now() - move_at(path.len() - 1)))),
            Payload::Failed(m) => bail!("{m}"),
            _ => {}
        }
    }
}

fn drag_case(drags: usize, seed: u64) -> Result<Value> {
    let images = 1000;
    let mut ui = Ui::new()?;
    let model = ui.open(Source::Embedded)?;
    let mut settings = app_settings(&model, images);
    let policies = [
        ("every_change", Policy::EveryChange),
        ("quiet_50ms", Policy::Quiet(Duration::from_millis(50))),
        ("quiet_150ms", Policy::Quiet(Duration::from_millis(150))),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); policies.len()];
    let mut estimates: Vec<Vec<f64>> = vec![Vec::new(); policies.len()];
    for layer in filterable(&model) {
        let (lo, hi) = slider_range(&model, &layer, settings.filter)?;
        settings.layer = Some(layer.clone());
        settings.threshold = lo + 0.25 * (hi - lo);
        ui.evaluate(&settings)?;
        for _ in 0..drags {
            // A random walk of 12 moves of up to 2 % of the range each.
            let mut x: f64 = rng.random_range(lo..=hi);
            let path: Vec<f64> = (0..12)
                .map(|_| {
                    x = (x + rng.random_range(-0.02..=0.02) * (hi - lo)).clamp(lo, hi);
                    x
                })
                .collect();
            // Each policy drags the same path, in turn.
            for (i, (_, p)) in policies.iter().enumerate() {
                let (estimate, exact) = drag(&mut ui, &mut settings, &path, *p)?;
                estimates[i].extend(estimate);
                times[i].push(exact);
            }
        }
        eprintln!("drag: {layer} done");
    }
    let rows: Vec<Value> = policies
        .iter()
        .zip(times.iter().zip(&estimates))
        .map(|((name, _), (t, e))| {
            let mut row = stats(t);
            row["policy"] = json!(name);
            row["first_estimate_median_ms"] = json!(round2(percentile(e, 0.5)));
            row["first_estimate_p95_ms"] = json!(round2(percentile(e, 0.95)));
            row
        })
        .collect();
    Ok(json!({"model": "embedded mnist_cnn_small", "images": images, "moves": 12, "policies": rows}))
}

fn frame_stats(v: &[f64]) -> Value {
    json!({
        "n": v.len(),
        "median_ms": round2(percentile(v, 0.5)),
        "p95_ms": round2(percentile(v, 0.95)),
        "p99_ms": round2(percentile(v, 0.99)),
        "max_ms": round2(percentile(v, 1.0)),
    })
}

/// Steps the app until nothing runs and the readout is there.
fn settle(h: &mut Harness<'_, ExplorerApp>, what: &str) -> Result<()> {
    let start = Instant::now();
    while !(h.state().is_idle() && h.state().session.readout.is_some()) {
        if start.elapsed() > QUIET {
            bail!("the app did not settle: {what}");
        }
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn frames_case(frames: usize) -> Result<Value> {
    let mut h = Harness::builder().with_size([1300.0, 820.0]).wgpu().build_eframe(|cc| {
        let options = AppOptions { fresh: true, eval_images: Some(1000), ..AppOptions::default() };
        ExplorerApp::new(cc, options).expect("the app starts")
    });
    settle(&mut h, "the embedded model")?;
    // For comparison: frames with nothing running and no input.
    let mut idle = Vec::new();
    for _ in 0..60 {
        let t = Instant::now();
        h.step();
        h.render().map_err(|e| anyhow!("rendering: {e}"))?;
        idle.push(ms(t.elapsed()));
        std::thread::sleep(FRAME.saturating_sub(t.elapsed()));
    }
    eprintln!("frames: idle median {:.1} ms", percentile(&idle, 0.5));
    // Where the idle frame's time goes: each view alone, then without the side panels.
    let mut idle_by_view = serde_json::Map::new();
    let mut idle_frame = |h: &mut Harness<'_, ExplorerApp>, name: String| -> Result<()> {
        h.run_steps(2);
        let mut v = Vec::new();
        for _ in 0..15 {
            let t = Instant::now();
            h.step();
            h.render().map_err(|e| anyhow!("rendering: {e}"))?;
            v.push(ms(t.elapsed()));
        }
        eprintln!("frames: idle, {name}: median {:.1} ms", percentile(&v, 0.5));
        idle_by_view.insert(name, json!(round2(percentile(&v, 0.5))));
        Ok(())
    };
    for tab in Tab::ALL {
        h.state_mut().settings.layout.tab = tab;
        idle_frame(&mut h, format!("{tab:?}").to_lowercase())?;
    }
    h.state_mut().settings.layout.tab = Tab::Mask;
    h.state_mut().settings.layout.model_panel = false;
    h.state_mut().settings.layout.controls_panel = false;
    idle_frame(&mut h, "mask_without_side_panels".into())?;
    h.state_mut().settings.layout.tab = Tab::Perturbation;
    idle_frame(&mut h, "perturbation_without_side_panels".into())?;
    h.state_mut().settings.layout.tab = Tab::Mask;
    h.state_mut().settings.layout.model_panel = true;
    h.state_mut().settings.layout.controls_panel = true;
    h.run_steps(2);
    eprintln!("frames: characterising all layers");
    h.state_mut().push(Action::Sweep { filters: FilterKind::PAPER.to_vec(), all_layers: true });
    h.step();
    let (mut update, mut render, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut per_tab = serde_json::Map::new();
    for tab in [Tab::Mask, Tab::Curves] {
        h.state_mut().settings.layout.tab = tab;
        h.step();
        let rect = h.get_by_role_and_label(egui::accesskit::Role::Slider, "Threshold").rect();
        let at = |f: f32| egui::pos2(rect.left() + f * rect.width(), rect.center().y);
        let mut here = Vec::new();
        let mut next = Instant::now();
        for i in 0..frames {
            if !h.state().jobs.is_running(JobKind::Sweep) {
                bail!("the sweep ended before the frames were measured; ask for fewer --frames");
            }
            // One pointer event per frame: press, drag across a third of the slider, release.
            let phase = i % 60;
            let pointer = |pressed| egui::Event::PointerButton {
                pos: at(0.3),
                button: egui::PointerButton::Primary,
                pressed,
                modifiers: egui::Modifiers::NONE,
            };
            match phase {
                0 => h.event(egui::Event::PointerMoved(at(0.3))),
                1 => h.event(pointer(true)),
                2..=40 => h.event(egui::Event::PointerMoved(at(0.3 + 0.33 * (phase - 1) as f32 / 39.0))),
                41 => h.event(egui::Event::PointerButton {
                    pos: at(0.63),
                    button: egui::PointerButton::Primary,
                    pressed: false,
                    modifiers: egui::Modifiers::NONE,
                }),
                _ => {}
            }
            let t = Instant::now();
            h.step();
            let u = ms(t.elapsed());
            let t = Instant::now();
            h.render().map_err(|e| anyhow!("rendering: {e}"))?;
            let r = ms(t.elapsed());
            update.push(u);
            render.push(r);
            total.push(u + r);
            here.push(u + r);
            next += FRAME;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            } else {
                next = Instant::now();
            }
        }
        eprintln!("frames: {tab:?}: median {:.1} ms, p99 {:.1} ms", percentile(&here, 0.5), percentile(&here, 0.99));
        per_tab.insert(format!("{tab:?}").to_lowercase(), frame_stats(&here));
    }
    let errors: Vec<String> = h.state().session.messages.iter().filter(|m| m.error).map(|m| m.text.clone()).collect();
    h.state_mut().jobs.cancel(JobKind::Sweep);
    drop(h);
    // The renderer's floor: a window of the same size filled with one rectangle and a label.
    let mut empty = Harness::builder().with_size([1300.0, 820.0]).wgpu().build_ui(|ui| {
        let all = ui.ctx().content_rect();
        ui.painter().rect_filled(all, 0.0, egui::Color32::DARK_GRAY);
        ui.label("empty");
    });
    let mut floor = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        empty.step();
        empty.render().map_err(|e| anyhow!("rendering: {e}"))?;
        floor.push(ms(t.elapsed()));
    }
    Ok(json!({
        "during": "characterise all layers (h1, h2, h3), 1,000 images, threshold dragged",
        "update": frame_stats(&update),
        "render": frame_stats(&render),
        "frame": frame_stats(&total),
        "frame_by_view": per_tab,
        "idle_frame": frame_stats(&idle),
        "filled_window_frame": frame_stats(&floor),
        "idle_frame_median_ms_by_view": idle_by_view,
        "errors": errors,
    }))
}

/// Busy CPU ticks of the whole machine and of this process (Linux; zeros elsewhere).
fn cpu_ticks() -> (u64, u64) {
    let all = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // cpu  user nice system idle iowait irq softirq steal ...: all but idle and iowait.
    let fields: Vec<u64> =
        all.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let busy = fields.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    let me = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // utime and stime are fields 14 and 15, counted after the command name's closing parenthesis.
    let after = me.rsplit_once(')').map_or("", |(_, rest)| rest);
    let own: Vec<u64> = after.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    (busy, own.iter().sum())
}

/// Other processes' mean CPU use between two readings, in cores (clock ticks of 10 ms).
fn others_load(before: (u64, u64), after: (u64, u64), elapsed: Duration) -> f64 {
    let busy = after.0.saturating_sub(before.0) as f64;
    let own = after.1.saturating_sub(before.1) as f64;
    (busy - own).max(0.0) / 100.0 / elapsed.as_secs_f64().max(1e-9)
}

fn main() -> Result<()> {
    fragility_explorer::tune_runtime();
    let args: Vec<String> = std::env::args().collect();
    let thresholds: usize = arg(&args, "--thresholds").map_or(Ok(30), |v| v.parse()).context("--thresholds")?;
    let seed: u64 = arg(&args, "--seed").map_or(Ok(0), |v| v.parse()).context("--seed")?;
    let drags: usize = arg(&args, "--drags").map_or(Ok(8), |v| v.parse()).context("--drags")?;
    let frames: usize = arg(&args, "--frames").map_or(Ok(200), |v| v.parse()).context("--frames")?;
    let cases = arg(&args, "--cases")
        .unwrap_or_else(|| "default-200,default-1000,resnet18-200,resnet18-1000,drag,frames".into());
    let mut rows = Vec::new();
    let (mut drag_result, mut frame_result) = (Value::Null, Value::Null);
    for case in cases.split(',') {
        let (t, before) = (Instant::now(), cpu_ticks());
        let others = |t: Instant| json!(round2(others_load(before, cpu_ticks(), t.elapsed())));
        match case {
            "drag" => {
                drag_result = drag_case(drags, seed)?;
                drag_result["other_load"] = others(t);
            }
            "frames" => {
                frame_result = frames_case(frames)?;
                frame_result["other_load"] = others(t);
            }
            other => {
                let (model, images) = other.split_once('-').ok_or_else(|| anyhow!("unknown case {other}"))?;
                let images: usize = images.parse().with_context(|| format!("case {other}"))?;
                let mut row = thresholds_case(model, images, thresholds, seed)?;
                row["other_load"] = others(t);
                rows.push(row);
            }
        }
        eprintln!("{case}: {:.1} s, other processes' load {}", t.elapsed().as_secs_f64(), others(t));
    }
    let readout = rows.iter().find(|r| r["case"] == "default_h1_1000").map(|r| r["median_ms"].clone());
    let frame_p99 = frame_result.get("frame").map(|f| f["p99_ms"].clone());
    let goals = json!({
        "readout_median_ms_default_1000": readout,
        "readout_within_150ms": readout.as_ref().and_then(Value::as_f64).map(|m| m <= 150.0),
        "frame_p99_ms": frame_p99,
        "frames_within_16ms": frame_p99.as_ref().and_then(Value::as_f64).map(|m| m < 16.0),
    });
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let line = json!({
        "bench": "slider",
        "cpus": cpus,
        "scope": "local",
        "thresholds_per_layer": thresholds,
        "seed": seed,
        "cases": rows,
        "drag": drag_result,
        "frames": frame_result,
        "goals": goals,
    });
    println!("{line}");
    Ok(())
}
