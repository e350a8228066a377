//! The app's frame time in a real window: eframe's own loop, surface and present, as a user
//! sees it (bench_slider's `frames` case renders offscreen through egui_kittest and reads
//! each image back, which a window never does).
//!
//!     xvfb-run -s "-screen 0 1920x1080x24" cargo run --release --example bench_frames -- \
//!         [--frames 300] [--vsync] [--size 1300x820] [--empty | --filled] [--idle-view mask]
//!
//! The app opens on the embedded model with 1,000 evaluation images. Once it is idle, it
//! records `--frames` idle frames on the mask view, then starts "Characterise all layers" and
//! records `--frames` frames on the mask view and as many on the curves view while the
//! threshold moves every frame (a drag across a third of its range and back; each move
//! sends the evaluation a slider move sends). Every frame is asked for at once, so frames
//! come as fast as the app can make them.
//!
//! Per frame it gives `cpu_ms`, eframe's own measure (`Frame::info().cpu_usage`: the app's
//! `ui`, tessellation and rendering, without waiting for vsync), and `interval_ms`, the wall
//! time from one frame to the next. Without `--vsync` the surface presents without waiting
//! for a vertical blank (`AutoNoVsync`), so the interval is the whole cost of a frame.
//!
//! `--empty` and `--filled` measure the renderer's floor instead of the app: the same window
//! holding one label (eframe's clear is all that is drawn), or one rectangle covering it, as
//! any panel's background does. `--idle-view` picks the view of the idle frames.
//!
//! Prints one JSON line on stdout; progress goes to stderr.

use std::time::Instant;

use anyhow::{Result, anyhow};
use eframe::egui;
use eframe::egui_wgpu::{WgpuConfiguration, wgpu};
use fragility_explorer::engine::analysis::filter::FilterKind;
use fragility_explorer::jobs::JobKind;
use fragility_explorer::ui::actions::Action;
use fragility_explorer::ui::settings::Tab;
use fragility_explorer::ui::{AppOptions, ExplorerApp};
use serde_json::{Value, json};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
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

fn stats(v: &[f64]) -> Value {
    let r = |x: f64| (x * 100.0).round() / 100.0;
    json!({
        "n": v.len(),
        "median_ms": r(percentile(v, 0.5)),
        "p95_ms": r(percentile(v, 0.95)),
        "p99_ms": r(percentile(v, 0.99)),
        "max_ms": r(percentile(v, 1.0)),
    })
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Phase {
    Settling,
    Idle,
    Sweeping(Tab),
    Done,
}

#[derive(Default)]
struct Series {
    cpu: Vec<f64>,
    interval: Vec<f64>,
}

struct Bench {
    app: ExplorerApp,
    frames: usize,
    /// The view of the idle frames.
    idle_view: Tab,
    phase: Phase,
    last: Option<Instant>,
    series: Vec<(String, Series)>,
    frame_in_phase: usize,
    /// The threshold range when the drag starts.
    range: (f64, f64),
    error: Option<String>,
    result: std::sync::Arc<std::sync::Mutex<Option<Value>>>,
}

impl Bench {
    fn next_phase(&mut self, ctx: &egui::Context) {
        self.frame_in_phase = 0;
        self.last = None;
        self.phase = match self.phase {
            Phase::Settling => {
                self.app.settings.layout.tab = self.idle_view;
                Phase::Idle
            }
            Phase::Idle => {
                eprintln!("frames: characterising all layers");
                self.app.push(Action::Sweep { filters: FilterKind::PAPER.to_vec(), all_layers: true });
                self.range = self.app.threshold_range();
                Phase::Sweeping(Tab::Mask)
            }
            Phase::Sweeping(Tab::Mask) => Phase::Sweeping(Tab::Curves),
            Phase::Sweeping(_) | Phase::Done => {
                self.finish();
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                Phase::Done
            }
        };
        if let Phase::Sweeping(tab) = self.phase {
            self.app.settings.layout.tab = tab;
        }
        if self.phase != Phase::Done {
            self.series.push((self.label(), Series::default()));
        }
    }

    fn label(&self) -> String {
        match self.phase {
            Phase::Sweeping(tab) => format!("sweeping_{}", format!("{tab:?}").to_lowercase()),
            p => format!("{p:?}").to_lowercase(),
        }
    }

    fn finish(&mut self) {
        let mut out = serde_json::Map::new();
        for (name, s) in &self.series {
            if name == "settling" {
                continue;
            }
            out.insert(name.clone(), json!({"cpu": stats(&s.cpu), "interval": stats(&s.interval)}));
        }
        let errors: Vec<String> =
            self.app.session.messages.iter().filter(|m| m.error).map(|m| m.text.clone()).collect();
        out.insert("errors".into(), json!(errors));
        out.insert("bench_error".into(), json!(self.error));
        *self.result.lock().expect("result lock") = Some(Value::Object(out));
        self.app.jobs.cancel(JobKind::Sweep);
    }

    /// A drag across a third of the slider's range and back, one move per frame.
    fn move_threshold(&mut self) {
        let (lo, hi) = self.range;
        let cycle = 80;
        let i = self.frame_in_phase % cycle;
        let f = if i < cycle / 2 { i as f64 / (cycle / 2) as f64 } else { (cycle - i) as f64 / (cycle / 2) as f64 };
        self.app.settings.threshold = lo + (hi - lo) * (0.3 + 0.33 * f);
        self.app.push(Action::FilterChanged);
    }
}

impl eframe::App for Bench {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let now = Instant::now();
        if let (Some(last), Some((_, s))) = (self.last, self.series.last_mut()) {
            s.interval.push((now - last).as_secs_f64() * 1000.0);
            // The previous frame's cost, measured by eframe.
            if let Some(cpu) = frame.info().cpu_usage {
                s.cpu.push(cpu as f64 * 1000.0);
            }
        }
        self.last = Some(now);
        if self.series.is_empty() {
            self.series.push(("settling".into(), Series::default()));
        }
        match self.phase {
            Phase::Settling => {
                if self.app.is_idle() && self.app.session.readout.is_some() {
                    eprintln!("frames: idle");
                    self.next_phase(ui.ctx());
                }
            }
            Phase::Sweeping(_) => {
                if !self.app.jobs.is_running(JobKind::Sweep) {
                    self.error = Some("the sweep ended before the frames were measured; ask for fewer --frames".into());
                    self.phase = Phase::Sweeping(Tab::Curves);
                    self.next_phase(ui.ctx());
                } else {
                    self.move_threshold();
                }
            }
            Phase::Idle | Phase::Done => {}
        }
        if !matches!(self.phase, Phase::Settling | Phase::Done) {
            self.frame_in_phase += 1;
            if self.frame_in_phase > self.frames {
                self.next_phase(ui.ctx());
            }
        }
        eframe::App::ui(&mut self.app, ui, frame);
        ui.ctx().request_repaint();
    }
}

/// A window with one label: what any egui app costs to draw here.
struct Empty {
    frames: usize,
    /// Paint the window's area once (else eframe's clear is all there is).
    filled: bool,
    last: Option<Instant>,
    series: Series,
    result: std::sync::Arc<std::sync::Mutex<Option<Value>>>,
}

impl eframe::App for Empty {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let now = Instant::now();
        if let Some(last) = self.last {
            self.series.interval.push((now - last).as_secs_f64() * 1000.0);
            if let Some(cpu) = frame.info().cpu_usage {
                self.series.cpu.push(cpu as f64 * 1000.0);
            }
        }
        self.last = Some(now);
        if self.filled {
            // One rectangle over the whole window, as any panel's background is.
            let all = ui.ctx().content_rect();
            ui.painter().rect_filled(all, 0.0, egui::Color32::DARK_GRAY);
        }
        ui.label("empty");
        if self.series.interval.len() >= self.frames {
            let s = &self.series;
            let value = json!({if self.filled { "filled" } else { "empty" }: {"cpu": stats(&s.cpu), "interval": stats(&s.interval)}});
            *self.result.lock().expect("result lock") = Some(value);
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        }
        ui.ctx().request_repaint();
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let frames: usize = arg(&args, "--frames").map_or(Ok(300), |v| v.parse())?;
    let vsync = args.iter().any(|a| a == "--vsync");
    let empty = args.iter().any(|a| a == "--empty") || args.iter().any(|a| a == "--filled");
    let filled = args.iter().any(|a| a == "--filled");
    let idle_view =
        arg(&args, "--idle-view").map_or(Ok(Tab::Mask), |v| Tab::parse(&v).ok_or(anyhow!("--idle-view {v}")))?;
    let size = arg(&args, "--size").unwrap_or_else(|| "1300x820".into());
    let (w, h) = size.split_once('x').ok_or_else(|| anyhow!("--size must look like 1300x820"))?;
    let (w, h): (f32, f32) = (w.parse()?, h.parse()?);
    let mut wgpu_options = WgpuConfiguration::default();
    wgpu_options.surface.present_mode =
        if vsync { wgpu::PresentMode::AutoVsync } else { wgpu::PresentMode::AutoNoVsync };
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_title("bench_frames").with_inner_size([w, h]),
        renderer: eframe::Renderer::Wgpu,
        wgpu_options,
        // Neither a stored window size nor stored app state: every run starts the same.
        persist_window: false,
        persistence_path: Some(std::env::temp_dir().join(format!("bench_frames-{}", std::process::id()))),
        ..Default::default()
    };
    let result = std::sync::Arc::new(std::sync::Mutex::new(None));
    let shared = result.clone();
    let started = Instant::now();
    eframe::run_native(
        "bench_frames",
        native,
        Box::new(move |cc| {
            let adapter = cc.wgpu_render_state.as_ref().map(|rs| rs.adapter.get_info());
            eprintln!("frames: adapter {:?}", adapter.map(|a| (a.name, a.backend)));
            if empty {
                let app = Empty { frames, filled, last: None, series: Series::default(), result: shared };
                return Ok(Box::new(app) as Box<dyn eframe::App>);
            }
            let options = AppOptions { fresh: true, eval_images: Some(1000), ..AppOptions::default() };
            let app = ExplorerApp::new(cc, options)?;
            Ok(Box::new(Bench {
                app,
                frames,
                idle_view,
                phase: Phase::Settling,
                last: None,
                series: Vec::new(),
                frame_in_phase: 0,
                range: (0.0, 1.0),
                error: None,
                result: shared,
            }) as Box<dyn eframe::App>)
        }),
    )
    .map_err(|e| anyhow!("cannot open the window: {e}"))?;
    let mut value = result.lock().expect("result lock").take().ok_or_else(|| anyhow!("the window closed early"))?;
    value["present_mode"] = json!(if vsync { "AutoVsync" } else { "AutoNoVsync" });
    value["window"] = json!(format!("{size} points"));
    value["seconds"] = json!(started.elapsed().as_secs_f64().round());
    println!("{value}");
    Ok(())
}
