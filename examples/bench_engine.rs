//! Engine throughput side by side with PyTorch on the same machine.
//!
//!     cargo run --release --example bench_engine -- [--repeats N] [--no-torch]
//!         [--models mnist_cnn,resnet18_cifar,resnet18_tv28] [--batches 64,256]
//!
//! Times a forward pass (evaluation mode), an FGSM step (forward, input gradient with the
//! exact direction, signed step) and an Adam training step, and reports the median images
//! per second of N timed repeats after one warm-up, with the peak resident memory of each
//! configuration. Then runs scripts/bench_torch.py with the same settings and prints the
//! ratio ours / PyTorch (above 1 means faster than PyTorch).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use fragility_explorer::embedded;
use fragility_explorer::engine::attack::{AttackConfig, attack};
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench(net: &Network, batch: usize, work: &str, repeats: usize) -> Result<(f64, f64)> {
    let [c, h, w] = net.card.input;
    let dev = &net.device;
    let x = Tensor::randn(0f32, 1.0, (batch, c, h, w), dev)?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let y = Tensor::from_slice(&labels, batch, dev)?;
    let norm = net.card.normalize.clone().expect("bench cards normalise");
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

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let repeats: usize = arg(&args, "--repeats").map_or(Ok(5), |v| v.parse())?;
    let models = arg(&args, "--models").unwrap_or_else(|| "mnist_cnn,resnet18_cifar,resnet18_tv28".into());
    let batches = arg(&args, "--batches").unwrap_or_else(|| "64,256".into());
    let works = arg(&args, "--work").unwrap_or_else(|| "forward,fgsm,train".into());
    let dev = Device::Cpu;
    let mut ours = Vec::new();
    for m in models.split(',') {
        for b in batches.split(',') {
            let b: usize = b.parse()?;
            for w in works.split(',') {
                // A fresh network per row, so training steps never change another row's weights.
                let net = model(m, &dev)?;
                let (rate, peak) = bench(&net, b, w, repeats).with_context(|| format!("{m} {w} batch {b}"))?;
                eprintln!("ours   {m:>15} {w:>8} batch {b:>4}: {rate:>9.1} img/s, peak {peak:.0} MB");
                ours.push(Row { model: m.into(), batch: b, work: w.into(), images_per_s: rate, peak_mb: peak });
            }
        }
    }
    let mut torch: BTreeMap<(String, usize, String), Row> = BTreeMap::new();
    if !args.iter().any(|a| a == "--no-torch") {
        let out = Command::new("python3")
            .args(["scripts/bench_torch.py", "--json", "--repeats", &repeats.to_string()])
            .args(["--models", &models, "--batches", &batches, "--work", &works])
            .output()
            .context("running scripts/bench_torch.py (needs python3 with torch)")?;
        anyhow::ensure!(out.status.success(), "bench_torch.py failed: {}", String::from_utf8_lossy(&out.stderr));
        for r in serde_json::from_slice::<Vec<Row>>(&out.stdout)? {
            torch.insert((r.model.clone(), r.batch, r.work.clone()), r);
        }
    }
    println!("| model | batch | work | ours img/s | PyTorch img/s | ratio | ours peak MB | PyTorch peak MB |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &ours {
        let t = torch.get(&(r.model.clone(), r.batch, r.work.clone()));
        let (ti, ratio, tp) = match t {
            Some(t) => (
                format!("{:.1}", t.images_per_s),
                format!("{:.2}", r.images_per_s / t.images_per_s),
                format!("{:.0}", t.peak_mb),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {} | {:.1} | {ti} | {ratio} | {:.0} | {tp} |",
            r.model, r.batch, r.work, r.images_per_s, r.peak_mb
        );
    }
    Ok(())
}
