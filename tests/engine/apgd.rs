//! APGD on the embedded MNIST CNN: it stays in its ball (L-infinity and L2) and in the image,
//! is deterministic for a seed, climbs cross-entropy at least as well as PGD, and with the
//! exact gradient is at least as strong as with float32 autograd's.

use candle_core::{Device, Tensor};
use fragility_explorer::embedded;
use fragility_explorer::engine::attack::apgd::Norm;
use fragility_explorer::engine::attack::{AttackConfig, AttackKind, GradMode, attack};
use fragility_explorer::engine::data::Subset;
use fragility_explorer::engine::eval::{EvalConfig, evaluate};
use fragility_explorer::engine::model::BnMode;
use fragility_explorer::engine::progress::{Ctrl, quiet};
use fragility_explorer::engine::setup;

fn robust(cfg: AttackConfig, n: usize) -> usize {
    let net = embedded::network(&Device::Cpu).unwrap();
    let data = embedded::dataset().unwrap().subset(Subset::First { n }).unwrap();
    let norm = setup::normalization(&net, Some(&data)).unwrap();
    let (p, s) = quiet();
    let report = evaluate(
        &net,
        &data,
        &norm,
        &EvalConfig { batch: 100, bn: BnMode::Running, attack: Some(cfg) },
        Ctrl { progress: &p, stop: &s },
    )
    .unwrap();
    report.correct_adversarial.unwrap()
}

fn apgd(kind: AttackKind, eps: f64) -> AttackConfig {
    AttackConfig { kind, eps, clamp: true, attack_steps: 20, ..AttackConfig::default() }
}

#[test]
fn apgd_is_deterministic_and_at_least_as_strong_as_pgd() {
    let eps = 0.3;
    let fgsm = robust(AttackConfig { eps, clamp: true, ..Default::default() }, 200);
    let pgd =
        robust(AttackConfig { kind: AttackKind::Pgd, eps, clamp: true, pgd_steps: 20, ..Default::default() }, 200);
    let ce = robust(apgd(AttackKind::ApgdCe, eps), 200);
    let dlr = robust(apgd(AttackKind::ApgdDlr, eps), 200);
    // Cross-entropy is PGD's loss: APGD climbs it at least as well. DLR is another loss, so
    // it is held to FGSM only.
    assert!(ce <= pgd && dlr <= fgsm, "APGD-CE {ce}, APGD-DLR {dlr}, PGD-20 {pgd}, FGSM {fgsm}");
    assert_eq!(robust(apgd(AttackKind::ApgdCe, eps), 200), ce, "the same seed gives the same result");
    let autograd = robust(AttackConfig { grad: GradMode::Autograd, ..apgd(AttackKind::ApgdCe, eps) }, 200);
    assert!(ce <= autograd + 2, "exact {ce} against float32 autograd {autograd}");
    let two = robust(AttackConfig { restarts: 2, ..apgd(AttackKind::ApgdCe, eps) }, 200);
    assert!(two <= ce, "a second restart only attacks what the first left: {two} > {ce}");
}

#[test]
fn apgd_stays_in_its_ball_and_in_the_image() {
    let net = embedded::network(&Device::Cpu).unwrap();
    let data = embedded::dataset().unwrap().subset(Subset::First { n: 50 }).unwrap();
    let norm = setup::normalization(&net, Some(&data)).unwrap();
    let (x, labels) = data.batch(0..50, &norm, &Device::Cpu).unwrap();
    let labels: Vec<u32> = labels.to_vec1().unwrap();
    let (m, s) = norm.channel(0);
    let (lo, hi) = ((0.0 - m) / s, (1.0 - m) / s);
    for (norm_kind, eps) in [(Norm::Linf, 0.3), (Norm::L2, 2.0)] {
        let cfg = AttackConfig { norm: norm_kind, attack_steps: 10, ..apgd(AttackKind::ApgdCe, eps) };
        let adv = attack(&net, &x, &labels, &norm, BnMode::Running, &cfg).unwrap().x_adv;
        let delta = (&adv - &x).unwrap();
        let per_sample = |t: &Tensor| -> Vec<f32> {
            let rows = t.flatten_from(1).unwrap();
            match norm_kind {
                Norm::Linf => rows.abs().unwrap().max(1).unwrap().to_vec1().unwrap(),
                Norm::L2 => rows.sqr().unwrap().sum(1).unwrap().sqrt().unwrap().to_vec1().unwrap(),
            }
        };
        let sizes = per_sample(&delta);
        assert!(sizes.iter().all(|&d| d as f64 <= eps * (1.0 + 1e-5)), "{norm_kind:?}: {sizes:?} > {eps}");
        assert!(sizes.iter().any(|&d| d > 0.0), "{norm_kind:?}: nothing moved");
        let values: Vec<f32> = adv.flatten_all().unwrap().to_vec1().unwrap();
        assert!(values.iter().all(|&v| v >= lo - 1e-5 && v <= hi + 1e-5), "{norm_kind:?}: outside the image");
    }
}
