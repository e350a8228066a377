//! Every architecture family against PyTorch: logits, gradients and attacks on tiny
//! random-weight models made by scripts/make_fixtures.py.

use crate::common;

use candle_core::{D, Device, Tensor};
use common::*;
use fragility_explorer::engine::attack::{AttackConfig, AttackKind, GradMode, attack, input_gradient};
use fragility_explorer::engine::card::Normalize;
use fragility_explorer::engine::checkpoint;
use fragility_explorer::engine::model::{BnMode, Network};

struct Case {
    name: String,
    /// Card fields the weights cannot show (the model is recognised only up to them).
    card_only: bool,
    /// An ONNX export of the model (`NAME.ts.onnx`, `NAME.dynamo.onnx`).
    onnx: bool,
    net: Network,
    io: std::collections::HashMap<String, Tensor>,
    labels: Vec<u32>,
    eps: f64,
    pgd_steps: usize,
    pgd_step: f64,
}

fn cases() -> Vec<Case> {
    let dir = fixtures().join("models");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let obj = manifest.as_object().unwrap();
    assert!(obj.len() >= 18, "manifest lists {} models", obj.len());
    // Each model, then its ONNX exports (same inputs and references).
    let files = obj.iter().flat_map(|(name, m)| {
        let onnx = m.get("onnx").and_then(|v| v.as_array()).cloned().unwrap_or_default();
        // Some models are read only as ONNX (`"native": false`).
        let native = m.get("native") != Some(&serde_json::Value::Bool(false));
        native
            .then(|| (name.clone(), format!("{name}.safetensors"), m))
            .into_iter()
            .chain(onnx.into_iter().map(move |f| (name.clone(), f.as_str().unwrap().to_string(), m)))
    });
    files
        .map(|(name, file, m)| {
            let ckpt = dir.join(&file);
            let net = Network::load(&ckpt, None, &Device::Cpu).unwrap_or_else(|e| panic!("{file}: {e}"));
            let io = load_tensors(&dir.join(format!("{name}.io.safetensors")));
            let labels: Vec<u32> = io["label"].to_vec1::<i64>().unwrap().iter().map(|&l| l as u32).collect();
            let onnx = file.ends_with(".onnx");
            Case {
                name: if onnx { file.clone() } else { name.clone() },
                onnx,
                card_only: m.get("card_only").is_some(),
                net,
                io,
                labels,
                eps: m["eps"].as_f64().unwrap(),
                pgd_steps: m["pgd_steps"].as_u64().unwrap() as usize,
                pgd_step: m["pgd_step"].as_f64().unwrap(),
            }
        })
        .collect()
}

fn norm(case: &Case) -> Normalize {
    case.net.card.normalize.clone().expect("fixture cards normalise")
}

#[test]
fn logits_and_predictions_match_pytorch() {
    for c in cases() {
        let x = &c.io["input"];
        let ours = c.net.logits(x, BnMode::Running).unwrap();
        let diff = max_rel_diff(&ours, &c.io["logits"], 1.0);
        assert!(diff < 1e-4, "{}: logits differ by {diff} (relative)", c.name);
        assert_eq!(argmax_rows(&ours), argmax_rows(&c.io["logits"]), "{}: predictions", c.name);
        // The dynamo exporter folds batch norm into the convolutions: with batch statistics
        // the graph is another function.
        let folded = c.name.ends_with(".dynamo.onnx");
        if let Some(torch_f32) = c.io.get("logits_batchstats").filter(|_| !folded) {
            // Batch statistics of five samples are ill-conditioned: judge both float32
            // results by their distance from the float64 result.
            let exact = &c.io["logits_batchstats_f64"];
            let ours = c.net.logits(x, BnMode::Batch).unwrap();
            let (ours_err, torch_err) = (max_rel_diff(&ours, exact, 1.0), max_rel_diff(torch_f32, exact, 1.0));
            assert!(
                ours_err <= (2.0 * torch_err).max(1e-4),
                "{}: batch-statistics logits are {ours_err} from float64, PyTorch's {torch_err}",
                c.name
            );
        }
    }
}

#[test]
fn architectures_are_recognised_without_a_card() {
    for c in cases().into_iter().filter(|c| !c.name.starts_with("seq_") && !c.onnx) {
        let path = fixtures().join(format!("models/{}.safetensors", c.name));
        let state = checkpoint::load(&path, &Device::Cpu).unwrap();
        let net = Network::build(state, None, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(net.card.architecture, c.net.card.architecture, "{}", c.name);
        if c.card_only {
            continue;
        }
        let ours = net.logits(&c.io["input"], BnMode::Running).unwrap();
        assert!(max_rel_diff(&ours, &c.io["logits"], 1.0) < 1e-4, "{}", c.name);
    }
}

/// Per sample, the largest |gradient| entry.
fn row_scale(g: &Tensor) -> Vec<f32> {
    g.abs().unwrap().flatten_from(1).unwrap().max(D::Minus1).unwrap().to_vec1().unwrap()
}

fn assert_gradient_matches(name: &str, ours: &Tensor, reference: &Tensor) {
    let scale = row_scale(reference);
    let per = reference.dims()[1..].iter().product::<usize>();
    for (i, (a, b)) in vec4(ours).iter().zip(vec4(reference)).enumerate() {
        let s = scale[i / per];
        assert!((a - b).abs() <= 1e-4 * s, "{name}: gradient entry {i}: {a} vs {b} (sample scale {s})");
    }
}

/// Attacked inputs may differ only where the reference gradient is within rounding of zero.
fn assert_attack_matches(name: &str, ours: &Tensor, reference: &Tensor, grad: &Tensor) {
    let scale = row_scale(grad);
    let per = grad.dims()[1..].iter().product::<usize>();
    let g = vec4(grad);
    let mut near_zero_flips = 0;
    for (i, (a, b)) in vec4(ours).iter().zip(vec4(reference)).enumerate() {
        if (a - b).abs() > 1e-5 {
            assert!(
                g[i].abs() <= 1e-5 * scale[i / per],
                "{name}: entry {i}: {a} vs {b}, gradient {} is not near zero",
                g[i]
            );
            near_zero_flips += 1;
        }
    }
    assert!(near_zero_flips <= 4, "{name}: {near_zero_flips} entries differ");
}

#[test]
fn input_gradients_match_pytorch() {
    for c in cases() {
        let x = &c.io["input"];
        let (g, _, _) = input_gradient(&c.net, x, &c.labels, BnMode::Running, GradMode::Exact).unwrap();
        assert_gradient_matches(&c.name, &g, &c.io["grad_exact"]);
        let (g, _, _) = input_gradient(&c.net, x, &c.labels, BnMode::Running, GradMode::Autograd).unwrap();
        assert_gradient_matches(&format!("{} autograd", c.name), &g, &c.io["grad_autograd"]);
    }
}

#[test]
fn fgsm_and_pgd_match_pytorch() {
    for c in cases() {
        let x = &c.io["input"];
        let n = norm(&c);
        let run = |cfg: &AttackConfig| attack(&c.net, x, &c.labels, &n, BnMode::Running, cfg).unwrap().x_adv;
        let fgsm = AttackConfig::fgsm(c.eps);
        assert_attack_matches(&c.name, &run(&fgsm), &c.io["fgsm"], &c.io["grad_exact"]);
        let clamp = AttackConfig { clamp: true, ..fgsm.clone() };
        assert_attack_matches(&c.name, &run(&clamp), &c.io["fgsm_clamp"], &c.io["grad_exact"]);
        let auto = AttackConfig { grad: GradMode::Autograd, ..fgsm.clone() };
        assert_attack_matches(&c.name, &run(&auto), &c.io["fgsm_autograd"], &c.io["grad_autograd"]);
        let pgd = AttackConfig { kind: AttackKind::Pgd, pgd_steps: c.pgd_steps, pgd_step: Some(c.pgd_step), ..fgsm };
        let ours = run(&pgd);
        let diff = (&ours - &c.io["pgd"]).unwrap().abs().unwrap().max_all().unwrap();
        let diff: f32 = diff.to_scalar().unwrap();
        // A sign flip at a near-zero gradient entry moves one element by at most two steps.
        let flips = vec4(&ours).iter().zip(vec4(&c.io["pgd"])).filter(|(a, b)| (*a - b).abs() > 1e-5).count();
        assert!(flips <= 4 && diff <= 2.0 * c.pgd_step as f32 + 1e-5, "{}: PGD differs in {flips} entries", c.name);
        let logits = c.net.logits(&run(&AttackConfig::fgsm(c.eps)), BnMode::Running).unwrap();
        assert_eq!(argmax_rows(&logits), argmax_rows(&c.io["logits_fgsm"]), "{}: FGSM predictions", c.name);
    }
}

#[test]
fn saturated_samples_are_attacked_only_with_the_exact_direction() {
    let c = cases().into_iter().find(|c| c.name == "seq_cnn_saturated").expect("fixture");
    let x = &c.io["input"];
    let (_, _, saturated) = input_gradient(&c.net, x, &c.labels, BnMode::Running, GradMode::Exact).unwrap();
    assert_eq!(saturated, 3);
    let (g, _, _) = input_gradient(&c.net, x, &c.labels, BnMode::Running, GradMode::Exact).unwrap();
    let scale = row_scale(&g);
    assert!(scale[..3].iter().all(|&s| s > 1e-3), "the exact direction is lost on saturated samples: {scale:?}");
}

#[test]
fn eps_zero_leaves_inputs_unchanged() {
    let c = cases().into_iter().next().unwrap();
    let x = &c.io["input"];
    let out = attack(&c.net, x, &c.labels, &norm(&c), BnMode::Running, &AttackConfig::fgsm(0.0)).unwrap();
    assert_eq!(vec4(&out.x_adv), vec4(x));
}
