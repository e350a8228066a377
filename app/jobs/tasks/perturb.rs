//! The perturbation view's samples: clean image, perturbation, adversarial image and
//! predictions of the filtered network.

use anyhow::Result;
use candle_core::Tensor;

use super::evaluate::apply_filter;
use crate::engine::attack::attack_until_stopped;
use crate::engine::eval::predictions;
use crate::engine::model::BnMode;
use crate::engine::progress::Ctrl;
use crate::export::figures::builders::PerturbationSample;
use crate::jobs::command::{EvalSetup, FilterChoice, Payload, SampleView};
use crate::jobs::state::WorkerState;
use crate::render::colormap::Colormap;

pub fn samples(
    state: &mut WorkerState,
    filter: Option<&FilterChoice>,
    setup: &EvalSetup,
    count: usize,
    ctrl: Ctrl,
) -> Result<Payload> {
    let (net, part, norm) = state.prepared(count)?;
    let n = part.len();
    ctrl.progress.start("attacking samples", 1);
    let masker = match filter {
        Some(f) => Some(apply_filter(net, f)?.0),
        None => None,
    };
    ctrl.check()?;
    let (x, _) = part.batch(0..n, &norm, &net.device)?;
    let attacked = attack_until_stopped(net, &x, &part.labels, &norm, BnMode::Running, &setup.attack, ctrl.stop)?;
    let clean = predictions(&attacked.clean_logits)?;
    let adv = predictions(&net.logits(&attacked.x_adv, BnMode::Running)?)?;
    drop(masker);
    ctrl.progress.advance(1);
    let [c, h, w] = part.shape;
    let pixels = |t: &Tensor| -> Result<Vec<f32>> {
        // Back to pixel units, channel by channel.
        let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
        Ok(v.chunks(h * w)
            .enumerate()
            .flat_map(|(i, plane)| {
                let (m, s) = norm.channel(i % c);
                plane.iter().map(move |x| x * s + m).collect::<Vec<_>>()
            })
            .collect())
    };
    let xs = pixels(&x)?;
    let advs = pixels(&attacked.x_adv)?;
    let per = c * h * w;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (xi, ai) = (&xs[i * per..(i + 1) * per], &advs[i * per..(i + 1) * per]);
        // The perturbation per pixel, averaged over channels.
        let delta: Vec<f32> = (0..h * w)
            .map(|p| (0..c).map(|ch| ai[ch * h * w + p] - xi[ch * h * w + p]).sum::<f32>() / c as f32)
            .collect();
        let scale = delta.iter().fold(0f32, |m, d| m.max(d.abs())).max(1e-12);
        out.push(SampleView {
            index: i,
            size: [w, h],
            clean_rgb: to_rgb(xi, c, h * w),
            adv_rgb: to_rgb(ai, c, h * w),
            perturbation_rgb: delta.iter().flat_map(|d| Colormap::Diverging.at(0.5 + 0.5 * d / scale)).collect(),
            perturbation_scale: scale,
            label: part.labels[i],
            clean_pred: clean[i].0,
            clean_conf: clean[i].1,
            adv_pred: adv[i].0,
            adv_conf: adv[i].1,
            raw: PerturbationSample {
                channels: c,
                height: h,
                width: w,
                clean: xi.iter().map(|v| v.clamp(0.0, 1.0)).collect(),
                perturbation: xi.iter().zip(ai).map(|(x, a)| a - x).collect(),
                adversarial: ai.iter().map(|v| v.clamp(0.0, 1.0)).collect(),
                label: part.labels[i],
                clean_pred: clean[i].0,
                clean_conf: clean[i].1,
                adv_pred: adv[i].0,
                adv_conf: adv[i].1,
            },
        });
    }
    Ok(Payload::Samples(out))
}

/// Channel-major pixels in [0, 1] to interleaved RGB bytes (grey images repeated).
fn to_rgb(v: &[f32], channels: usize, plane: usize) -> Vec<u8> {
    let byte = |x: f32| (x.clamp(0.0, 1.0) * 255.0).round() as u8;
    (0..plane)
        .flat_map(|p| {
            (0..3).map(move |k| {
                let ch = if channels >= 3 { k } else { 0 };
                (ch, p)
            })
        })
        .map(|(ch, p)| byte(v[ch * plane + p]))
        .collect()
}
