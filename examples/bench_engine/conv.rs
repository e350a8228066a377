//! `--conv-layers`: each distinct convolution of ResNet-18 on 32x32 images (CIFAR stem),
//! alone, against PyTorch's `F.conv2d` on the same shapes: the forward pass, and the input's
//! gradient for an output gradient of ones (candle's `backward` of a tensor, against
//! `torch.autograd.grad(y, x, ones)`; the weight's gradient is not asked for on either side).
//! Median milliseconds of the repeats after one warm-up, inputs N(0, 1), weights N(0, 0.1).
//!
//!     cargo run --release --example bench_engine -- --conv-layers [--batch 100] [--repeats 5]
//!         [--rounds 3] [--width 64] [--no-torch]
//!
//! `--width W` scales every channel count but the images' 3 by W / 64: `--width 8` gives the
//! narrow CIFAR ResNet of `scripts/train_cifar_resnet.py` (8 to 64 channels).
//!
//! Each round times every layer on our side, then on PyTorch's; the table gives the medians.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var};
use fragility_explorer::engine::model::kernels::{ConvGeometry, Grads, conv2d};
use serde::Deserialize;

use super::{arg, median};

/// ResNet-18's convolutions with the CIFAR stem.
const LAYERS: [Layer; 11] = [
    (3, 64, 32, 3, 1, 1, 1),
    (64, 64, 32, 3, 1, 1, 4),
    (64, 128, 32, 3, 2, 1, 1),
    (64, 128, 32, 1, 2, 0, 1),
    (128, 128, 16, 3, 1, 1, 3),
    (128, 256, 16, 3, 2, 1, 1),
    (128, 256, 16, 1, 2, 0, 1),
    (256, 256, 8, 3, 1, 1, 3),
    (256, 512, 8, 3, 2, 1, 1),
    (256, 512, 8, 1, 2, 0, 1),
    (512, 512, 4, 3, 1, 1, 3),
];

/// A convolution: (input channels, output channels, input side, kernel side, stride,
/// padding, times in the network).
type Layer = (usize, usize, usize, usize, usize, usize, usize);

/// `LAYERS` with every channel count but the images' scaled by `width` / 64.
fn layers(width: usize) -> Vec<Layer> {
    let scale = |c: usize| if c == 3 { c } else { (c * width / 64).max(1) };
    LAYERS.iter().map(|&(ci, co, side, k, s, p, n)| (scale(ci), scale(co), side, k, s, p, n)).collect()
}

/// One layer's median times, in milliseconds.
#[derive(Debug, Deserialize)]
struct Times {
    forward_ms: f64,
    input_grad_ms: f64,
}

fn ours(layer: Layer, batch: usize, repeats: usize) -> Result<Times> {
    let (ci, co, side, k, stride, pad, _) = layer;
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (batch, ci, side, side), &dev)?)?;
    let w = Tensor::randn(0f32, 0.1, (co, ci, k, k), &dev)?;
    let g = ConvGeometry { stride, padding: [pad, pad], dilation: 1, groups: 1 };
    let (mut forward, mut input_grad) = (Vec::new(), Vec::new());
    for i in 0..=repeats {
        let t = Instant::now();
        let y = conv2d(x.as_tensor(), &w, None, g, Grads::Input)?;
        y.flatten_all()?.get(0)?.to_scalar::<f32>()?;
        let f = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let grads = y.backward()?;
        let dx = grads.get(x.as_tensor()).context("no input gradient")?;
        dx.flatten_all()?.get(0)?.to_scalar::<f32>()?;
        if i > 0 {
            forward.push(f * 1e3);
            input_grad.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(Times { forward_ms: median(forward), input_grad_ms: median(input_grad) })
}

/// PyTorch's times of the same layers (scripts/bench_torch.py --conv-layers).
fn torch(layers: &[Layer], batch: usize, repeats: usize) -> Result<Vec<Times>> {
    let spec: Vec<String> =
        layers.iter().map(|&(ci, co, side, k, s, p, _)| format!("{ci}x{co}x{side}x{k}x{s}x{p}")).collect();
    let out = Command::new("python3")
        .args(["scripts/bench_torch.py", "--conv-layers", &spec.join(",")])
        .args(["--batch", &batch.to_string(), "--repeats", &repeats.to_string()])
        .output()
        .context("running scripts/bench_torch.py (needs python3 with torch)")?;
    anyhow::ensure!(out.status.success(), "bench_torch.py failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Per layer, the median over rounds of each time.
fn medians(rounds: &[Vec<Times>]) -> Vec<Times> {
    (0..rounds[0].len())
        .map(|i| Times {
            forward_ms: median(rounds.iter().map(|r| r[i].forward_ms).collect()),
            input_grad_ms: median(rounds.iter().map(|r| r[i].input_grad_ms).collect()),
        })
        .collect()
}

pub fn run(args: &[String]) -> Result<()> {
    let batch: usize = arg(args, "--batch").map_or(Ok(100), |v| v.parse())?;
    let repeats: usize = arg(args, "--repeats").map_or(Ok(5), |v| v.parse())?;
    let rounds: usize = arg(args, "--rounds").map_or(Ok(3), |v| v.parse())?;
    let width: usize = arg(args, "--width").map_or(Ok(64), |v| v.parse())?;
    anyhow::ensure!((1..=64).contains(&width), "--width: 1 to 64 channels in the first block");
    let layers = layers(width);
    let with_torch = !args.iter().any(|a| a == "--no-torch");
    // Ours and PyTorch's in turn, round after round (the machine's speed drifts).
    let (mut ours_rounds, mut torch_rounds) = (Vec::new(), Vec::new());
    for round in 1..=rounds.max(1) {
        eprintln!("round {round}");
        ours_rounds.push(layers.iter().map(|&l| ours(l, batch, repeats)).collect::<Result<Vec<_>>>()?);
        if with_torch {
            torch_rounds.push(torch(&layers, batch, repeats)?);
        }
    }
    let ours = medians(&ours_rounds);
    let torch = with_torch.then(|| medians(&torch_rounds));
    println!("| convolution | in | times | ours forward ms | PyTorch | ratio | ours input grad ms | PyTorch | ratio |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let (mut sum_ours, mut sum_torch) = (0.0, 0.0);
    for (i, (&(ci, co, side, k, s, _, times), o)) in layers.iter().zip(&ours).enumerate() {
        let name = format!("{ci}->{co} {k}x{k}/{s}");
        sum_ours += times as f64 * (o.forward_ms + o.input_grad_ms);
        let theirs = |f: fn(&Times) -> f64| match &torch {
            Some(t) => format!("{:.1} | {:.2}", f(&t[i]), f(&t[i]) / f(o)),
            None => "- | -".into(),
        };
        if let Some(t) = &torch {
            sum_torch += times as f64 * (t[i].forward_ms + t[i].input_grad_ms);
        }
        println!(
            "| {name} | {side}x{side} | {times} | {:.1} | {} | {:.1} | {} |",
            o.forward_ms,
            theirs(|t| t.forward_ms),
            o.input_grad_ms,
            theirs(|t| t.input_grad_ms)
        );
    }
    println!(
        "\nBatch {batch}, width {width}; medians of {rounds} rounds; ratio = PyTorch's time / ours (above 1: ours faster)."
    );
    match torch {
        Some(_) => println!(
            "One forward pass and input gradient of every convolution of the network: ours {sum_ours:.0} ms, PyTorch {sum_torch:.0} ms ({:.2}).",
            sum_torch / sum_ours
        ),
        None => {
            println!("One forward pass and input gradient of every convolution of the network: ours {sum_ours:.0} ms.")
        }
    }
    Ok(())
}
