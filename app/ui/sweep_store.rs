//! Sweep records as they stream in, kept per (layer or global, filter) for the curves,
//! the scores and the compression view.

use crate::engine::analysis::filter::FilterKind;
use crate::engine::analysis::scores::step_class;
use crate::engine::analysis::sweep::{Baseline, LayerClass, SweepConfig, SweepEvent, SweepRecord, SweepResult};

#[derive(Debug, Clone, PartialEq)]
pub struct StepPoint {
    pub alpha: f64,
    pub removed: usize,
    pub clean: usize,
    pub adv: usize,
}

/// One (layer, filter) sweep: its thresholds, the steps done, and the full record once the
/// sweep that made it ended (scores exist only when every step is done).
#[derive(Debug, Clone)]
pub struct LiveRecord {
    pub layer: String,
    pub filter: FilterKind,
    pub alphas: Vec<f64>,
    pub n: usize,
    pub steps: Vec<StepPoint>,
    pub done: Option<SweepRecord>,
}

impl LiveRecord {
    pub fn complete(&self) -> bool {
        self.steps.len() == self.alphas.len() && !self.alphas.is_empty()
    }

    /// Fraction retained at each step done.
    pub fn rho(&self) -> Vec<f64> {
        self.steps.iter().map(|s| 1.0 - s.removed as f64 / self.n.max(1) as f64).collect()
    }
}

#[derive(Debug, Default)]
pub struct SweepStore {
    pub baseline: Option<Baseline>,
    pub records: Vec<LiveRecord>,
    pub layer_classes: Vec<LayerClass>,
    /// Identifies the attack, subset and steps the records were made with.
    pub config_key: String,
    pub outside_range: Option<usize>,
    /// The latest sweep's config (for exports).
    pub config: Option<SweepConfig>,
}

impl SweepStore {
    /// Starts a sweep: records made under another configuration are dropped.
    pub fn begin(&mut self, config_key: &str, config: &SweepConfig) {
        if self.config_key != config_key {
            *self = Self { config_key: config_key.to_string(), ..Self::default() };
        }
        self.config = Some(config.clone());
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }

    pub fn record(&self, layer: &str, filter: FilterKind) -> Option<&LiveRecord> {
        self.records.iter().find(|r| r.layer == layer && r.filter == filter)
    }

    pub fn on_event(&mut self, e: SweepEvent) {
        match e {
            SweepEvent::Baseline(b) => self.baseline = Some(b),
            SweepEvent::Begin { layer, filter, alphas, n } => {
                self.records.retain(|r| !(r.layer == layer && r.filter == filter));
                self.records.push(LiveRecord { layer, filter, alphas, n, steps: Vec::new(), done: None });
            }
            SweepEvent::Step { layer, filter, alpha, removed, clean_correct, adv_correct, .. } => {
                if let Some(r) = self.records.iter_mut().find(|r| r.layer == layer && r.filter == filter) {
                    r.steps.push(StepPoint { alpha, removed, clean: clean_correct, adv: adv_correct });
                }
            }
        }
    }

    pub fn on_done(&mut self, result: &SweepResult) {
        self.baseline = Some(result.baseline);
        for rec in &result.records {
            if let Some(r) = self.records.iter_mut().find(|r| r.layer == rec.layer && r.filter == rec.filter) {
                r.done = Some(rec.clone());
            }
        }
        if result.outside_range.is_some() {
            self.outside_range = result.outside_range;
        }
        for c in &result.layer_classes {
            self.layer_classes.retain(|x| x.layer != c.layer);
            self.layer_classes.push(c.clone());
        }
        self.layer_classes.sort_by(|a, b| a.mean_s_adv.total_cmp(&b.mean_s_adv));
    }

    /// Everything streamed so far as a sweep result (records still running hold the steps
    /// done, without scores), for the figure builders.
    pub fn as_result(&self) -> Option<SweepResult> {
        let (config, baseline) = (self.config.clone()?, self.baseline?);
        let records = self
            .records
            .iter()
            .map(|r| r.done.clone().unwrap_or_else(|| partial(r, &baseline, config.options.delta)))
            .collect();
        Some(SweepResult {
            config,
            baseline,
            records,
            layer_classes: self.layer_classes.clone(),
            outside_range: self.outside_range,
            cancelled: false,
        })
    }

    /// Layer class from the complete records, for the badge in the layer list.
    pub fn layer_class(&self, layer: &str) -> Option<&LayerClass> {
        self.layer_classes.iter().find(|c| c.layer == layer)
    }
}

/// A record of the steps streamed so far.
fn partial(r: &LiveRecord, base: &Baseline, delta: f64) -> SweepRecord {
    let s = base.samples.max(1) as f64;
    let col = |f: &dyn Fn(&StepPoint) -> usize| r.steps.iter().map(f).collect::<Vec<usize>>();
    let (clean, adv) = (col(&|p| p.clean), col(&|p| p.adv));
    SweepRecord {
        layer: r.layer.clone(),
        filter: r.filter,
        alphas: r.alphas.clone(),
        width: 0.0,
        n: r.n,
        removed: col(&|p| p.removed),
        clean_accuracy: clean.iter().map(|&c| c as f64 / s).collect(),
        adv_accuracy: adv.iter().map(|&c| c as f64 / s).collect(),
        rho: r.rho(),
        s_clean: None,
        s_adv: None,
        s_diff: None,
        step_class_clean: clean.iter().map(|&c| step_class(c, base.clean_correct, delta)).collect(),
        step_class_adv: adv.iter().map(|&c| step_class(c, base.adv_correct, delta)).collect(),
        reused: vec![false; r.steps.len()],
        warnings: Vec::new(),
        clean_correct: clean,
        adv_correct: adv,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_stream_into_their_record_and_a_new_begin_replaces_it() {
        let mut s = SweepStore::default();
        let cfg = SweepConfig::new(crate::engine::analysis::sweep::Scope::Local, Default::default());
        s.begin("k", &cfg);
        let begin =
            || SweepEvent::Begin { layer: "l".into(), filter: FilterKind::H1, alphas: vec![0.0, 0.5, 1.0], n: 4 };
        s.on_event(begin());
        let step = |i: usize| SweepEvent::Step {
            layer: "l".into(),
            filter: FilterKind::H1,
            index: i,
            alpha: i as f64 / 2.0,
            removed: i * 2,
            clean_correct: 10 - i,
            adv_correct: 5,
        };
        s.on_event(step(0));
        s.on_event(step(1));
        let r = s.record("l", FilterKind::H1).unwrap();
        assert_eq!((r.steps.len(), r.complete(), r.rho()), (2, false, vec![1.0, 0.5]));
        s.on_event(begin());
        assert!(s.record("l", FilterKind::H1).unwrap().steps.is_empty());
        s.begin("other", &cfg);
        assert!(s.records.is_empty());
    }
}
