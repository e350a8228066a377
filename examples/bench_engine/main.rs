//! Engine throughput side by side with PyTorch on the same machine.
//!
//!     cargo run --release --example bench_engine -- [--repeats N] [--no-torch]
//!         [--models mnist_cnn,resnet18_cifar,resnet18_tv28] [--batches 64,256]
//!
//! Times a forward pass (evaluation mode), an FGSM step (forward, input gradient with the
//! exact direction, signed step) and an Adam training step, and reports the median images
//! per second of N timed repeats after one warm-up, with the peak resident memory of each
//! configuration. Then runs scripts/bench_torch.py with the same settings and prints the
//! ratio ours / PyTorch (above 1 means faster than PyTorch). `--rounds K` measures each row K
//! times, ours and PyTorch's in turn, and reports medians (the ratio: of each round's ratio).
//!
//! `--work pgd,apgd-ce,square` times the attacks instead, against torchattacks: images uniform
//! in [0, 1] labelled with the network's own clean predictions (so every image is attacked),
//! eps 8/255 in pixel units, clamped to the image; PGD and APGD-CE 10 iterations from the clean
//! image (PGD step 2/255), Square 100 queries, one restart, seed 0.
//!
//!     cargo run --release --example bench_engine -- --sweep mnist_cnn|resnet18_tv28
//!         [--checkpoint FILE] [--layers 0,3] [--max-steps K] [--batch B] [--no-torch]
//!
//! Times docs/METHOD.md sweep loop (every filterable layer x h1, h2, h3 x 25 steps, 1,000 MNIST
//! test images, FGSM regenerated per filtered network) against scripts/bench_torch.py's
//! straightforward PyTorch loop, step by step, and checks both give the same counts.
//!
//! `--onnx [NATIVE,ONNX]` times a network read natively against its ONNX export (onnx.rs).
//! `--conv-layers` times ResNet-18's convolutions one by one against PyTorch's (conv.rs).

mod conv;
mod onnx;

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use fragility_explorer::embedded;
use fragility_explorer::engine::attack::{AttackConfig, AttackKind, attack};
use fragility_explorer::engine::card::{Architecture, ModelCard, Normalize, Stem};
use fragility_explorer::engine::model::init::initial_state;
use fragility_explorer::engine::model::{BnMode, CardOrigin, Network};
use fragility_explorer::engine::train::{Adam, AdamConfig, train_step, trainable_vars};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    model: String,
    batch: usize,
    work: String,
    images_per_s: f64,
    peak_mb: f64,
}

fn model(name: &str, dev: &Device) -> Result<Network> {
    let resnet = |input: [usize; 3], stem| -> Result<Network> {
        let card = ModelCard {
            architecture: Architecture::ResNet18,
            input,
            normalize: Some(Normalize { mean: vec![0.5], std: vec![0.5] }),
            classes: None,
            dataset: None,
            eps: None,
            layers: vec![],
            stem: Some(stem),
            training: None,
            activation: None,
            inner_normalize: None,
        };
        let state = initial_state(&card, 10, 0, dev)?;
        Ok(Network::build(state, Some((card, CardOrigin::Given)), dev)?)
    };
    match name {
        "mnist_cnn" => Ok(embedded::network(dev)?),
        "resnet18_cifar" => resnet([3, 32, 32], Stem::Cifar),
        "resnet18_tv28" => resnet([1, 28, 28], Stem::Torchvision),
        other => anyhow::bail!("unknown model {other}"),
    }
}

/// Peak resident set size since the last reset, in MB (Linux; 0 elsewhere).
fn peak_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").ok();
}

/// The row a child process (`--row`, ours or scripts/bench_torch.py) printed last.
fn child_row(cmd: &mut Command) -> Result<Row> {
    let out = cmd.output()?;
    anyhow::ensure!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().context("a benchmark row printed nothing")?;
    Ok(serde_json::from_str(last)?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The attack rows' budget: iterations of PGD and APGD, queries of Square, eps and PGD's step
/// in pixel units (scripts/bench_torch.py uses the same).
const ATTACK_STEPS: usize = 10;
const SQUARE_QUERIES: usize = 100;
const ATTACK_EPS: f64 = 8.0 / 255.0;
const PGD_STEP: f64 = 2.0 / 255.0;

/// The attack of an attack row, in the network's normalised units.
fn attack_row(work: &str, norm: &Normalize) -> Option<AttackConfig> {
    let kind = match work {
        "pgd" => AttackKind::Pgd,
        "apgd-ce" => AttackKind::ApgdCe,
        "square" => AttackKind::Square,
        _ => return None,
    };
    let std = norm.channel(0).1 as f64;
    Some(AttackConfig {
        kind,
        eps: ATTACK_EPS / std,
        clamp: true,
        pgd_steps: ATTACK_STEPS,
        pgd_step: Some(PGD_STEP / std),
        attack_steps: ATTACK_STEPS,
        queries: SQUARE_QUERIES,
        ..AttackConfig::default()
    })
}

/// Uniform pixels in [0, 1], normalised as the network expects.
fn pixel_batch(net: &Network, batch: usize, norm: &Normalize) -> Result<Tensor> {
    let [c, h, w] = net.card.input;
    let u = Tensor::rand(0f32, 1.0, (batch, c, h, w), &net.device)?;
    let (mean, std): (Vec<f32>, Vec<f32>) = (0..c).map(|i| norm.channel(i)).unzip();
    let mean = Tensor::from_vec(mean, (1, c, 1, 1), &net.device)?;
    let std = Tensor::from_vec(std, (1, c, 1, 1), &net.device)?;
    Ok(u.broadcast_sub(&mean)?.broadcast_div(&std)?)
}

fn bench(net: &Network, batch: usize, work: &str, repeats: usize) -> Result<(f64, f64)> {
    let [c, h, w] = net.card.input;
    let dev = &net.device;
    let norm = net.card.normalize.clone().expect("bench cards normalise");
    let attack_cfg = attack_row(work, &norm);
    let x = match attack_cfg {
        Some(_) => pixel_batch(net, batch, &norm)?,
        None => Tensor::randn(0f32, 1.0, (batch, c, h, w), dev)?,
    };
    let labels: Vec<u32> = match attack_cfg {
        Some(_) => net.logits(&x, BnMode::Running)?.argmax(1)?.to_vec1()?,
        None => (0..batch as u32).map(|i| i % 10).collect(),
    };
    let y = Tensor::from_slice(&labels, batch, dev)?;
    let mut opt = Adam::new(trainable_vars(net), AdamConfig::default())?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let fgsm = AttackConfig::fgsm(0.1);
    reset_peak();
    let mut run = || -> Result<()> {
        match work {
            "forward" => {
                net.logits(&x, BnMode::Running)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
            }
            "fgsm" => {
                attack(net, &x, &labels, &norm, BnMode::Running, &fgsm)?.x_adv.sum_all()?.to_scalar::<f32>()?;
            }
            "train" => {
                train_step(net, &mut opt, &x, &y, &mut rng)?;
            }
            _ if attack_cfg.is_some() => {
                let cfg = attack_cfg.as_ref().expect("an attack row");
                attack(net, &x, &labels, &norm, BnMode::Running, cfg)?.x_adv.sum_all()?.to_scalar::<f32>()?;
            }
            other => anyhow::bail!("unknown work {other}"),
        }
        Ok(())
    };
    run()?;
    let mut rates = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t = Instant::now();
        run()?;
        rates.push(batch as f64 / t.elapsed().as_secs_f64());
    }
    Ok((median(rates), peak_mb()))
}

fn run_sweep_bench(args: &[String], name: &str) -> Result<()> {
    let ours = sweep_bench(args, name)?;
    let ours_median = median(ours.step_seconds.clone());
    println!(
        "ours: {} steps, median {ours_median:.3} s per step, total {:.1} s, peak {:.0} MB",
        ours.step_seconds.len(),
        ours.step_seconds.iter().sum::<f64>(),
        ours.peak_mb
    );
    if args.iter().any(|a| a == "--no-torch") {
        return Ok(());
    }
    let mut cmd = Command::new("python3");
    cmd.args(["scripts/bench_torch.py", "--sweep", name]);
    for flag in ["--checkpoint", "--layers", "--max-steps", "--images", "--data"] {
        if let Some(v) = arg(args, flag) {
            cmd.args([flag, &v]);
        }
    }
    let out = cmd.output().context("running scripts/bench_torch.py --sweep")?;
    anyhow::ensure!(out.status.success(), "bench_torch.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let torch: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let steps: Vec<f64> =
        torch["step_seconds"].as_array().map(|v| v.iter().filter_map(|x| x.as_f64()).collect()).unwrap_or_default();
    let torch_median = median(steps.clone());
    let records = torch["records"].as_array().cloned().unwrap_or_default();
    let counts = |t: &serde_json::Value, k: &str| {
        t[k].as_array()
            .map(|x| x.iter().filter_map(|v| v.as_u64().map(|v| v as usize)).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    // Every step whose counts differ: (sweep, step, ours clean/adv, PyTorch clean/adv).
    let mut differing = Vec::new();
    for (i, (t, (c, a))) in records.iter().zip(&ours.counts).enumerate() {
        let (tc, ta) = (counts(t, "clean_correct"), counts(t, "adv_correct"));
        for k in 0..c.len().max(tc.len()) {
            let (ours_k, torch_k) = ((c.get(k), a.get(k)), (tc.get(k), ta.get(k)));
            if ours_k != torch_k {
                differing.push(format!("sweep {i} ({}) step {k}: ours {ours_k:?}, PyTorch {torch_k:?}", ours.names[i]));
            }
        }
    }
    let same = records.len() == ours.counts.len() && differing.is_empty();
    for d in &differing {
        println!("differs: {d}");
    }
    println!(
        "torch: {} steps, median {torch_median:.3} s per step, total {:.1} s",
        steps.len(),
        steps.iter().sum::<f64>()
    );
    println!(
        "speed-up (median step): {:.2}x; same counts as PyTorch: {same} ({} steps differ)",
        torch_median / ours_median,
        differing.len()
    );
    Ok(())
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

/// Seconds per sweep step and the counts of every step, per (layer index, filter).
struct SweepTiming {
    step_seconds: Vec<f64>,
    counts: Vec<(Vec<usize>, Vec<usize>)>,
    /// "layer filter" of each entry of `counts`.
    names: Vec<String>,
    peak_mb: f64,
}

fn sweep_bench(args: &[String], name: &str) -> Result<SweepTiming> {
    use fragility_explorer::engine::analysis::filter::FilterKind;
    use fragility_explorer::engine::analysis::sweep::{self, Scope, SweepConfig, SweepEvent};
    use fragility_explorer::engine::data::{self, DataSpec, Subset};
    use fragility_explorer::engine::progress::{Progress, StopFlag};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let dev = Device::Cpu;
    let net = match (name, arg(args, "--checkpoint")) {
        ("resnet18_tv28", Some(c)) => Network::load(std::path::Path::new(&c), None, &dev)?,
        _ => model(name, &dev)?,
    };
    let data_dir = arg(args, "--data").unwrap_or_else(|| "../shared/data/mnist".into());
    let images: usize = arg(args, "--images").map_or(Ok(1000), |v| v.parse())?;
    let data = data::load(&DataSpec { subset: Subset::First { n: images }, ..DataSpec::new(&data_dir) })?;
    let norm = Normalize { mean: vec![0.1307], std: vec![0.3081] };
    let batch: usize = arg(args, "--batch").map_or(Ok(500), |v| v.parse())?;
    let max_steps: usize = arg(args, "--max-steps").map_or(Ok(0), |v| v.parse())?;
    let all: Vec<String> = net.params.filterable().map(|l| l.name.clone()).collect();
    let layers: Vec<String> = match arg(args, "--layers") {
        Some(l) => l.split(',').map(|i| Ok(all[i.parse::<usize>()?].clone())).collect::<Result<_>>()?,
        None => all,
    };
    /// Stops the sweep after `limit` steps (0: never).
    struct Limit<'a>(&'a StopFlag, AtomicUsize, usize);
    impl Progress for Limit<'_> {
        fn advance(&self, n: usize) {
            if self.2 > 0 && self.1.fetch_add(n, Ordering::SeqCst) + n >= self.2 {
                self.0.stop();
            }
        }
    }
    let mut timing = SweepTiming { step_seconds: Vec::new(), counts: Vec::new(), names: Vec::new(), peak_mb: 0.0 };
    reset_peak();
    // A whole characterisation runs each layer's three filters in one sweep, as the app
    // does; a limited one (--max-steps) runs each filter alone, to stop each after N steps.
    let groups: Vec<Vec<FilterKind>> = match max_steps {
        0 => vec![FilterKind::PAPER.to_vec()],
        _ => FilterKind::PAPER.iter().map(|&f| vec![f]).collect(),
    };
    for layer in &layers {
        for filters in &groups {
            let cfg = SweepConfig {
                layers: vec![layer.clone()],
                filters: filters.clone(),
                batch,
                ..SweepConfig::new(Scope::Local, AttackConfig::fgsm(0.3))
            };
            let stop = StopFlag::new();
            let limit = Limit(&stop, AtomicUsize::new(0), max_steps);
            let last = std::cell::Cell::new(None::<Instant>);
            let times = std::cell::RefCell::new(Vec::new());
            let r = sweep::run(
                &net,
                &data,
                &norm,
                &cfg,
                fragility_explorer::engine::progress::Ctrl { progress: &limit, stop: &stop },
                &|e| match e {
                    SweepEvent::Begin { .. } => last.set(Some(Instant::now())),
                    SweepEvent::Step { .. } => {
                        if let Some(t) = last.get() {
                            times.borrow_mut().push(t.elapsed().as_secs_f64());
                        }
                        last.set(Some(Instant::now()));
                    }
                    _ => {}
                },
            )?;
            let times = times.into_inner();
            let mut at = 0;
            for rec in &r.records {
                let steps = rec.clean_correct.len();
                let mine = times[at..at + steps].to_vec();
                at += steps;
                let filter = rec.filter;
                eprintln!("ours   {layer} {filter}: {steps} steps, median {:.3} s", median(mine));
                timing.counts.push((rec.clean_correct.clone(), rec.adv_correct.clone()));
                timing.names.push(format!("{layer} {filter}"));
            }
            timing.step_seconds.extend(times);
        }
    }
    timing.peak_mb = peak_mb();
    Ok(timing)
}

fn main() -> Result<()> {
    fragility_explorer::tune_runtime();
    let args: Vec<String> = std::env::args().collect();
    if let Some(name) = arg(&args, "--sweep") {
        return run_sweep_bench(&args, &name);
    }
    if args.iter().any(|a| a == "--onnx") {
        return onnx::run(&args);
    }
    if args.iter().any(|a| a == "--conv-layers") {
        return conv::run(&args);
    }
    let repeats: usize = arg(&args, "--repeats").map_or(Ok(5), |v| v.parse())?;
    let models = arg(&args, "--models").unwrap_or_else(|| "mnist_cnn,resnet18_cifar,resnet18_tv28".into());
    let batches = arg(&args, "--batches").unwrap_or_else(|| "64,256".into());
    let works = arg(&args, "--work").unwrap_or_else(|| "forward,fgsm,train".into());
    // Each configuration runs in a child process, so its peak memory is its own.
    if let Some(row) = arg(&args, "--row") {
        let parts: Vec<&str> = row.split(',').collect();
        anyhow::ensure!(parts.len() == 3, "--row takes MODEL,BATCH,WORK");
        let batch: usize = parts[1].parse()?;
        let net = model(parts[0], &Device::Cpu)?;
        let (rate, peak) = bench(&net, batch, parts[2], repeats)?;
        println!(
            "{}",
            serde_json::to_string(&Row {
                model: parts[0].into(),
                batch,
                work: parts[2].into(),
                images_per_s: rate,
                peak_mb: peak
            })?
        );
        return Ok(());
    }
    let rounds: usize = arg(&args, "--rounds").map_or(Ok(1), |v| v.parse())?;
    let with_torch = !args.iter().any(|a| a == "--no-torch");
    let me = std::env::current_exe()?;
    let mut configs: Vec<(String, String, String)> = Vec::new();
    for m in models.split(',') {
        for b in batches.split(',') {
            configs.extend(works.split(',').map(|w| (m.to_string(), b.to_string(), w.to_string())));
        }
    }
    // Ours and PyTorch's row alternate, round after round: this shared machine's speed drifts
    // by 10 % within minutes, and the ratio of runs made side by side drifts less.
    let mut measured: Vec<(Vec<Row>, Vec<Row>)> = vec![(Vec::new(), Vec::new()); configs.len()];
    for round in 1..=rounds {
        for ((m, b, w), (ours, torch)) in configs.iter().zip(&mut measured) {
            let spec = format!("{m},{b},{w}");
            let r = child_row(Command::new(&me).args(["--row", &spec, "--repeats", &repeats.to_string()]))?;
            eprintln!(
                "round {round} ours  {m:>15} {w:>8} batch {b:>4}: {:>9.1} img/s, peak {:.0} MB",
                r.images_per_s, r.peak_mb
            );
            ours.push(r);
            if with_torch {
                let mut cmd = Command::new("python3");
                cmd.args(["scripts/bench_torch.py", "--json", "--row", &spec, "--repeats", &repeats.to_string()]);
                let t = child_row(&mut cmd).context("running scripts/bench_torch.py (needs python3 with torch)")?;
                eprintln!(
                    "round {round} torch {m:>15} {w:>8} batch {b:>4}: {:>9.1} img/s, peak {:.0} MB",
                    t.images_per_s, t.peak_mb
                );
                torch.push(t);
            }
        }
    }
    println!("| model | batch | work | ours img/s | PyTorch img/s | ratio | ours peak MB | PyTorch peak MB |");
    println!("|---|---|---|---|---|---|---|---|");
    let rate = |rows: &[Row]| median(rows.iter().map(|r| r.images_per_s).collect());
    let peak = |rows: &[Row]| rows.iter().map(|r| r.peak_mb).fold(0.0, f64::max);
    for ((m, b, w), (ours, torch)) in configs.iter().zip(&measured) {
        let (ti, ratio, tp) = match torch.is_empty() {
            true => ("-".into(), "-".into(), "-".into()),
            false => {
                let ratios = ours.iter().zip(torch).map(|(o, t)| o.images_per_s / t.images_per_s).collect();
                (format!("{:.1}", rate(torch)), format!("{:.2}", median(ratios)), format!("{:.0}", peak(torch)))
            }
        };
        println!("| {m} | {b} | {w} | {:.1} | {ti} | {ratio} | {:.0} | {tp} |", rate(ours), peak(ours));
    }
    if rounds > 1 {
        println!("\nMedians of {rounds} rounds; the ratio is the median of each round's ours / PyTorch.");
    }
    Ok(())
}
