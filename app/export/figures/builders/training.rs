//! Training curves, and selective against regular training (METHOD.md section 8).

use super::Built;
use crate::engine::analysis::selective::SelectiveResult;
use crate::engine::train::{EpochLog, TrainResult};
use crate::export::figures::{Figure, LinePlot, Marker, Series};
use crate::export::tables::epochs_table;
use crate::render::palette;

/// Points (epoch, value) of one log field; epochs without a value break the line.
fn curve(logs: &[EpochLog], value: impl Fn(&EpochLog) -> Option<f64>) -> Vec<[f64; 2]> {
    logs.iter().map(|l| [l.epoch as f64, value(l).unwrap_or(f64::NAN)]).collect()
}

fn line(name: &str, points: Vec<[f64; 2]>, colour: usize, dashed: bool) -> Series {
    Series { name: name.into(), points, colour, dashed, markers: true }
}

/// Test accuracy (clean and adversarial) and training accuracy per epoch, loss on the right.
pub fn training_curves(r: &TrainResult) -> Built {
    let logs = &r.logs;
    let plot = LinePlot {
        title: "Training: accuracy per epoch".into(),
        x_label: "Epoch".into(),
        x_whole: true,
        y_label: "Accuracy".into(),
        series: vec![
            line("Test clean", curve(logs, |l| l.test_clean_accuracy), palette::CLEAN, false),
            line("Test adversarial", curve(logs, |l| l.test_adv_accuracy), palette::ADVERSARIAL, false),
            line("Training", curve(logs, |l| Some(l.train_accuracy)), palette::TRAINING, false),
        ],
        y2: Some((
            "Training loss".into(),
            vec![line("Training loss", curve(logs, |l| Some(l.train_loss)), palette::REFERENCE, true)],
        )),
        y_range: Some([0.0, 1.0]),
        ..Default::default()
    };
    (Figure::Line(plot), epochs_table(&[("train", logs)]))
}

/// Clean and adversarial test accuracy of both arms per epoch (selective dashed), with the
/// epochs where the selective arm was re-characterised marked.
pub fn selective_curves(r: &SelectiveResult) -> Built {
    let (g, s) = (&r.regular, &r.selective);
    let markers = r
        .characterisations
        .iter()
        .enumerate()
        .map(|(i, c)| Marker {
            x: c.epoch as f64,
            label: if i == 0 {
                format!("Characterised ({:.0} % frozen)", 100.0 * c.frozen_fraction)
            } else {
                String::new()
            },
        })
        .collect();
    let plot = LinePlot {
        title: format!("Selective against regular training from epoch {}", r.start_epoch),
        x_label: "Epoch".into(),
        x_whole: true,
        y_label: "Test accuracy".into(),
        series: vec![
            line("Regular, clean", curve(g, |l| l.test_clean_accuracy), palette::CLEAN, false),
            line("Regular, adversarial", curve(g, |l| l.test_adv_accuracy), palette::ADVERSARIAL, false),
            line("Selective, clean", curve(s, |l| l.test_clean_accuracy), palette::CLEAN, true),
            line("Selective, adversarial", curve(s, |l| l.test_adv_accuracy), palette::ADVERSARIAL, true),
        ],
        markers,
        ..Default::default()
    };
    (Figure::Line(plot), epochs_table(&[("regular", g), ("selective", s)]))
}
