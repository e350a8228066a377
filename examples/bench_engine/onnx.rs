//! `--onnx NATIVE,ONNX`: the same network read natively and through its ONNX export,
//! timed on the same sweep, forward pass and FGSM step (median of the repeats, after one
//! warm-up), with the sweep's counts checked equal. Without files, the ResNet-18 fixture
//! (`tests/fixtures/models/resnet18_cifar.safetensors` and its `.ts.onnx`).
//!
//!     cargo run --release --example bench_engine -- --onnx [NATIVE,ONNX] [--images N]
//!         [--steps K] [--batch B] [--repeats R] [--layers 0,10,20]
//!
//! `--layers` sweeps those filterable layers (by index) only; by default every one.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, ensure};
use candle_core::Device;
use fragility_explorer::engine::analysis::filter::FilterKind;
use fragility_explorer::engine::analysis::sweep::{self, Scope, SweepConfig, SweepOptions};
use fragility_explorer::engine::attack::{AttackConfig, attack};
use fragility_explorer::engine::card::Normalize;
use fragility_explorer::engine::data::Dataset;
use fragility_explorer::engine::model::{BnMode, Network};
use fragility_explorer::engine::progress::{Ctrl, quiet};
use rand::{Rng, SeedableRng};

use super::{arg, median};

const FIXTURE: &str = "tests/fixtures/models/resnet18_cifar.safetensors,tests/fixtures/models/resnet18_cifar.ts.onnx";

/// Seeded uniform images labelled with the network's own clean predictions.
fn images(net: &Network, n: usize, norm: &Normalize) -> Result<Dataset> {
    let [c, h, w] = net.card.input;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let pixels: Vec<u8> = (0..n * c * h * w).map(|_| rng.random()).collect();
    let mut data = Dataset {
        name: "uniform".into(),
        known: None,
        source: "uniform".into(),
        shape: [c, h, w],
        images: pixels,
        labels: vec![0; n],
        classes: None,
        notes: vec![],
    };
    let (x, _) = data.batch(0..n, norm, &Device::Cpu)?;
    let logits = net.logits(&x, BnMode::Running)?;
    data.labels = logits.argmax(1)?.to_vec1()?;
    Ok(data)
}

fn timed(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut t = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        f()?;
        t.push(start.elapsed().as_secs_f64());
    }
    Ok(median(t))
}

pub fn run(args: &[String]) -> Result<()> {
    let pair = arg(args, "--onnx").filter(|v| !v.starts_with("--")).unwrap_or_else(|| FIXTURE.into());
    let (native_path, onnx_path) = pair.split_once(',').ok_or_else(|| anyhow::anyhow!("--onnx takes NATIVE,ONNX"))?;
    let n: usize = arg(args, "--images").map_or(Ok(256), |v| v.parse())?;
    let steps: usize = arg(args, "--steps").map_or(Ok(7), |v| v.parse())?;
    let batch: usize = arg(args, "--batch").map_or(Ok(128), |v| v.parse())?;
    let repeats: usize = arg(args, "--repeats").map_or(Ok(3), |v| v.parse())?;
    let dev = Device::Cpu;
    let native = Network::load(Path::new(native_path), None, &dev)?;
    let onnx = Network::load(Path::new(onnx_path), None, &dev)?;
    let norm = native.card.normalize.clone().unwrap_or(Normalize { mean: vec![0.5], std: vec![0.25] });
    let data = images(&native, n, &norm)?;
    let (x, _) = data.batch(0..batch.min(n), &norm, &dev)?;
    let labels = &data.labels[..batch.min(n)];
    let all: Vec<String> = native.params.filterable().map(|l| l.name.clone()).collect();
    let layers: Vec<String> = match arg(args, "--layers") {
        Some(l) => l.split(',').map(|i| Ok(all[i.parse::<usize>()?].clone())).collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let swept = if layers.is_empty() { all.len() } else { layers.len() };
    let cfg = SweepConfig {
        layers,
        filters: FilterKind::PAPER.to_vec(),
        options: SweepOptions { steps, ..SweepOptions::default() },
        batch,
        ..SweepConfig::new(Scope::Local, AttackConfig::fgsm(0.1))
    };
    let (p, s) = quiet();
    let mut counts = Vec::new();
    println!("{native_path} against {onnx_path}: {n} images, batch {batch}, median of {repeats}");
    println!("| work | native | ONNX | ONNX / native |");
    println!("|---|---|---|---|");
    for net in [&native, &onnx] {
        let r = sweep::run(net, &data, &norm, &cfg, Ctrl { progress: &p, stop: &s }, &|_| {})?;
        // By layer and filter: an ONNX graph may order a block's shortcut first.
        let mut c: Vec<_> = r
            .records
            .iter()
            .map(|r| (r.layer.clone(), r.filter, r.clean_correct.clone(), r.adv_correct.clone()))
            .collect();
        c.sort_by(|a, b| (&a.0, a.1 as u8).cmp(&(&b.0, b.1 as u8)));
        counts.push(c);
    }
    ensure!(counts[0] == counts[1], "the sweep's counts differ between the two paths");
    let row = |work: &str, f: &dyn Fn(&Network) -> Result<()>, per_images: bool| -> Result<()> {
        let a = timed(repeats, || f(&native))?;
        let b = timed(repeats, || f(&onnx))?;
        let show = |t: f64| if per_images { format!("{:.1} img/s", batch as f64 / t) } else { format!("{t:.2} s") };
        println!("| {work} | {} | {} | {:.2} |", show(a), show(b), b / a);
        Ok(())
    };
    let sweep_all = |net: &Network| -> Result<()> {
        sweep::run(net, &data, &norm, &cfg, Ctrl { progress: &p, stop: &s }, &|_| {}).map(drop).map_err(Into::into)
    };
    row(&format!("sweep ({swept} layers x h1-h3 x {steps} steps)"), &sweep_all, false)?;
    row("forward", &|net: &Network| net.logits(&x, BnMode::Running).map(drop).map_err(Into::into), true)?;
    let fgsm = AttackConfig::fgsm(0.1);
    let step = |net: &Network| -> Result<()> {
        attack(net, &x, labels, &norm, BnMode::Running, &fgsm).map(drop).map_err(Into::into)
    };
    row("FGSM step", &step, true)?;
    println!("(the ONNX ratio is time, so below 1 is faster; the sweep's counts are identical)");
    Ok(())
}
