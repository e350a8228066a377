//! APGD-T, FAB-T, Square and the worst-case ensemble on the embedded MNIST CNN: Square and
//! FAB-T stay in their ball and the image, every attack is deterministic for a seed, the
//! ensemble is no weaker than its first attack and reports each stage, and the gradient
//! checks count the samples float32 autograd cannot move.

use candle_core::{Device, Tensor};
use fragility_explorer::embedded;
use fragility_explorer::engine::attack::apgd::Norm;
use fragility_explorer::engine::attack::{AttackConfig, AttackKind, GradMode, attack};
use fragility_explorer::engine::data::Subset;
use fragility_explorer::engine::eval::{EvalConfig, EvalReport, evaluate};
use fragility_explorer::engine::model::BnMode;
use fragility_explorer::engine::progress::{Ctrl, quiet};
use fragility_explorer::engine::setup;

fn report(cfg: AttackConfig, n: usize) -> EvalReport {
    let net = embedded::network(&Device::Cpu).unwrap();
    let data = embedded::dataset().unwrap().subset(Subset::First { n }).unwrap();
    let norm = setup::normalization(&net, Some(&data)).unwrap();
    let (p, s) = quiet();
    let cfg = EvalConfig { batch: 50, bn: BnMode::Running, attack: Some(cfg) };
    evaluate(&net, &data, &norm, &cfg, Ctrl { progress: &p, stop: &s }).unwrap()
}

/// Small budgets: the behaviour, not the strength, is under test.
fn cheap(kind: AttackKind) -> AttackConfig {
    AttackConfig { kind, eps: 0.3, clamp: true, attack_steps: 10, queries: 300, targets: 3, ..Default::default() }
}

#[test]
fn the_ensemble_is_the_worst_case_of_its_attacks_in_turn() {
    let n = 100;
    let ce = report(cheap(AttackKind::ApgdCe), n).correct_adversarial.unwrap();
    let strong = report(cheap(AttackKind::Strong), n);
    let robust = strong.correct_adversarial.unwrap();
    let stages: Vec<(AttackKind, usize)> = strong.stats.stages.iter().map(|s| (s.attack, s.robust)).collect();
    let kinds: Vec<AttackKind> = stages.iter().map(|s| s.0).collect();
    assert_eq!(kinds, [AttackKind::ApgdCe, AttackKind::ApgdT, AttackKind::FabT, AttackKind::Square]);
    // Its first stage is APGD-CE on the same samples with the same seed.
    assert_eq!(stages[0].1, ce, "{stages:?}");
    assert!(stages.windows(2).all(|w| w[1].1 <= w[0].1), "stages only remove samples: {stages:?}");
    assert_eq!(stages[3].1, robust, "the last stage's count is the robust count the evaluation finds");
    assert!(robust <= ce && robust < strong.correct_clean, "{robust} of {}", strong.correct_clean);
    assert_eq!(report(cheap(AttackKind::Strong), n).correct_adversarial.unwrap(), robust, "same seed, same result");
}

#[test]
fn targeted_apgd_and_square_are_seeded_and_fool_samples() {
    let n = 60;
    for kind in [AttackKind::ApgdT, AttackKind::FabT, AttackKind::Square] {
        let a = report(cheap(kind), n);
        let robust = a.correct_adversarial.unwrap();
        assert!(robust < a.correct_clean, "{kind:?} fooled nothing: {robust} of {}", a.correct_clean);
        assert_eq!(report(cheap(kind), n).outcomes, a.outcomes, "{kind:?}: same seed, same outcomes");
        let other = report(AttackConfig { seed: 7, ..cheap(kind) }, n);
        assert_eq!(other.n, n, "{kind:?} with another seed runs too");
    }
}

#[test]
fn fab_t_stays_in_its_ball_and_in_the_image_and_skips_under_l2() {
    let net = embedded::network(&Device::Cpu).unwrap();
    let data = embedded::dataset().unwrap().subset(Subset::First { n: 30 }).unwrap();
    let norm = setup::normalization(&net, Some(&data)).unwrap();
    let (x, labels) = data.batch(0..30, &norm, &Device::Cpu).unwrap();
    let labels: Vec<u32> = labels.to_vec1().unwrap();
    let (m, s) = norm.channel(0);
    let (lo, hi) = ((0.0 - m) / s, (1.0 - m) / s);
    let eps = 0.35;
    let cfg = AttackConfig { eps, ..cheap(AttackKind::FabT) };
    let out = attack(&net, &x, &labels, &norm, BnMode::Running, &cfg).unwrap();
    let sizes: Vec<f32> =
        (&out.x_adv - &x).unwrap().abs().unwrap().flatten_from(1).unwrap().max(1).unwrap().to_vec1().unwrap();
    assert!(sizes.iter().all(|&d| d as f64 <= eps * (1.0 + 1e-5)), "{sizes:?} > {eps}");
    let values: Vec<f32> = out.x_adv.flatten_all().unwrap().to_vec1().unwrap();
    assert!(values.iter().all(|&v| v >= lo - 1e-5 && v <= hi + 1e-5), "outside the image");
    // Every moved sample is misclassified: FAB keeps a point only once it crosses.
    let preds: Vec<u32> = net.logits(&out.x_adv, BnMode::Running).unwrap().argmax(1).unwrap().to_vec1().unwrap();
    let moved: Vec<usize> = (0..30).filter(|&i| sizes[i] > 0.0).collect();
    assert!(!moved.is_empty(), "FAB-T fooled nothing at eps {eps}");
    assert!(moved.iter().all(|&i| preds[i] != labels[i]), "a moved sample is still classified right");
    // The ensemble under L2 runs without FAB-T (an L-infinity attack here).
    let l2 = report(AttackConfig { norm: Norm::L2, eps: 6.5, ..cheap(AttackKind::Strong) }, 20);
    let kinds: Vec<AttackKind> = l2.stats.stages.iter().map(|s| s.attack).collect();
    assert_eq!(kinds, [AttackKind::ApgdCe, AttackKind::ApgdT, AttackKind::Square]);
}

#[test]
fn square_stays_in_its_ball_and_in_the_image() {
    let net = embedded::network(&Device::Cpu).unwrap();
    let data = embedded::dataset().unwrap().subset(Subset::First { n: 20 }).unwrap();
    let norm = setup::normalization(&net, Some(&data)).unwrap();
    let (x, labels) = data.batch(0..20, &norm, &Device::Cpu).unwrap();
    let labels: Vec<u32> = labels.to_vec1().unwrap();
    let (m, s) = norm.channel(0);
    let (lo, hi) = ((0.0 - m) / s, (1.0 - m) / s);
    for (norm_kind, eps) in [(Norm::Linf, 0.3), (Norm::L2, 6.5)] {
        let cfg = AttackConfig { norm: norm_kind, queries: 100, ..cheap(AttackKind::Square) };
        let adv = attack(&net, &x, &labels, &norm, BnMode::Running, &AttackConfig { eps, ..cfg }).unwrap().x_adv;
        let rows = (&adv - &x).unwrap().flatten_from(1).unwrap();
        let sizes: Vec<f32> = match norm_kind {
            Norm::Linf => rows.abs().unwrap().max(1).unwrap().to_vec1().unwrap(),
            Norm::L2 => rows.sqr().unwrap().sum(1).unwrap().sqrt().unwrap().to_vec1().unwrap(),
        };
        assert!(sizes.iter().all(|&d| d as f64 <= eps * (1.0 + 1e-5)), "{norm_kind:?}: {sizes:?} > {eps}");
        assert!(sizes.iter().any(|&d| d > 0.0), "{norm_kind:?}: nothing fooled");
        let values: Vec<f32> = adv.flatten_all().unwrap().to_vec1().unwrap();
        assert!(values.iter().all(|&v| v >= lo - 1e-5 && v <= hi + 1e-5), "{norm_kind:?}: outside the image");
    }
}

#[test]
fn zero_gradients_are_counted_and_warned_about() {
    let n = 50;
    let fgsm = |grad| AttackConfig { grad, eps: 0.3, ..Default::default() };
    let autograd = report(fgsm(GradMode::Autograd), n);
    // Float32 autograd's gradient is exactly zero where every other class's probability
    // underflows too: some of the saturated samples.
    let (zero, saturated) = (autograd.stats.zero_gradient, autograd.stats.saturated);
    assert!(zero > 0 && zero <= saturated, "{zero} zero gradients, {saturated} saturated");
    assert!(autograd.stats.warnings(n).iter().any(|w| w.contains("zero input gradient")));
    let exact = report(fgsm(GradMode::Exact), n);
    assert_eq!(exact.stats.zero_gradient, 0);
    assert!(exact.stats.warnings(n).is_empty());
    assert!(!exact.randomized, "the engine's networks are deterministic");
}

#[test]
fn bad_attack_parameters_are_refused_with_the_reason() {
    let x = Tensor::zeros((1, 1, 28, 28), candle_core::DType::F32, &Device::Cpu).unwrap();
    let net = embedded::network(&Device::Cpu).unwrap();
    let data = embedded::dataset().unwrap().subset(Subset::First { n: 1 }).unwrap();
    let norm = setup::normalization(&net, Some(&data)).unwrap();
    let cases = [
        (AttackConfig { queries: 0, ..cheap(AttackKind::Square) }, "queries"),
        (AttackConfig { targets: 0, ..cheap(AttackKind::ApgdT) }, "target class"),
        (AttackConfig { norm: Norm::L2, ..AttackConfig::fgsm(0.3) }, "L-infinity attack"),
        (AttackConfig { norm: Norm::L2, ..cheap(AttackKind::FabT) }, "L-infinity attack"),
        (AttackConfig { targets: 0, ..cheap(AttackKind::FabT) }, "target class"),
    ];
    for (cfg, says) in cases {
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains(says), "{err}");
        let _ = attack(&net, &x, &[0], &norm, BnMode::Running, &cfg);
    }
}
