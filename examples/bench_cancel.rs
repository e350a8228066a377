//! Cancellation latency: from Cancel (the app) or Ctrl-C (the command line) to the job
//! having stopped, for every kind of long job.
//!
//!     cargo run --release --example bench_cancel -- [--repeats 5]
//!
//! - App: the app itself (egui_kittest, no renderer) on the embedded model with 1,000
//!   evaluation images (the perturbation view's 64 samples at most). Each job is started as
//!   its button starts it, left to run for a random 0.2-1.2 s after it starts, then cancelled
//!   as the Cancel button cancels it; the time is from `JobTracker::cancel` to the tracker seeing the job end (the worker's
//!   `Cancelled` event, drained by the frame loop every 2 ms).
//! - CLI: the built binary (`target/release/fragility-explorer`, build it first) runs `eval`,
//!   `sweep`, `dropout`, `train`, `landscape`, `trajectory` and `selective` on the embedded MNIST images as an
//!   IDX folder (the last three over a 3-epoch run trained first); after a random
//!   0.5-1.5 s it gets SIGINT; the time is from the signal to the process's exit.
//!
//! Prints one JSON line on stdout (median and max per job, in ms); progress goes to stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use egui_kittest::Harness;
use fragility_explorer::engine::analysis::filter::FilterKind;
use fragility_explorer::engine::attack::{AttackConfig, AttackKind};
use fragility_explorer::jobs::JobKind;
use fragility_explorer::ui::actions::Action;
use fragility_explorer::ui::{AppOptions, ExplorerApp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// A job that has not begun or ended in this long is stuck.
const LIMIT: Duration = Duration::from_secs(300);

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn stats(v: &[f64]) -> Value {
    if v.is_empty() {
        return json!({"n": 0});
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let r = |x: f64| (x * 10.0).round() / 10.0;
    json!({"n": s.len(), "median_ms": r(s[s.len() / 2]), "max_ms": r(s[s.len() - 1])})
}

fn step_until(h: &mut Harness<'_, ExplorerApp>, what: &str, done: impl Fn(&ExplorerApp) -> bool) -> Result<()> {
    let start = Instant::now();
    while !done(h.state()) {
        if start.elapsed() > LIMIT {
            bail!("timed out waiting for {what}");
        }
        h.step();
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// The jobs the app can run for long: the action that starts each, and whether it runs with
/// a 40-step PGD on all 1,000 images (a job that is short with FGSM).
fn app_jobs() -> Vec<(&'static str, JobKind, Action, bool)> {
    vec![
        ("evaluation (pgd, 40 steps)", JobKind::Eval, Action::FilterChanged, true),
        ("perturbation (pgd, 40 steps)", JobKind::Perturb, Action::Perturb, true),
        (
            "sweep (characterise all layers)",
            JobKind::Sweep,
            Action::Sweep { filters: FilterKind::PAPER.to_vec(), all_layers: true },
            false,
        ),
        ("eps curve", JobKind::EpsCurve, Action::EpsCurve, false),
        ("nodal dropout", JobKind::Dropout, Action::Dropout { layer: None }, false),
        ("training (selective)", JobKind::Training, Action::Train, false),
    ]
}

/// The app's attack with the PGD its controls allow at most (40 steps), or plain FGSM.
fn attack(current: &AttackConfig, with_pgd: bool) -> AttackConfig {
    let kind = if with_pgd { AttackKind::Pgd } else { AttackKind::Fgsm };
    AttackConfig { kind, pgd_steps: 40, ..current.clone() }
}

fn app_case(repeats: usize, rng: &mut ChaCha8Rng) -> Result<Value> {
    let mut h = Harness::builder().with_size([1300.0, 820.0]).build_eframe(|cc| {
        let options = AppOptions { fresh: true, eval_images: Some(1000), ..AppOptions::default() };
        ExplorerApp::new(cc, options).expect("the app starts")
    });
    step_until(&mut h, "the embedded model", |a| a.is_idle() && a.session.readout.is_some())?;
    let mut out = serde_json::Map::new();
    for (name, kind, action, with_pgd) in app_jobs() {
        h.state_mut().settings.attack = attack(&h.state().settings.attack, with_pgd);
        h.state_mut().settings.subset = 1000;
        h.state_mut().settings.samples = 64;
        let mut times = Vec::new();
        for _ in 0..repeats {
            h.state_mut().push(action.clone());
            step_until(&mut h, "the job's start", |a| a.jobs.is_running(kind))?;
            let started = Instant::now();
            let run_for = Duration::from_millis(rng.random_range(200..1200));
            let until = Instant::now() + run_for;
            while Instant::now() < until && h.state().jobs.is_running(kind) {
                h.step();
                std::thread::sleep(Duration::from_millis(2));
            }
            if !h.state().jobs.is_running(kind) {
                let last = h.state().session.messages.last().map(|m| m.text.clone()).unwrap_or_default();
                eprintln!("{name}: ended by itself after {:?} ({last}); not counted", started.elapsed());
                continue;
            }
            // The time starts where a click on Cancel would: the action is taken in the next frame.
            let t = Instant::now();
            h.state_mut().push(Action::Cancel(kind));
            step_until(&mut h, "the cancelled job's end", |a| !a.jobs.is_running(kind))?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            step_until(&mut h, "idle", |a| a.is_idle())?;
        }
        eprintln!("app, {name}: {times:.1?} ms");
        out.insert(name.into(), stats(&times));
    }
    Ok(Value::Object(out))
}

/// The default assets' 1,000 MNIST test images as both splits of an MNIST folder.
fn mnist_folder(assets: &Path, dir: &Path) -> Result<PathBuf> {
    let folder = dir.join("mnist");
    std::fs::create_dir_all(&folder)?;
    for name in ["images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"] {
        let src = assets.join(format!("mnist-test-1000-{name}"));
        for split in ["train", "t10k"] {
            std::fs::copy(&src, folder.join(format!("{split}-{name}"))).with_context(|| src.display().to_string())?;
        }
    }
    Ok(folder)
}

/// The default model's card with the sizes training from scratch needs, read from its weights.
fn trainable_card(assets: &Path, dir: &Path) -> Result<PathBuf> {
    let weights =
        candle_core::safetensors::load(assets.join("mnist_cnn_small.safetensors"), &candle_core::Device::Cpu)?;
    let mut card: Value = serde_json::from_slice(&std::fs::read(assets.join("mnist_cnn_small.json"))?)?;
    for layer in card["layers"].as_array_mut().context("the card's layers")? {
        let Some(key) = layer["key"].as_str().map(String::from) else { continue };
        let dims = weights.get(&format!("{key}.weight")).context("a layer's weight")?.dims().to_vec();
        if layer["type"] == "conv2d" {
            layer["out_channels"] = json!(dims[0]);
            layer["kernel"] = json!(dims[2]);
        } else {
            layer["out_features"] = json!(dims[0]);
        }
    }
    let path = dir.join("trainable.json");
    std::fs::write(&path, serde_json::to_vec(&card)?)?;
    Ok(path)
}

fn cli_case(repeats: usize, rng: &mut ChaCha8Rng) -> Result<Value> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/fragility-explorer");
    if !bin.is_file() {
        bail!("build the binary first: cargo build --release");
    }
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/default");
    let dir = tempfile::tempdir()?;
    let d = mnist_folder(&assets, dir.path())?.display().to_string();
    let m = assets.join("mnist_cnn_small.safetensors").display().to_string();
    let card = trainable_card(&assets, dir.path())?.display().to_string();
    let out = dir.path().join("out").display().to_string();
    // A short run whose checkpoints the landscape and selective backpropagation start from.
    let runs = dir.path().join("runs");
    let status = Command::new(&bin)
        .args(["train", "--model-card", &card, "--data", &d, "--epochs", "3", "--out"])
        .arg(&runs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("the training run for the landscape failed");
    }
    let last = runs.join("checkpoint-epoch-003.safetensors").display().to_string();
    let runs = runs.display().to_string();
    let commands: Vec<(&str, Vec<String>)> = vec![
        ("eval (pgd, 40 steps)", vec!["eval", "--model", &m, "--data", &d, "--attack", "pgd", "--pgd-steps", "40"]),
        ("sweep", vec!["sweep", "--model", &m, "--data", &d, "--out", &out]),
        ("dropout", vec!["dropout", "--model", &m, "--data", &d, "--out", &out]),
        ("train", vec!["train", "--model-card", &card, "--data", &d, "--epochs", "50", "--out", &out]),
        ("landscape", vec!["landscape", "--checkpoints", &runs, "--data", &d, "--out", &out]),
        ("trajectory", vec!["trajectory", "--checkpoints", &runs, "--data", &d, "--out", &out]),
        ("selective", vec!["selective", "--checkpoint", &last, "--data", &d, "--epochs", "20", "--out", &out]),
    ]
    .into_iter()
    .map(|(n, v)| (n, v.into_iter().map(String::from).collect()))
    .collect();
    let mut result = serde_json::Map::new();
    for (name, args) in commands {
        let mut times = Vec::new();
        for _ in 0..repeats {
            std::fs::remove_dir_all(dir.path().join("out")).ok();
            let mut child = Command::new(&bin).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
            std::thread::sleep(Duration::from_millis(rng.random_range(500..1500)));
            if child.try_wait()?.is_some() {
                eprintln!("{name}: ended by itself before the signal; not counted");
                continue;
            }
            let t = Instant::now();
            // SAFETY: a signal to our own child, which has not been reaped (try_wait said so).
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            child.wait()?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        eprintln!("cli, {name}: {times:.1?} ms");
        if !times.is_empty() {
            result.insert(name.into(), stats(&times));
        }
    }
    Ok(Value::Object(result))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let repeats: usize = arg(&args, "--repeats").map_or(Ok(5), |v| v.parse()).context("--repeats")?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let app = app_case(repeats, &mut rng)?;
    let cli = cli_case(repeats, &mut rng).map_err(|e| anyhow!("command line: {e:#}"))?;
    println!("{}", json!({"repeats": repeats, "app": app, "cli": cli}));
    Ok(())
}
