//! Figures of the attack itself: accuracy against eps, and a grid of perturbed samples.

use anyhow::{Result, bail};

use super::Built;
use crate::export::figures::{Figure, GridImage, ImageGrid, LinePlot, Series};
use crate::export::tables::Table;
use crate::render::colormap::Colormap;
use crate::render::palette;

/// Clean and adversarial accuracy against the attack strength, from `(eps, clean,
/// adversarial)` points in any order.
pub fn accuracy_vs_eps(points: &[(f64, f64, f64)]) -> Built {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut table = Table::new(&["eps", "clean_accuracy", "adv_accuracy"]);
    for (e, c, a) in &sorted {
        table.row([e.to_string(), c.to_string(), a.to_string()]);
    }
    let line = |name: &str, colour, y: fn(&(f64, f64, f64)) -> f64| Series {
        name: name.into(),
        points: sorted.iter().map(|p| [p.0, y(p)]).collect(),
        colour,
        dashed: false,
        markers: true,
    };
    let plot = LinePlot {
        title: "Accuracy against attack strength".into(),
        x_label: "ε (normalised input units)".into(),
        y_label: "Accuracy".into(),
        series: vec![line("Clean", palette::CLEAN, |p| p.1), line("Adversarial", palette::ADVERSARIAL, |p| p.2)],
        y_range: Some([0.0, 1.0]),
        ..Default::default()
    };
    (Figure::Line(plot), table)
}

/// One attacked sample: pixels in [0, 1], channel-major (`channels` x `height` x `width`), as
/// the dataset holds them; the perturbation in the same units (adversarial - clean).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PerturbationSample {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub clean: Vec<f32>,
    pub perturbation: Vec<f32>,
    pub adversarial: Vec<f32>,
    pub label: u32,
    pub clean_pred: u32,
    pub clean_conf: f32,
    pub adv_pred: u32,
    pub adv_conf: f32,
}

impl PerturbationSample {
    pub fn flipped(&self) -> bool {
        self.adv_pred != self.clean_pred
    }
}

/// RGB bytes of channel-major pixels in [0, 1] (grey images repeat their one channel).
fn to_rgb(pixels: &[f32], channels: usize, hw: usize) -> Vec<u8> {
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    (0..hw)
        .flat_map(|p| {
            let ch = |c: usize| pixels[c.min(channels - 1) * hw + p];
            [byte(ch(0)), byte(ch(1)), byte(ch(2))]
        })
        .collect()
}

/// The perturbation, averaged over channels, with the diverging colormap symmetric about 0.
fn perturbation_rgb(pixels: &[f32], channels: usize, hw: usize, max_abs: f32) -> Vec<u8> {
    (0..hw)
        .flat_map(|p| {
            let mean = (0..channels).map(|c| pixels[c * hw + p]).sum::<f32>() / channels as f32;
            Colormap::Diverging.at(0.5 + 0.5 * mean / max_abs.max(f32::MIN_POSITIVE))
        })
        .collect()
}

/// Each sample as three images (clean, perturbation, adversarial) with the label and both
/// predictions; a prediction the attack flipped is framed. `classes` names the labels.
pub fn perturbation_grid(title: &str, samples: &[PerturbationSample], classes: &[String]) -> Result<Built> {
    let name = |c: u32| classes.get(c as usize).cloned().unwrap_or_else(|| c.to_string());
    let mut images = Vec::with_capacity(samples.len() * 3);
    let mut table = Table::new(&[
        "sample",
        "label",
        "clean_pred",
        "clean_conf",
        "adv_pred",
        "adv_conf",
        "flipped",
        "max_abs_perturbation",
    ]);
    for (k, s) in samples.iter().enumerate() {
        let hw = s.height * s.width;
        let n = s.channels * hw;
        if n == 0 || [&s.clean, &s.perturbation, &s.adversarial].iter().any(|p| p.len() != n) {
            bail!(
                "sample {k} has {} clean, {} perturbation and {} adversarial values for {}x{}x{} pixels",
                s.clean.len(),
                s.perturbation.len(),
                s.adversarial.len(),
                s.channels,
                s.height,
                s.width
            );
        }
        let max_abs = s.perturbation.iter().fold(0f32, |m, v| m.max(v.abs()));
        let image =
            |rgb, caption: String, highlight| GridImage { width: s.width, height: s.height, rgb, caption, highlight };
        images.push(image(
            to_rgb(&s.clean, s.channels, hw),
            format!("Label {}\nPredicted {}, {:.1} %", name(s.label), name(s.clean_pred), 100.0 * s.clean_conf),
            false,
        ));
        images.push(image(
            perturbation_rgb(&s.perturbation, s.channels, hw, max_abs),
            format!("Perturbation\nmax |δ| {max_abs:.3}"),
            false,
        ));
        images.push(image(
            to_rgb(&s.adversarial, s.channels, hw),
            format!(
                "{}\nPredicted {}, {:.1} %",
                if s.flipped() { "Adversarial, flipped" } else { "Adversarial" },
                name(s.adv_pred),
                100.0 * s.adv_conf
            ),
            s.flipped(),
        ));
        table.row([
            k.to_string(),
            s.label.to_string(),
            s.clean_pred.to_string(),
            s.clean_conf.to_string(),
            s.adv_pred.to_string(),
            s.adv_conf.to_string(),
            s.flipped().to_string(),
            max_abs.to_string(),
        ]);
    }
    // Two samples per row once there are more than four, so the images stay large enough.
    let columns = if samples.len() > 4 { 6 } else { 3 };
    Ok((Figure::Grid(ImageGrid { title: title.into(), columns, images }), table))
}
