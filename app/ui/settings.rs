//! Settings that persist between runs (`settings_file`): files, choices, panel layout.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::selective::Selection;
use crate::engine::analysis::sweep::{Scope, SweepOptions};
use crate::engine::attack::AttackConfig;
use crate::export::figures::builders::Score;
use crate::render::colormap::Colormap;

/// Files kept in the recent lists.
const RECENT: usize = 8;
/// The app evaluates fewer images than the command line (`eval::DEFAULT_EVAL_IMAGES`) by
/// default, so that a slider move answers at once.
pub const INTERACTIVE_IMAGES: usize = 200;

/// The central view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tab {
    #[default]
    Mask,
    Perturbation,
    Curves,
    Scores,
    Dropout,
    Landscape,
    Training,
    Compare,
}

impl Tab {
    pub const ALL: [Tab; 8] = [
        Tab::Mask,
        Tab::Perturbation,
        Tab::Curves,
        Tab::Scores,
        Tab::Dropout,
        Tab::Landscape,
        Tab::Training,
        Tab::Compare,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Tab::Mask => "Mask",
            Tab::Perturbation => "Perturbation",
            Tab::Curves => "Curves",
            Tab::Scores => "Scores",
            Tab::Dropout => "Fragile neurons",
            Tab::Landscape => "Landscape",
            Tab::Training => "Training",
            Tab::Compare => "Compare",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.label().eq_ignore_ascii_case(s) || format!("{t:?}").eq_ignore_ascii_case(s))
    }
}

/// What the mask view paints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewMode {
    #[default]
    Values,
    ClassesClean,
    ClassesAdversarial,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PanelLayout {
    pub tab: Tab,
    pub model_panel: bool,
    pub controls_panel: bool,
}

impl Default for PanelLayout {
    fn default() -> Self {
        Self { tab: Tab::Mask, model_panel: true, controls_panel: true }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The last files opened (None: the embedded default).
    pub model: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub recent_models: Vec<PathBuf>,
    pub recent_data: Vec<PathBuf>,
    pub layer: Option<String>,
    pub filter: FilterKind,
    pub scope: Scope,
    pub threshold: f64,
    /// The attack as the engine takes it. Its eps is the model's default until the user
    /// changes it (`eps_chosen`).
    pub attack: AttackConfig,
    pub eps_chosen: bool,
    /// Images in the evaluation subset (the first N).
    pub subset: usize,
    /// Thresholds per sweep, the global range, tolerances, as the engine takes them.
    pub sweep: SweepOptions,
    pub colormap: Colormap,
    pub shade_removed: bool,
    pub view_mode: ViewMode,
    /// Samples in the perturbation grid.
    pub samples: usize,
    pub train_epochs: usize,
    pub train_images: usize,
    pub selection: Selection,
    /// What the Compare view plots, and which score.
    pub compare_plot: ComparePlot,
    pub compare_score: Score,
    /// Trajectory results added to the Compare view lately.
    pub recent_runs: Vec<PathBuf>,
    pub layout: PanelLayout,
}

/// The Compare view's plots (METHOD.md section 8, "Runs side by side").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComparePlot {
    /// The whole network's score per epoch, a line per run.
    #[default]
    GlobalScores,
    /// Every layer's score per epoch, one plot per run on one scale.
    LayerScores,
    FragileFraction,
    Convergence,
    FragileVsSize,
}

impl ComparePlot {
    pub const ALL: [ComparePlot; 5] = [
        ComparePlot::GlobalScores,
        ComparePlot::LayerScores,
        ComparePlot::FragileFraction,
        ComparePlot::Convergence,
        ComparePlot::FragileVsSize,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ComparePlot::GlobalScores => "Global score per epoch",
            ComparePlot::LayerScores => "Layer scores per run",
            ComparePlot::FragileFraction => "Fragile kernels per epoch",
            ComparePlot::Convergence => "Convergence of the scores",
            ComparePlot::FragileVsSize => "Fragile kernels against size",
        }
    }

    /// Whether the plot follows the chosen score.
    pub fn has_score(self) -> bool {
        matches!(self, ComparePlot::GlobalScores | ComparePlot::LayerScores)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: None,
            data: None,
            recent_models: Vec::new(),
            recent_data: Vec::new(),
            layer: None,
            filter: FilterKind::H1,
            scope: Scope::Local,
            threshold: 0.0,
            attack: AttackConfig::default(),
            eps_chosen: false,
            subset: INTERACTIVE_IMAGES,
            sweep: SweepOptions::default(),
            colormap: Colormap::Diverging,
            shade_removed: true,
            view_mode: ViewMode::Values,
            samples: 12,
            train_epochs: 2,
            train_images: 1000,
            selection: Selection::PerWeight,
            compare_plot: ComparePlot::default(),
            compare_score: Score::default(),
            recent_runs: Vec::new(),
            layout: PanelLayout::default(),
        }
    }
}

impl Settings {
    pub const STORAGE_KEY: &'static str = eframe::APP_KEY;

    pub fn load(storage: Option<&dyn eframe::Storage>) -> Self {
        Self::load_or_explain(storage).0
    }

    /// The settings an earlier version stored in eframe's storage; or the defaults and, when
    /// settings were stored there but cannot be read (a damaged file, or one an incompatible version wrote), what to tell the user.
    pub fn load_or_explain(storage: Option<&dyn eframe::Storage>) -> (Self, Option<String>) {
        let Some(storage) = storage else { return (Self::default(), None) };
        match eframe::get_value(storage, Self::STORAGE_KEY) {
            Some(settings) => (settings, None),
            None if storage.get_string(Self::STORAGE_KEY).is_some() => (
                Self::default(),
                Some(
                    "the stored settings could not be read (a damaged file, or one written by another \
                     version of the app): starting with the defaults, which replace them on exit"
                        .into(),
                ),
            ),
            None => (Self::default(), None),
        }
    }

    pub fn remember_model(&mut self, path: &Path) {
        self.model = Some(path.to_path_buf());
        push_recent(&mut self.recent_models, path);
    }

    pub fn remember_run(&mut self, path: &Path) {
        push_recent(&mut self.recent_runs, path);
    }

    pub fn remember_data(&mut self, path: &Path) {
        self.data = Some(path.to_path_buf());
        push_recent(&mut self.recent_data, path);
    }
}

fn push_recent(list: &mut Vec<PathBuf>, path: &Path) {
    list.retain(|p| p != path);
    list.insert(0, path.to_path_buf());
    list.truncate(RECENT);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_tolerate_missing_fields() {
        let mut s = Settings::default();
        s.remember_model(Path::new("/a.pth"));
        s.remember_model(Path::new("/b.pth"));
        s.remember_model(Path::new("/a.pth"));
        assert_eq!(s.recent_models, vec![PathBuf::from("/a.pth"), PathBuf::from("/b.pth")]);
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&text).unwrap(), s);
        let partial: Settings = serde_json::from_str(r#"{"threshold": 0.25}"#).unwrap();
        assert_eq!((partial.threshold, partial.subset), (0.25, 200));
    }

    /// eframe's storage as the app finds it at start.
    struct Stored(Option<String>);

    impl eframe::Storage for Stored {
        fn get_string(&self, _key: &str) -> Option<String> {
            self.0.clone()
        }
        fn set_string(&mut self, _key: &str, value: String) {
            self.0 = Some(value);
        }
        fn remove_string(&mut self, _key: &str) {
            self.0 = None;
        }
        fn flush(&mut self) {}
    }

    #[test]
    fn damaged_settings_start_the_defaults_and_say_so() {
        let mut s = Settings::default();
        s.remember_model(Path::new("/a.pth"));
        let mut good = Stored(None);
        eframe::set_value(&mut good, Settings::STORAGE_KEY, &s);
        assert_eq!(Settings::load_or_explain(Some(&good)), (s, None));
        assert_eq!(Settings::load_or_explain(Some(&Stored(None))), (Settings::default(), None));
        assert_eq!(Settings::load_or_explain(None), (Settings::default(), None));
        for damaged in ["(model: Some(", "\u{0}\u{1}garbage", "(threshold: \"not a number\")"] {
            let (loaded, note) = Settings::load_or_explain(Some(&Stored(Some(damaged.into()))));
            assert_eq!(loaded, Settings::default());
            assert!(note.is_some_and(|n| n.contains("could not be read")), "{damaged}");
        }
    }
}
