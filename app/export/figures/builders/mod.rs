//! Engine results as figures: each builder returns the `Figure` and the `Table` of exactly
//! the data it plots, so the GUI draws the same description that `export` writes.

mod compare;
mod dropout;
mod landscape;
mod samples;
mod sweep;
mod training;
mod trajectory;
mod weights;

pub use compare::{
    align, compare_fragile_fraction, compare_fragile_vs_size, compare_global_scores, compare_score_change, per_run,
};
pub use dropout::{dropout_accuracy, dropout_targeting};
pub use landscape::{landscape_accuracy, landscape_classes, landscape_influential};
pub use samples::{PerturbationSample, accuracy_vs_eps, perturbation_grid};
pub use sweep::{compression, layer_scores, layers as sweep_layers, sweep_curves};
pub use training::{selective_curves, training_curves};
pub use trajectory::{Score, trajectory_compression, trajectory_kernels, trajectory_scores, trajectory_targeting};
pub use weights::{WeightView, weight_heatmap};

use serde::{Deserialize, Serialize};

use super::Figure;
use super::sentence_case;
use crate::engine::analysis::scores::Class;
use crate::export::tables::Table;
use crate::render::palette;

/// A figure and the data it plots.
pub type Built = (Figure, Table);

/// Which accuracy a view follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum View {
    #[default]
    Clean,
    Adversarial,
}

impl View {
    pub const BOTH: [View; 2] = [View::Clean, View::Adversarial];

    pub fn name(self) -> &'static str {
        match self {
            View::Clean => "clean",
            View::Adversarial => "adversarial",
        }
    }

    /// Short form for file names.
    pub fn short(self) -> &'static str {
        match self {
            View::Clean => "clean",
            View::Adversarial => "adv",
        }
    }
}

/// Category entries of the three classes in `Class::index` order, for class maps.
pub fn class_categories() -> Vec<(String, [u8; 3])> {
    Class::ALL.iter().map(|&c| (sentence_case(c.name()), palette::class(c))).collect()
}

/// A CSV cell of an optional number (empty when absent).
fn cell(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// "a, b and c" for error messages listing what a result holds.
fn listing(items: &[String]) -> String {
    match items {
        [] => "nothing".into(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}
