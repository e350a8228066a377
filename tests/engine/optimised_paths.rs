//! The custom CPU kernels against candle's plain ops: the same accuracies and the same
//! sweep results. `kernels::plain` chooses the path per call, so the cases run side by side.

use crate::common;

use candle_core::{Device, Tensor};
use common::*;
use fragility_explorer::embedded;
use fragility_explorer::engine::analysis::filter::FilterKind;
use fragility_explorer::engine::analysis::sweep::{self, Scope, SweepConfig, SweepOptions, SweepResult};
use fragility_explorer::engine::attack::{AttackConfig, AttackKind};
use fragility_explorer::engine::data::{self, DataSpec, Subset};
use fragility_explorer::engine::eval::{EvalConfig, EvalReport, evaluate};
use fragility_explorer::engine::model::kernels;
use fragility_explorer::engine::model::params::overwrite;
use fragility_explorer::engine::model::{BnMode, ForwardCtx, Network, Tap};
use fragility_explorer::engine::progress::{Ctrl, quiet};
use fragility_explorer::engine::setup;
use fragility_explorer::engine::train::{Adam, AdamConfig, train_step, trainable_vars};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn both<T>(f: impl Fn() -> T) -> (T, T) {
    (kernels::plain(&f), f())
}

/// Per record: layer, filter, removed, clean and adversarial counts.
type Counts = (String, FilterKind, Vec<usize>, Vec<usize>, Vec<usize>);

fn sweep_counts(r: &SweepResult) -> Vec<Counts> {
    r.records
        .iter()
        .map(|x| (x.layer.clone(), x.filter, x.removed.clone(), x.clean_correct.clone(), x.adv_correct.clone()))
        .collect()
}

fn outcomes(r: &EvalReport) -> Vec<(u32, Option<u32>)> {
    r.outcomes.iter().map(|o| (o.clean_pred, o.adv_pred)).collect()
}

/// The embedded MNIST CNN: a convolution and the ReLU after it run as one op, unless a tap
/// wants the convolution's own output.
#[test]
fn a_fused_convolution_and_relu_give_the_unfused_logits_bit_for_bit() {
    let net = embedded::network(&Device::Cpu).unwrap();
    let data = embedded::dataset().unwrap().subset(Subset::First { n: 400 }).unwrap();
    let norm = setup::normalization(&net, Some(&data)).unwrap();
    // A convolution and the ReLU after it run as one op, unless a tap wants the
    // convolution's own output: the same logits, bit for bit.
    let (x, _) = data.batch(0..64, &norm, &Device::Cpu).unwrap();
    let bits =
        |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let fused = net.logits(&x, BnMode::Running).unwrap();
    for layer in ["features.0", "features.3"] {
        let tap = Some(Tap { layer: layer.into(), output: None });
        let mut ctx = ForwardCtx { tap, ..ForwardCtx::eval(BnMode::Running) };
        let apart = net.forward(&x, &mut ctx).unwrap();
        assert!(ctx.tap.is_some_and(|t| t.output.is_some()), "the tap on {layer} saw its output");
        assert!(bits(&fused) == bits(&apart), "logits with {layer}'s ReLU fused and apart differ");
    }
}

/// The embedded MNIST CNN: FGSM and PGD evaluations, and a local sweep of two layers with
/// every filter.
#[test]
fn evaluations_and_sweeps_of_the_embedded_cnn_match_the_plain_path() {
    let (p, s) = quiet();
    let ctrl = Ctrl { progress: &p, stop: &s };
    let net = embedded::network(&Device::Cpu).unwrap();
    let data = embedded::dataset().unwrap().subset(Subset::First { n: 400 }).unwrap();
    let norm = setup::normalization(&net, Some(&data)).unwrap();
    for (attack, bn) in [
        (AttackConfig::fgsm(0.3), BnMode::Running),
        (AttackConfig { kind: AttackKind::Pgd, pgd_steps: 3, ..AttackConfig::fgsm(0.2) }, BnMode::Running),
    ] {
        let cfg = EvalConfig { batch: 250, bn, attack: Some(attack) };
        let (plain, fast) = both(|| evaluate(&net, &data, &norm, &cfg, ctrl).unwrap());
        assert_eq!(outcomes(&plain), outcomes(&fast), "{cfg:?}");
    }

    // A local sweep of two layers, every filter.
    let small = data.clone().subset(Subset::First { n: 200 }).unwrap();
    let cfg = SweepConfig {
        layers: vec!["features.3".into(), "classifier.2".into()],
        filters: FilterKind::ALL.to_vec(),
        options: SweepOptions { steps: 7, ..SweepOptions::default() },
        ..SweepConfig::new(Scope::Local, AttackConfig::fgsm(0.3))
    };
    let (plain, fast) = both(|| sweep::run(&net, &small, &norm, &cfg, ctrl, &|_| {}).unwrap());
    assert_eq!(sweep_counts(&plain), sweep_counts(&fast));
}

/// Networks with batch norm, residual blocks and 1x1 convolutions: every fixture model.
#[test]
fn every_fixture_architecture_matches_the_plain_path() {
    // A network with batch norm, residual blocks and 1x1 convolutions: every fixture model.
    let dir = fixtures().join("models");
    for name in [
        "resnet18_cifar",
        "resnet50_tv",
        "shufflenet_v2",
        "squeezenet1_1",
        "seq_cnn",
        "wide_resnet",
        "dm_wide_resnet",
        "preact_resnet18_in",
        "vgg11_bn",
        "vgg16",
        "mobilenet_v2",
    ] {
        let net = Network::load(&dir.join(format!("{name}.safetensors")), None, &Device::Cpu).unwrap();
        let io = load_tensors(&dir.join(format!("{name}.io.safetensors")));
        let x = &io["input"];
        assert!(!net.logits(x, BnMode::Running).unwrap().track_op(), "{name}: evaluation keeps no graph");
        let labels: Vec<u32> = io["label"].to_vec1::<i64>().unwrap().iter().map(|&l| l as u32).collect();
        let n = net.card.normalize.clone().unwrap();
        let (plain, fast) = both(|| {
            let a = fragility_explorer::engine::attack::attack(
                &net,
                x,
                &labels,
                &n,
                BnMode::Running,
                &AttackConfig::fgsm(0.1),
            )
            .unwrap();
            (argmax_rows(&a.clean_logits), argmax_rows(&net.logits(&a.x_adv, BnMode::Running).unwrap()))
        });
        assert_eq!(plain, fast, "{name}");
        // Batch statistics of five samples are ill-conditioned (PyTorch's own float32 result
        // is up to 3e-3 from float64), so both paths are held to the float64 result instead.
        if let Some(exact) = io.get("logits_batchstats_f64") {
            let torch_err = max_rel_diff(&io["logits_batchstats"], exact, 1.0);
            let (plain, fast) = both(|| net.logits(x, BnMode::Batch).unwrap());
            for (path, logits) in [("plain", &plain), ("fast", &fast)] {
                let err = max_rel_diff(logits, exact, 1.0);
                assert!(err <= (2.0 * torch_err).max(1e-4), "{name} {path}: {err} from float64, PyTorch {torch_err}");
            }
        }
    }
}

#[test]
fn the_direct_convolution_path_matches_for_logits_fgsm_and_training() {
    let dir = fixtures().join("models");
    let name = "resnet18_tv";
    let net_path = dir.join(format!("{name}.safetensors"));
    // Batches large enough for the direct convolution of small maps (ResNet-18's 4x4 to 1x1
    // stages on 1x28x28 inputs with the torchvision stem): the fixture's five inputs
    // repeated. Logits, FGSM and a few Adam steps in training mode against the plain path.
    let io = load_tensors(&dir.join(format!("{name}.io.safetensors")));
    let copies = (8 * candle_core::utils::get_num_threads()).div_ceil(5) + 1;
    let x = Tensor::cat(&vec![&io["input"]; copies], 0).unwrap();
    let labels: Vec<u32> =
        io["label"].to_vec1::<i64>().unwrap().iter().map(|&l| l as u32).collect::<Vec<_>>().repeat(copies);
    let (plain, fast) = both(|| {
        let net = Network::load(&net_path, None, &Device::Cpu).unwrap();
        let n = net.card.normalize.clone().unwrap();
        let a = fragility_explorer::engine::attack::attack(
            &net,
            &x,
            &labels,
            &n,
            BnMode::Running,
            &AttackConfig::fgsm(0.1),
        )
        .unwrap();
        (a.clean_logits, argmax_rows(&net.logits(&a.x_adv, BnMode::Running).unwrap()))
    });
    assert!(max_rel_diff(&fast.0, &plain.0, 1.0) < 1e-4, "{name}: logits at batch {}", x.dim(0).unwrap());
    assert_eq!(plain.1, fast.1, "{name}: adversarial predictions");
    let y = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
    let (plain, fast) = both(|| {
        let net = Network::load(&net_path, None, &Device::Cpu).unwrap();
        let mut opt = Adam::new(trainable_vars(&net), AdamConfig::default()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let losses: Vec<f32> = (0..3).map(|_| train_step(&net, &mut opt, &x, &y, &mut rng).unwrap()).collect();
        (losses, trainable_vars(&net).into_iter().map(|(k, v)| (k, v.as_tensor().copy().unwrap())).collect::<Vec<_>>())
    });
    for (a, b) in plain.0.iter().zip(&fast.0) {
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "{name}: losses {:?} vs {:?}", plain.0, fast.0);
    }
    for ((key, a), (_, b)) in plain.1.iter().zip(&fast.1) {
        // Three Adam steps move each weight by about 3e-3; the paths may differ by rounding.
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "{name}: {key} differs by {diff} after three training steps");
    }
}

#[test]
fn a_sweep_through_the_direct_convolution_path_matches_the_plain_path() {
    let (p, s) = quiet();
    let ctrl = Ctrl { progress: &p, stop: &s };
    let dir = fixtures().join("models");
    let name = "resnet18_tv";
    let net_path = dir.join(format!("{name}.safetensors"));
    // A local sweep of the same network on a batch that takes the direct path: the stem's
    // convolution, batch norm, ReLU and max-pool as one op, and the epilogues' gradients
    // inside the direct path's input gradient.
    let net = Network::load(&net_path, None, &Device::Cpu).unwrap();
    let images = embedded::dataset().unwrap().subset(Subset::First { n: 100 }).unwrap();
    let norm = setup::normalization(&net, Some(&images)).unwrap();
    let cfg = SweepConfig {
        layers: vec!["conv1".into(), "layer1.0.conv2".into(), "layer3.1.conv1".into()],
        options: SweepOptions { steps: 3, ..SweepOptions::default() },
        ..SweepConfig::new(Scope::Local, AttackConfig::fgsm(0.3))
    };
    let (plain, fast) = both(|| sweep::run(&net, &images, &norm, &cfg, ctrl, &|_| {}).unwrap());
    assert_eq!(sweep_counts(&plain), sweep_counts(&fast), "{name}: sweep");
}

/// Real data when present: the shared CNN on 500 MNIST test images.
#[test]
fn the_shared_mnist_cnn_matches_the_plain_path_on_mnist() {
    let (p, s) = quiet();
    let ctrl = Ctrl { progress: &p, stop: &s };
    let Some(shared) = shared_data() else { return };
    let net = Network::load(&shared.join("models/mnist_cnn_small.pth"), None, &Device::Cpu).unwrap();
    let data =
        data::load(&DataSpec { subset: Subset::First { n: 500 }, ..DataSpec::new(shared.join("mnist")) }).unwrap();
    let norm = setup::normalization(&net, Some(&data)).unwrap();
    let cfg = EvalConfig { batch: 500, bn: BnMode::Running, attack: Some(AttackConfig::fgsm(0.3)) };
    let (plain, fast) = both(|| evaluate(&net, &data, &norm, &cfg, ctrl).unwrap());
    assert_eq!(outcomes(&plain), outcomes(&fast));
}

/// One NaN weight in the first convolution: both paths propagate it as PyTorch does (through
/// ReLU, max pooling and the layers after), so they agree image by image, clean and under
/// FGSM; the analyses refuse such a network, naming the tensor.
#[test]
fn a_nan_weight_gives_the_same_predictions_on_both_paths_and_analyses_refuse_it() {
    let (p, s) = quiet();
    let ctrl = Ctrl { progress: &p, stop: &s };
    let net = embedded::network(&Device::Cpu).unwrap();
    let data = embedded::dataset().unwrap().subset(Subset::First { n: 500 }).unwrap();
    let norm = setup::normalization(&net, Some(&data)).unwrap();
    let var = &net.params.get("features.0.weight").expect("the first convolution").var;
    let mut w = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    w[0] = f32::NAN;
    let w = Tensor::from_vec(w, var.as_tensor().shape(), &Device::Cpu).unwrap();
    overwrite(var, &w).unwrap();
    assert_eq!(net.non_finite().unwrap(), vec![("features.0.weight".to_string(), 1)]);
    let (x, labels) = data.batch(0..500, &norm, &Device::Cpu).unwrap();
    let labels: Vec<u32> = labels.to_vec1::<u32>().unwrap();
    let (plain, fast) = both(|| {
        let a = fragility_explorer::engine::attack::attack(
            &net,
            &x,
            &labels,
            &norm,
            BnMode::Running,
            &AttackConfig::fgsm(0.3),
        )
        .unwrap();
        (argmax_rows(&a.clean_logits), argmax_rows(&net.logits(&a.x_adv, BnMode::Running).unwrap()))
    });
    assert!(plain == fast, "the paths disagree on a network with a NaN weight");
    let cfg = EvalConfig { batch: 250, bn: BnMode::Running, attack: Some(AttackConfig::fgsm(0.3)) };
    let e = evaluate(&net, &data, &norm, &cfg, ctrl).unwrap_err().to_string();
    assert!(e.contains("NaN or infinite") && e.contains("features.0.weight (1)"), "{e}");
    let sweep_cfg = SweepConfig::new(Scope::Local, AttackConfig::fgsm(0.3));
    let e = sweep::run(&net, &data, &norm, &sweep_cfg, ctrl, &|_| {}).unwrap_err().to_string();
    assert!(e.contains("features.0.weight"), "{e}");
}
