//! Invariants of the analyses (METHOD.md sections 3-8), bad input, cancellation, training.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::Device;
use common::*;
use fragility_explorer::engine::analysis::evalset::EvalSet;
use fragility_explorer::engine::analysis::filter::{Filter, FilterKind, thresholds};
use fragility_explorer::engine::analysis::landscape;
use fragility_explorer::engine::analysis::masks::{FilterSet, Masker};
use fragility_explorer::engine::analysis::selective::{self, Selection, SelectiveConfig};
use fragility_explorer::engine::analysis::sweep::{self, Scope, SweepConfig, SweepOptions};
use fragility_explorer::engine::attack::AttackConfig;
use fragility_explorer::engine::card::{ModelCard, Normalize};
use fragility_explorer::engine::data::{self, DataSpec, Dataset, Subset};
use fragility_explorer::engine::model::init::initial_state;
use fragility_explorer::engine::model::{BnMode, CardOrigin, Network};
use fragility_explorer::engine::progress::{Ctrl, Progress, StopFlag, quiet};
use fragility_explorer::engine::setup;
use fragility_explorer::engine::train::{self, TrainConfig, Trainer};

fn tiny() -> (Network, Dataset, Normalize) {
    let dir = fixtures().join("analysis");
    let net = Network::load(&dir.join("tiny_cnn.safetensors"), None, &Device::Cpu).unwrap();
    let data = data::load(&DataSpec { subset: Subset::First { n: 30 }, ..DataSpec::new(&dir) }).unwrap();
    let norm = setup::normalization(&net, Some(&data)).unwrap();
    (net, data, norm)
}

fn cfg(steps: usize, filters: &[FilterKind]) -> SweepConfig {
    let options = SweepOptions { steps, ..SweepOptions::default() };
    SweepConfig { options, filters: filters.to_vec(), ..SweepConfig::new(Scope::Local, AttackConfig::fgsm(0.3)) }
}

fn weights(net: &Network) -> Vec<f32> {
    net.params.params().iter().filter(|p| p.role.trainable()).flat_map(|p| vec4(p.var.as_tensor())).collect()
}

#[test]
fn eps_zero_gives_clean_accuracy() {
    let (net, data, norm) = tiny();
    let (p, s) = quiet();
    let c = SweepConfig { layers: vec!["features.4".into()], ..cfg(3, &[FilterKind::H1]) };
    let c = SweepConfig { attack: AttackConfig { clamp: true, ..AttackConfig::fgsm(0.0) }, ..c };
    let r = sweep::run(&net, &data, &norm, &c, Ctrl { progress: &p, stop: &s }, &|_| {}).unwrap();
    assert_eq!(r.baseline.adv_correct, r.baseline.clean_correct);
    let rec = &r.records[0];
    assert_eq!(rec.adv_correct, rec.clean_correct);
}

#[test]
fn a_mask_that_removes_nothing_leaves_the_baseline() {
    let (net, data, norm) = tiny();
    let set = EvalSet::new(&net, &data, &norm, 100).unwrap();
    let (p, s) = quiet();
    let attack = AttackConfig::fgsm(0.3);
    let base = set.counts(&net, BnMode::Running, &attack, Ctrl { progress: &p, stop: &s }).unwrap();
    let mut masker = Masker::new(&net);
    let fs = FilterSet::global(&net, true).unwrap();
    let ones = vec![1f32; masker.values(&fs).unwrap().len()];
    masker.apply(&fs, &ones).unwrap();
    let masked = set.counts(&net, BnMode::Running, &attack, Ctrl { progress: &p, stop: &s }).unwrap();
    assert_eq!(masked, base);
}

#[test]
fn last_h1_and_h2_steps_remove_every_weight_and_h3_windows_do_not_overlap() {
    let (net, data, norm) = tiny();
    let (p, s) = quiet();
    let r = sweep::run(
        &net,
        &data,
        &norm,
        &cfg(5, &[FilterKind::H1, FilterKind::H2]),
        Ctrl { progress: &p, stop: &s },
        &|_| {},
    )
    .unwrap();
    for rec in &r.records {
        assert_eq!(*rec.removed.last().unwrap(), rec.n, "{} {}", rec.layer, rec.filter);
        assert_eq!(*rec.rho.last().unwrap(), 0.0);
    }
    // h2's last step takes h1's counts (the same mask): those a sweep of h2 alone computes.
    let h2 = cfg(5, &[FilterKind::H2]);
    let alone = sweep::run(&net, &data, &norm, &h2, Ctrl { progress: &p, stop: &s }, &|_| {}).unwrap();
    for (with_h1, alone) in r.records.iter().filter(|r| r.filter == FilterKind::H2).zip(&alone.records) {
        assert!(!alone.reused.last().unwrap(), "{}: alone, the last step is computed", alone.layer);
        assert!(with_h1.reused.last().unwrap(), "{}: after h1, the last step is reused", alone.layer);
        assert_eq!((&with_h1.clean_correct, &with_h1.adv_correct), (&alone.clean_correct, &alone.adv_correct));
    }
    let mut masker = Masker::new(&net);
    for layer in ["features.0", "features.4", "classifier.0", "classifier.2"] {
        let values = masker.values(&FilterSet::layer(&net, layer, false).unwrap()).unwrap();
        let lo = values.iter().copied().fold(f32::INFINITY, f32::min) as f64;
        let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        for steps in [3, 25] {
            let (alphas, width) = thresholds(FilterKind::H3, lo, hi, hi, steps);
            let mut hits = vec![0u8; values.len()];
            for a in alphas {
                let f = Filter { kind: FilterKind::H3, alpha: a, width, range: [lo, hi] };
                for (h, w) in hits.iter_mut().zip(&values) {
                    *h += f.removes(*w) as u8;
                }
            }
            assert!(hits.iter().all(|&h| h <= 1), "{layer}: a weight is in two pulse windows");
        }
    }
}

#[test]
fn sweeps_leave_the_network_unfiltered_even_when_cancelled() {
    let (net, data, norm) = tiny();
    let before = weights(&net);
    struct StopAfter<'a>(&'a StopFlag, AtomicUsize, usize);
    impl Progress for StopAfter<'_> {
        fn advance(&self, n: usize) {
            if self.1.fetch_add(n, Ordering::SeqCst) + n >= self.2 {
                self.0.stop();
            }
        }
    }
    let stop = StopFlag::new();
    let progress = StopAfter(&stop, AtomicUsize::new(0), 7);
    let r = sweep::run(
        &net,
        &data,
        &norm,
        &cfg(5, &[FilterKind::H1, FilterKind::H3]),
        Ctrl { progress: &progress, stop: &stop },
        &|_| {},
    )
    .unwrap();
    assert!(r.cancelled);
    let steps: usize = r.records.iter().map(|r| r.clean_correct.len()).sum();
    assert_eq!(steps, 7, "the finished steps are kept");
    assert!(r.records[0].complete() && r.records[0].s_adv.is_some());
    assert!(!r.records.last().unwrap().complete() && r.records.last().unwrap().s_adv.is_none());
    assert_eq!(weights(&net), before);
}

#[test]
fn bad_sweep_configs_are_refused_clearly() {
    let (net, data, norm) = tiny();
    let (p, s) = quiet();
    let run = |c: SweepConfig| {
        sweep::run(&net, &data, &norm, &c, Ctrl { progress: &p, stop: &s }, &|_| {}).unwrap_err().to_string()
    };
    for steps in [2, 4, 1] {
        assert!(run(cfg(steps, &[FilterKind::H1])).contains("odd and at least 3"));
    }
    let e = run(SweepConfig { layers: vec!["features.9".into()], ..cfg(3, &[FilterKind::H1]) });
    assert!(e.contains("no filterable layer is named `features.9`") && e.contains("`features.0`"), "{e}");
    let e = run(SweepConfig { attack: AttackConfig::fgsm(-0.1), ..cfg(3, &[FilterKind::H1]) });
    assert!(e.contains("eps must be"), "{e}");
    let mut reversed = SweepConfig { scope: Scope::Global, ..cfg(3, &[FilterKind::H1]) };
    reversed.options.global_range = [1.0, -1.0];
    let e = run(reversed);
    assert!(e.contains("lo < hi"), "{e}");
}

/// A training folder with the fixture images as both splits.
fn idx_train_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("analysis");
    for (from, to) in [
        ("t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz"),
        ("t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    ] {
        std::fs::copy(src.join(from), dir.path().join(to)).unwrap();
        std::fs::copy(src.join(from), dir.path().join(from)).unwrap();
    }
    dir
}

fn fresh_tiny(seed: u64) -> Network {
    let text = std::fs::read_to_string(fixtures().join("analysis/tiny_cnn.json")).unwrap();
    let text = text
        .replace("\"key\": \"features.0\"", "\"key\": \"features.0\", \"out_channels\": 4, \"kernel\": 3")
        .replace("\"key\": \"features.4\"", "\"key\": \"features.4\", \"out_channels\": 8, \"kernel\": 3")
        .replace("\"key\": \"classifier.0\"", "\"key\": \"classifier.0\", \"out_features\": 16");
    let card = ModelCard::parse(&text, std::path::Path::new("tiny.json")).unwrap();
    let state = initial_state(&card, 10, seed, &Device::Cpu).unwrap();
    Network::build(state, Some((card, CardOrigin::Given)), &Device::Cpu).unwrap()
}

#[test]
fn training_is_seeded_and_resumes_exactly() {
    let dir = idx_train_dir();
    let data = data::load(&DataSpec { split: data::Split::Train, ..DataSpec::new(dir.path()) }).unwrap();
    let norm = Normalize { mean: vec![0.1307], std: vec![0.3081] };
    let (p, s) = quiet();
    let ctrl = Ctrl { progress: &p, stop: &s };
    let cfg = TrainConfig { epochs: 2, every: 1, seed: 5, batch: 16, lr: 1e-3, test_attack: None };
    let out = tempfile::tempdir().unwrap();

    let straight = fresh_tiny(1);
    let mut t = Trainer::new(&straight, cfg.clone()).unwrap();
    let r = train::train(&mut t, &data, Some(&data), &norm, out.path(), ctrl, &|_| {}).unwrap();
    assert_eq!(r.logs.len(), 2);
    assert_eq!(r.checkpoints.len(), 2);
    assert!(r.logs[1].train_loss < r.logs[0].train_loss * 1.5);

    // Epoch 1 from the checkpoint, then one more epoch: bit-identical to the straight run.
    let resumed = Network::load(&r.checkpoints[0], None, &Device::Cpu).unwrap();
    assert_eq!(resumed.card.training.as_ref().unwrap().epoch, 1);
    let mut t = Trainer::new(&resumed, cfg.clone()).unwrap();
    assert!(t.resume_optimiser(&r.checkpoints[0]).unwrap());
    let out2 = tempfile::tempdir().unwrap();
    train::train(&mut t, &data, None, &norm, out2.path(), ctrl, &|_| {}).unwrap();
    assert_eq!(weights(&resumed), weights(&straight));

    // The same seed trains the same network again.
    let again = fresh_tiny(1);
    let mut t = Trainer::new(&again, cfg).unwrap();
    train::train(&mut t, &data, None, &norm, out2.path(), ctrl, &|_| {}).unwrap();
    assert_eq!(weights(&again), weights(&straight));
}

#[test]
fn training_data_that_disagrees_with_the_card_is_refused() {
    let net = fresh_tiny(0);
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("data_batch_1.bin"), vec![1u8; 3073 * 2]).unwrap();
    let d = data::load(&DataSpec { split: data::Split::Train, ..DataSpec::new(dir.path()) }).unwrap();
    let e = setup::check_compatible(&net, &d).unwrap_err().to_string();
    assert!(e.contains("the dataset's images are 3x32x32 but the model takes 1x28x28"), "{e}");
}

#[test]
fn selective_training_freezes_fragile_weights_and_the_control_matches_plain_training() {
    let dir = idx_train_dir();
    let data = data::load(&DataSpec { split: data::Split::Train, ..DataSpec::new(dir.path()) }).unwrap();
    let norm = Normalize { mean: vec![0.1307], std: vec![0.3081] };
    let (p, s) = quiet();
    let ctrl = Ctrl { progress: &p, stop: &s };
    let start = tempfile::tempdir().unwrap();
    let net = fresh_tiny(2);
    let base_cfg = TrainConfig { epochs: 1, every: 1, seed: 3, batch: 20, lr: 1e-3, test_attack: None };
    let mut t = Trainer::new(&net, base_cfg.clone()).unwrap();
    let ckpt = train::train(&mut t, &data, None, &norm, start.path(), ctrl, &|_| {}).unwrap().checkpoints[0].clone();

    let cfg = SelectiveConfig {
        train: TrainConfig { epochs: 2, test_attack: Some(AttackConfig::fgsm(0.3)), ..base_cfg.clone() },
        selection: Selection::PerWeight,
        sweep: cfg(5, &FilterKind::PAPER),
    };
    let out = tempfile::tempdir().unwrap();
    let r =
        selective::run(&ckpt, &data, &data, &data, &norm, &cfg, out.path(), &Device::Cpu, ctrl, &|_, _| {}).unwrap();
    assert_eq!((r.regular.len(), r.selective.len()), (1, 1));
    let frozen = r.characterisations[0].frozen_fraction;
    assert!(frozen > 0.0 && frozen < 1.0, "frozen fraction {frozen}");

    // Frozen weights kept their values; the control arm equals plain training from the checkpoint.
    let before = Network::load(&ckpt, None, &Device::Cpu).unwrap();
    let after =
        Network::load(&out.path().join("selective/checkpoint-epoch-002.safetensors"), None, &Device::Cpu).unwrap();
    let sweep = &r.characterisations[0].sweep;
    let mut masker = Masker::new(&before);
    for layer in ["features.0", "features.4", "classifier.0", "classifier.2"] {
        let values = masker.values(&FilterSet::layer(&before, layer, false).unwrap()).unwrap();
        let classes = sweep.record(layer, FilterKind::H3).unwrap().weight_classes(&values, true).unwrap();
        let new = vec4(after.params.get(&format!("{layer}.weight")).unwrap().var.as_tensor());
        for ((c, old), new) in classes.iter().zip(&values).zip(&new) {
            if *c == fragility_explorer::engine::analysis::scores::Class::Fragile {
                assert_eq!(old, new, "{layer}: a frozen weight moved");
            }
        }
    }
    let control =
        Network::load(&out.path().join("regular/checkpoint-epoch-002.safetensors"), None, &Device::Cpu).unwrap();
    let plain = Network::load(&ckpt, None, &Device::Cpu).unwrap();
    let mut t = Trainer::new(&plain, TrainConfig { epochs: 2, ..base_cfg }).unwrap();
    t.resume_optimiser(&ckpt).unwrap();
    let out3 = tempfile::tempdir().unwrap();
    train::train(&mut t, &data, None, &norm, out3.path(), ctrl, &|_| {}).unwrap();
    assert_eq!(weights(&control), weights(&plain));
}

#[test]
fn checkpoint_folders_with_mixed_architectures_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join("analysis/tiny_cnn.safetensors"), dir.path().join("a-epoch-1.safetensors")).unwrap();
    std::fs::copy(fixtures().join("analysis/tiny_cnn.json"), dir.path().join("a-epoch-1.json")).unwrap();
    std::fs::copy(fixtures().join("models/resnet18_cifar.safetensors"), dir.path().join("b-epoch-2.safetensors"))
        .unwrap();
    std::fs::copy(fixtures().join("models/resnet18_cifar.json"), dir.path().join("b-epoch-2.json")).unwrap();
    let e = landscape::list_checkpoints(dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("the folder mixes architectures") && e.contains("b-epoch-2.safetensors"), "{e}");
}

#[test]
fn kept_prefixes_give_the_same_counts() {
    let (p, s) = quiet();
    let ctrl = Ctrl { progress: &p, stop: &s };
    let dir = fixtures().join("models");
    let cases = [
        ("analysis", fixtures().join("analysis/tiny_cnn.safetensors"), "classifier.0"),
        ("resnet18_cifar", dir.join("resnet18_cifar.safetensors"), "layer3.1.conv2"),
        ("shufflenet_v2", dir.join("shufflenet_v2.safetensors"), "stage3.2.branch2.3"),
        ("squeezenet1_1", dir.join("squeezenet1_1.safetensors"), "features.10.expand3x3"),
        ("wide_resnet", dir.join("wide_resnet.safetensors"), "block2.layer.1.conv2"),
        ("dm_wide_resnet", dir.join("dm_wide_resnet.safetensors"), "layer.1.block.0.conv_1"),
        ("preact_resnet18_in", dir.join("preact_resnet18_in.safetensors"), "layer3.1.conv1"),
        ("vgg11_bn", dir.join("vgg11_bn.safetensors"), "features.15"),
        ("mobilenet_v2", dir.join("mobilenet_v2.safetensors"), "features.9.conv.1.0"),
    ];
    for (name, path, layer) in cases {
        let net = Network::load(&path, None, &Device::Cpu).unwrap();
        // Twelve images of the right shape: the fixture inputs, or MNIST digits.
        let data = if name == "analysis" { tiny().1 } else { fixture_dataset(name, &net) };
        let norm = net.card.normalize.clone().unwrap_or(Normalize { mean: vec![0.1307], std: vec![0.3081] });
        let fs = FilterSet::layer(&net, layer, false).unwrap();
        let mut masker = Masker::new(&net);
        let values = masker.values(&fs).unwrap();
        let mask: Vec<f32> = values.iter().map(|v| if *v > 0.0 { 0.0 } else { 1.0 }).collect();
        for transfer in [false, true] {
            let attack = AttackConfig::fgsm(0.1);
            let mut set = EvalSet::new(&net, &data, &norm, 4).unwrap();
            if transfer {
                set.freeze_attack(&net, BnMode::Running, &attack, ctrl).unwrap();
            }
            masker.apply(&fs, &mask).unwrap();
            let plain = set.counts(&net, BnMode::Running, &attack, ctrl).unwrap();
            masker.restore().unwrap();
            set.keep_prefix(&net, &[layer], BnMode::Running, &attack).unwrap();
            assert!(net.first_stage_with(&[layer]) > 0, "{name}: {layer} should have stages before it");
            masker.apply(&fs, &mask).unwrap();
            let kept = set.counts(&net, BnMode::Running, &attack, ctrl).unwrap();
            masker.restore().unwrap();
            assert_eq!(plain, kept, "{name} transfer {transfer}");
        }
        // The adversarial inputs themselves agree, bit for bit.
        let (x, _) = data.batch(0..data.len().min(4), &norm, &Device::Cpu).unwrap();
        let labels = &data.labels[..data.len().min(4)];
        masker.apply(&fs, &mask).unwrap();
        let attack = AttackConfig::fgsm(0.1);
        let direct =
            fragility_explorer::engine::attack::attack(&net, &x, labels, &norm, BnMode::Running, &attack).unwrap();
        let from = net.first_stage_with(&[layer]);
        let prefix = fragility_explorer::engine::attack::Prefix::new(&net, from, &x, BnMode::Running).unwrap();
        let kept = prefix.fgsm(&net, labels, &norm, BnMode::Running, &attack).unwrap();
        masker.restore().unwrap();
        assert_eq!(vec4(&direct.x_adv), vec4(&kept.x_adv), "{name}: adversarial inputs");
        assert_eq!(vec4(&direct.clean_logits), vec4(&kept.clean_logits), "{name}: logits");
    }
}
