//! A study on real data, written to docs/STUDY.md with its figures.
//!
//!     cargo run --release --example study -- [--data ../shared/data] [--out docs/study] [--only mnist/cnn]
//!
//! On MNIST and Fashion-MNIST it trains the small CNN and ResNet-18 (torchvision stem, one
//! input channel) with a checkpoint per epoch, characterises them with local sweeps,
//! measures nodal dropout and adversarial targeting at every checkpoint, and runs
//! selective against regular training from the same checkpoint. Every stage saves its
//! results as JSON beside the figures and is skipped when they exist, so an interrupted
//! run resumes; delete a folder to recompute it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use fragility_explorer::engine::analysis::dropout::{self, DropoutConfig, DropoutResult, fragile_at_every};
use fragility_explorer::engine::analysis::filter::FilterKind;
use fragility_explorer::engine::analysis::landscape::{self, CheckpointEntry, LandscapeResult};
use fragility_explorer::engine::analysis::scores::Class;
use fragility_explorer::engine::analysis::selective::{self, Selection, SelectiveConfig, SelectiveResult};
use fragility_explorer::engine::analysis::sweep::{Scope, SweepConfig, SweepResult};
use fragility_explorer::engine::attack::AttackConfig;
use fragility_explorer::engine::card::{Architecture, LayerSpec, ModelCard, Normalize, Pair, Stem};
use fragility_explorer::engine::data::{self, DataSpec, Dataset, Known, Split, Subset};
use fragility_explorer::engine::model::init::initial_state;
use fragility_explorer::engine::model::{CardOrigin, Network};
use fragility_explorer::engine::progress::{Ctrl, Progress, StopFlag};
use fragility_explorer::engine::train::{self, EpochLog, TrainConfig, TrainResult, Trainer};
use fragility_explorer::export::figures::builders::{self, Built, View};
use fragility_explorer::export::figures::render_png;
use fragility_explorer::export::tables::write_json;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What the study runs for one model on one dataset.
struct Spec {
    model: &'static str,
    epochs: usize,
    /// Test images of every sweep (the evaluation subset).
    sweep_images: usize,
    /// Sweep every checkpoint (the landscape) or only the last.
    landscape: bool,
    /// Selective training starts from this epoch and runs to `epochs + extra`.
    selective_from: usize,
    selective_extra: usize,
}

const SPECS: [Spec; 2] = [
    Spec { model: "cnn", epochs: 3, sweep_images: 1000, landscape: true, selective_from: 1, selective_extra: 1 },
    Spec { model: "resnet18", epochs: 2, sweep_images: 200, landscape: false, selective_from: 1, selective_extra: 0 },
];

const EPS: f64 = 0.3;
const SEED: u64 = 0;

fn card(model: &str, known: Known) -> ModelCard {
    let conv = |key: &str, out| LayerSpec::Conv2d {
        key: key.into(),
        out_channels: Some(out),
        kernel: Some(Pair::One(3)),
        bias: true,
        stride: Pair::One(1),
        padding: Pair::One(1),
        dilation: Pair::One(1),
        groups: 1,
    };
    let pool = || LayerSpec::Maxpool2d { kernel: Pair::One(2), stride: None, padding: Pair::One(0), ceil_mode: false };
    let (architecture, layers, stem) = match model {
        "cnn" => (
            Architecture::Sequential,
            vec![
                conv("features.0", 32),
                LayerSpec::Relu {},
                pool(),
                conv("features.3", 64),
                LayerSpec::Relu {},
                pool(),
                LayerSpec::Flatten {},
                LayerSpec::Linear { key: "classifier.0".into(), out_features: Some(128), bias: true },
                LayerSpec::Relu {},
                LayerSpec::Linear { key: "classifier.2".into(), out_features: None, bias: true },
            ],
            None,
        ),
        _ => (Architecture::ResNet18, Vec::new(), Some(Stem::Torchvision)),
    };
    ModelCard {
        architecture,
        input: [1, 28, 28],
        normalize: Some(known.normalize()),
        classes: Some(known.classes()),
        dataset: Some(known.name().into()),
        eps: None,
        layers,
        stem,
        training: None,
        activation: None,
        inner_normalize: None,
    }
}

/// Where the through-training section begins: scripts/through_training_report.py writes what
/// follows it, and this study keeps it when it rewrites the rest.
const THROUGH_TRAINING: &str = "<!-- through-training: written by scripts/through_training_report.py -->";

/// The through-training section of the current STUDY.md (empty when it has none).
fn kept_section(study_md: &Path) -> String {
    let text = std::fs::read_to_string(study_md).unwrap_or_default();
    text.find(THROUGH_TRAINING).map_or_else(String::new, |at| format!("\n{}", &text[at..]))
}

/// Progress on stderr, one line per stage, with the elapsed time at the end.
struct Log;
impl Progress for Log {
    fn start(&self, stage: &str, total: usize) {
        eprintln!("    {stage} ({total})");
    }
}

/// Loads `path` if a previous run wrote it, else computes and writes it, recording the
/// computation's wall time in `timings.json` beside it.
fn cached<T: Serialize + DeserializeOwned>(path: &Path, make: impl FnOnce() -> Result<T>) -> Result<T> {
    if path.is_file() {
        let text = std::fs::read_to_string(path)?;
        return serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()));
    }
    let t = Instant::now();
    let value = make()?;
    write_json(path, &value)?;
    let seconds = t.elapsed().as_secs_f64();
    let timings_path = path.with_file_name("timings.json");
    let mut timings: std::collections::BTreeMap<String, f64> =
        std::fs::read_to_string(&timings_path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let stage = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    timings.insert(stage, seconds);
    write_json(&timings_path, &timings)?;
    eprintln!("    wrote {} ({seconds:.0} s)", path.display());
    Ok(value)
}

fn timings(dir: &Path) -> std::collections::BTreeMap<String, f64> {
    std::fs::read_to_string(dir.join("timings.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn save_png(dir: &Path, name: &str, built: Result<Built>) -> Result<String> {
    let (figure, table) = built?;
    std::fs::create_dir_all(dir)?;
    let png = render_png(&figure)?;
    fragility_explorer::engine::fsutil::write_atomic(&dir.join(format!("{name}.png")), &png)?;
    table.write(&dir.join(format!("{name}.csv")))?;
    Ok(format!("{name}.png"))
}

struct Run<'a> {
    /// A smoke run: tiny subsets and 5 thresholds, to check the pipeline end to end.
    quick: bool,
    known: Known,
    spec: &'a Spec,
    dir: PathBuf,
    train_data: Dataset,
    test: Dataset,
    eval: Dataset,
    norm: Normalize,
    ctrl: Ctrl<'a>,
}

impl Run<'_> {
    fn train(&self) -> Result<TrainResult> {
        cached(&self.dir.join("train.json"), || {
            let card = card(self.spec.model, self.known);
            let state = initial_state(&card, 10, SEED, &Device::Cpu)?;
            let net = Network::build(state, Some((card, CardOrigin::Given)), &Device::Cpu)?;
            let cfg = TrainConfig {
                epochs: self.spec.epochs,
                every: 1,
                seed: SEED,
                batch: 100,
                lr: 1e-3,
                test_attack: Some(AttackConfig::fgsm(EPS)),
            };
            let mut trainer = Trainer::new(&net, cfg)?;
            Ok(train::train(
                &mut trainer,
                &self.train_data,
                Some(&self.test),
                &self.norm,
                &self.dir.join("checkpoints"),
                self.ctrl,
                &|l| {
                    eprintln!(
                        "    epoch {}: loss {:.4}, test clean {:?}, adversarial {:?}",
                        l.epoch, l.train_loss, l.test_clean_accuracy, l.test_adv_accuracy
                    )
                },
            )?)
        })
    }

    fn checkpoints(&self) -> Result<Vec<CheckpointEntry>> {
        Ok(landscape::list_checkpoints(&self.dir.join("checkpoints"), &Device::Cpu)?)
    }

    fn sweep_config(&self) -> SweepConfig {
        let mut config = SweepConfig { batch: 200, ..SweepConfig::new(Scope::Local, AttackConfig::fgsm(EPS)) };
        if self.quick {
            config.options.steps = 5;
        }
        config
    }

    fn landscape(&self, checkpoints: &[CheckpointEntry]) -> Result<LandscapeResult> {
        let chosen: Vec<CheckpointEntry> =
            if self.spec.landscape { checkpoints.to_vec() } else { checkpoints.last().cloned().into_iter().collect() };
        cached(&self.dir.join("landscape.json"), || {
            Ok(landscape::run(&chosen, &self.eval, &self.sweep_config(), &Device::Cpu, self.ctrl, &|_, _| {})?)
        })
    }

    fn dropout(&self, checkpoints: &[CheckpointEntry]) -> Result<Vec<DropoutResult>> {
        cached(&self.dir.join("dropout.json"), || {
            checkpoints
                .iter()
                .map(|c| {
                    let net = Network::load(&c.path, None, &Device::Cpu)?;
                    let cfg = DropoutConfig {
                        layer: None,
                        attack: AttackConfig::fgsm(EPS),
                        bn: Default::default(),
                        batch: 200,
                    };
                    Ok(dropout::run(&net, &self.eval, &self.norm, &cfg, self.ctrl)?)
                })
                .collect()
        })
    }

    fn selective(&self, checkpoints: &[CheckpointEntry]) -> Result<SelectiveResult> {
        let start = checkpoints
            .iter()
            .find(|c| c.epoch == self.spec.selective_from)
            .context("no checkpoint at the selective start epoch")?;
        cached(&self.dir.join("selective.json"), || {
            let cfg = SelectiveConfig {
                train: TrainConfig {
                    epochs: self.spec.epochs + self.spec.selective_extra,
                    every: 1,
                    seed: SEED,
                    batch: 100,
                    lr: 1e-3,
                    test_attack: Some(AttackConfig::fgsm(EPS)),
                },
                selection: Selection::PerWeight,
                sweep: self.sweep_config(),
            };
            Ok(selective::run(
                &start.path,
                &self.train_data,
                &self.test,
                &self.eval,
                &self.norm,
                &cfg,
                &self.dir.join("selective"),
                &Device::Cpu,
                self.ctrl,
                &|arm, l| {
                    eprintln!(
                        "    {arm} epoch {}: clean {:?}, adversarial {:?}",
                        l.epoch, l.test_clean_accuracy, l.test_adv_accuracy
                    )
                },
            )?)
        })
    }
}

/// Everything measured for one model on one dataset.
struct Outcome {
    known: Known,
    model: &'static str,
    parameters: usize,
    /// Epochs of the checkpoints (one dropout result each).
    epochs: Vec<usize>,
    /// Wall seconds per stage, from the run that computed it.
    timings: std::collections::BTreeMap<String, f64>,
    train: TrainResult,
    landscape: LandscapeResult,
    dropout: Vec<DropoutResult>,
    selective: SelectiveResult,
    figures: Vec<(String, String)>,
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.2} %", 100.0 * v))
}

fn final_sweep(o: &Outcome) -> &SweepResult {
    o.landscape.sweeps.last().expect("a landscape has at least one sweep")
}

impl Outcome {
    /// (layer, filter) sweeps of the last checkpoint where the attack makes filtering hurt more.
    fn s_diff_negative(&self) -> usize {
        final_sweep(self).records.iter().filter(|x| x.s_diff.is_some_and(|d| d < 0.0)).count()
    }

    /// Checkpoints at which the attack targets fragile kernels.
    fn targeted(&self) -> usize {
        self.dropout.iter().filter(|d| d.targeted).count()
    }

    /// Regular and selective training logs of the same epochs.
    fn selective_pairs(&self) -> impl Iterator<Item = (&EpochLog, &EpochLog)> {
        self.selective.regular.iter().zip(&self.selective.selective)
    }

    /// Matched epochs in which selective training has the higher FGSM accuracy.
    fn selective_better(&self) -> usize {
        self.selective_pairs().filter(|(g, s)| s.test_adv_accuracy > g.test_adv_accuracy).count()
    }
}

/// The papers' claims against what each model shows, counted from the results below.
fn findings(w: &mut String, outcomes: &[Outcome]) {
    let _ = writeln!(w, "\n## Findings\n");
    let _ = writeln!(
        w,
        "Each cell is counted from the sections below. The papers' claims: attacks make filtering hurt \
         more (S_diff < 0); the attack targets fragile kernels (d_F > d_N); freezing the fragile weights \
         (selective backpropagation) gives higher adversarial accuracy than regular training.\n"
    );
    let _ = writeln!(
        w,
        "| dataset | model | FGSM accuracy before filtering (sweep images) | fragile layers | S_diff < 0 | targets fragile kernels | \
         selective beats regular on FGSM |\n|---|---|---|---|---|---|---|"
    );
    let mut floors = Vec::new();
    for o in outcomes {
        let r = final_sweep(o);
        let adv_base = r.baseline.adv_correct as f64 / r.baseline.samples.max(1) as f64;
        if adv_base < 0.15 {
            floors.push(format!("{} {} ({:.0} %)", o.known.name(), o.model, 100.0 * adv_base));
        }
        let fragile: Vec<&str> =
            r.layer_classes.iter().filter(|c| c.class == Class::Fragile).map(|c| c.layer.as_str()).collect();
        let (negative, targeted, better) = (o.s_diff_negative(), o.targeted(), o.selective_better());
        let pairs = o.selective_pairs().count();
        let last_gap =
            o.selective_pairs().last().and_then(|(g, s)| Some(100.0 * (s.test_adv_accuracy? - g.test_adv_accuracy?)));
        let _ = writeln!(
            w,
            "| {} | {} | {:.1} % | {} of {}{} | {negative} of {} | {targeted} of {} checkpoints | {better} of {} epochs{} |",
            o.known.name(),
            o.model,
            100.0 * adv_base,
            fragile.len(),
            r.layer_classes.len(),
            if fragile.is_empty() { String::new() } else { format!(": {}", fragile.join(", ")) },
            r.records.len(),
            o.dropout.len(),
            pairs,
            last_gap.map_or(String::new(), |g| format!(" ({g:+.1} points at the last)"))
        );
    }
    if !floors.is_empty() {
        let _ = writeln!(
            w,
            "\nFGSM at eps {EPS} leaves little to lose in {}: filtering can mostly only raise adversarial \
             accuracy there, so S_adv is positive and layers read antifragile. The claims would be better tested on \
             these models with a smaller eps.",
            floors.join(", ")
        );
    }
}

fn report(outcomes: &[Outcome], pending: &[String], args: &str) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# A study of fragility on MNIST and Fashion-MNIST\n");
    if !pending.is_empty() {
        let _ = writeln!(
            w,
            "**Incomplete:** the study has not yet finished {}. The sections below cover only the \
             models it finished; the same command resumes from the cached stages.\n",
            pending.join(", ")
        );
    }
    let _ = writeln!(
        w,
        "Measured by `cargo run --release --example study{args}` (examples/study.rs) on this project's \
         2-core CPU machine. Every number below comes from the JSON files in \
         `docs/study/<dataset>/<model>/`, which the same command writes (delete a folder to recompute it); \
         nothing is typed by hand. Wall times of each stage are at the end.\n"
    );
    let _ = writeln!(w, "## Setup\n");
    let _ = writeln!(
        w,
        "- Data: the full MNIST and Fashion-MNIST training sets (60,000 images) for training; the first \
           1,000 test images for the per-epoch test accuracies; the first N test images (below) for sweeps, \
           nodal dropout and the characterisation of selective training.\n\
         - Models: the small CNN (conv 32, conv 64, linear 128, linear 10; 421,642 parameters) and \
           ResNet-18 with the torchvision stem and one input channel (11.2 M parameters), both trained \
           from scratch: Adam, learning rate 1e-3, batch 100, seed {SEED}, no augmentation, a checkpoint \
           per epoch.\n\
         - Attack: FGSM, eps {EPS} in normalised units (docs/METHOD.md defaults for both datasets), the exact \
           gradient direction, regenerated against every filtered network; batch norm with running \
           statistics.\n\
         - Sweeps: local, h1, h2 and h3, 25 thresholds each, delta 0.01, tau 0.02."
    );
    for spec in &SPECS {
        let _ = writeln!(
            w,
            "- {}: {} epochs; sweeps on {} test images{}; selective training from epoch {} to epoch {}.",
            spec.model,
            spec.epochs,
            spec.sweep_images,
            if spec.landscape {
                " at every checkpoint (the learning landscape)"
            } else {
                " at the last checkpoint only (a ResNet-18 sweep is 1,575 steps)"
            },
            spec.selective_from,
            spec.epochs + spec.selective_extra
        );
    }
    findings(w, outcomes);
    let _ = writeln!(w, "\n## Training\n");
    let _ = writeln!(w, "| dataset | model | epoch | train loss | test clean | test FGSM |\n|---|---|---|---|---|---|");
    for o in outcomes {
        for l in &o.train.logs {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {:.4} | {} | {} |",
                o.known.name(),
                o.model,
                l.epoch,
                l.train_loss,
                pct(l.test_clean_accuracy),
                pct(l.test_adv_accuracy)
            );
        }
    }
    let _ = writeln!(w, "\n## Characterisation of the last checkpoint\n");
    let _ = writeln!(
        w,
        "Scores are Simpson integrals of normalised accuracy minus the fraction of weights kept (docs/METHOD.md \
         section 5): positive means the layer keeps more accuracy than weights, negative that it loses \
         accuracy faster. A layer is fragile when its mean S_adv over h1, h2 and h3 is below -0.02.\n"
    );
    for o in outcomes {
        let r = final_sweep(o);
        let _ = writeln!(
            w,
            "### {} {} (epoch {}, {} parameters)\n\nBaseline on {} images: clean {}, FGSM {}.\n",
            o.known.name(),
            o.model,
            o.landscape.checkpoints.last().map_or(0, |c| c.epoch),
            o.parameters,
            r.baseline.samples,
            r.baseline.clean_correct,
            r.baseline.adv_correct
        );
        let _ = writeln!(
            w,
            "| layer | S_clean h1 / h2 / h3 | S_adv h1 / h2 / h3 | S_diff h1 / h2 / h3 | class |\n|---|---|---|---|---|"
        );
        for layer in builders::sweep_layers(r) {
            let get = |f: FilterKind, k: usize| {
                r.record(&layer, f)
                    .and_then(|x| [x.s_clean, x.s_adv, x.s_diff][k])
                    .map_or("-".to_string(), |v| format!("{v:+.3}"))
            };
            let three = |k| FilterKind::PAPER.iter().map(|&f| get(f, k)).collect::<Vec<_>>().join(" / ");
            let class = r.layer_classes.iter().find(|c| c.layer == layer).map_or("-", |c| c.class.name());
            let _ = writeln!(w, "| {layer} | {} | {} | {} | {class} |", three(0), three(1), three(2));
        }
        let _ = writeln!(
            w,
            "\nS_diff < 0 (the attack makes filtering hurt more) in {} of {} (layer, filter) sweeps.\n",
            o.s_diff_negative(),
            r.records.len()
        );
        for (title, file) in o.figures.iter().filter(|(t, _)| t.starts_with("char")) {
            let _ = writeln!(w, "![{}](study/{}/{}/{file})\n", title, o.known.name(), o.model);
        }
    }
    let _ = writeln!(w, "## The learning landscape (small CNN)\n");
    let _ = writeln!(
        w,
        "Steps of each layer's local sweeps that are fragile (accuracy more than 1 % below the unfiltered \
         network) for any of h1, h2, h3, out of 25, at each checkpoint:\n"
    );
    for o in outcomes.iter().filter(|o| o.landscape.checkpoints.len() > 1) {
        let epochs: Vec<String> = o.landscape.checkpoints.iter().map(|c| format!("epoch {}", c.epoch)).collect();
        let _ = writeln!(
            w,
            "**{} {}**\n\n| layer | view | {} |\n|---|---|{}",
            o.known.name(),
            o.model,
            epochs.join(" | "),
            "---|".repeat(epochs.len())
        );
        for c in &o.landscape.combined {
            for (view, map) in [("clean", &c.influential_clean), ("FGSM", &c.influential_adv)] {
                let cells: Vec<String> = map.iter().map(|row| row.iter().filter(|b| **b).count().to_string()).collect();
                let _ = writeln!(w, "| {} | {view} | {} |", c.layer, cells.join(" | "));
            }
        }
        let _ = writeln!(w);
        for (title, file) in o.figures.iter().filter(|(t, _)| t.starts_with("landscape")) {
            let _ = writeln!(w, "![{}](study/{}/{}/{file})\n", title, o.known.name(), o.model);
        }
    }
    let _ = writeln!(w, "## Fragile neurons and adversarial targeting\n");
    let _ = writeln!(
        w,
        "Nodal dropout of the first convolution (METHOD.md section 7): each kernel removed in turn. Fragile \
         kernels cost more accuracy than the average; d_F and d_N are the mean absolute change of fragile \
         and other kernels' raw outputs under FGSM. The papers report that attacks target fragile \
         kernels (d_F > d_N). Null kernels are those whose removal costs nothing (A_k at or above the \
         unfiltered accuracy); when removing a kernel improves accuracy on average, the mean lies above \
         the baseline and a kernel can be both fragile and null.\n"
    );
    let _ = writeln!(
        w,
        "| dataset | model | epoch | kernels | fragile | null | d_F | d_N | targeted |\n|---|---|---|---|---|---|---|---|---|"
    );
    for o in outcomes {
        for (c, d) in o.epochs.iter().zip(&o.dropout) {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {:.4} | {:.4} | {} |",
                o.known.name(),
                o.model,
                c,
                d.accuracy_per_kernel.len(),
                d.fragile.len(),
                d.null.len(),
                d.d_fragile.unwrap_or(f64::NAN),
                d.d_other.unwrap_or(f64::NAN),
                if d.targeted { "yes" } else { "no" }
            );
        }
    }
    let targeted: usize = outcomes.iter().map(Outcome::targeted).sum();
    let checkpoints: usize = outcomes.iter().map(|o| o.dropout.len()).sum();
    let _ = writeln!(w, "\nThe attack targets fragile kernels in {targeted} of {checkpoints} checkpoints.\n");
    let _ = writeln!(w, "Kernels fragile at every checkpoint:\n");
    for o in outcomes {
        let _ = writeln!(w, "- {} {}: {:?}", o.known.name(), o.model, fragile_at_every(&o.dropout));
    }
    let _ = writeln!(w, "\n## Selective backpropagation against regular training\n");
    let _ = writeln!(
        w,
        "From the same checkpoint, seed and data order, the regular arm trains every weight; the selective \
         arm freezes the weights characterised fragile on adversarial accuracy (per weight, re-characterised \
         every epoch). Test accuracies on the first 1,000 test images:\n"
    );
    let _ = writeln!(
        w,
        "| dataset | model | epoch | regular clean | regular FGSM | selective clean | selective FGSM | frozen |\n|---|---|---|---|---|---|---|---|"
    );
    for o in outcomes {
        for (g, s) in o.selective_pairs() {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} % |",
                o.known.name(),
                o.model,
                g.epoch,
                pct(g.test_clean_accuracy),
                pct(g.test_adv_accuracy),
                pct(s.test_clean_accuracy),
                pct(s.test_adv_accuracy),
                100.0 * s.frozen_fraction
            );
        }
    }
    let _ = writeln!(
        w,
        "\nSelective training ends with higher FGSM accuracy than regular training in {} of {} matched epochs.\n",
        outcomes.iter().map(Outcome::selective_better).sum::<usize>(),
        outcomes.iter().map(|o| o.selective_pairs().count()).sum::<usize>()
    );
    let _ = writeln!(
        w,
        "## Compute time\n\nWall-clock seconds of each stage on the shared 2-core machine, upper bounds: the \
         study was at times paused (SIGSTOP) while benchmarks ran, and the stages count those pauses.\n\n\
         | dataset | model | stage | wall seconds |\n|---|---|---|---|"
    );
    for o in outcomes {
        for (stage, secs) in &o.timings {
            let _ = writeln!(w, "| {} | {} | {stage} | {secs:.0} |", o.known.name(), o.model);
        }
    }
    s
}

fn figures(o: &Outcome, dir: &Path) -> Result<Vec<(String, String)>> {
    let r = final_sweep(o);
    let mut out = Vec::new();
    out.push(("char: layer scores".into(), save_png(dir, "scores", builders::layer_scores(r, None))?));
    if let Some(first) = builders::sweep_layers(r).first() {
        out.push((
            format!("char: sweep of {first}, h3"),
            save_png(dir, "sweep-first-h3", builders::sweep_curves(r, first, FilterKind::H3, None))?,
        ));
    }
    if o.landscape.checkpoints.len() > 1
        && let Some(c) = o.landscape.combined.first()
    {
        out.push((
            format!("landscape: influential steps of {}, FGSM", c.layer),
            save_png(
                dir,
                "landscape-influential",
                builders::landscape_influential(&o.landscape, &c.layer, View::Adversarial),
            )?,
        ));
    }
    if let Some(d) = o.dropout.last() {
        out.push(("dropout: last checkpoint".into(), save_png(dir, "dropout", Ok(builders::dropout_accuracy(d)))?));
    }
    out.push(("selective".into(), save_png(dir, "selective", Ok(builders::selective_curves(&o.selective)))?));
    Ok(out)
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<()> {
    fragility_explorer::tune_runtime();
    let args: Vec<String> = std::env::args().collect();
    let root = PathBuf::from(arg(&args, "--data").unwrap_or_else(|| "../shared/data".into()));
    let out = PathBuf::from(arg(&args, "--out").unwrap_or_else(|| "docs/study".into()));
    let only = arg(&args, "--only");
    let quick = args.iter().any(|a| a == "--quick");
    let started = Instant::now();
    let stop = StopFlag::new();
    let ctrl = Ctrl { progress: &Log, stop: &stop };
    let shown_args: String = args.iter().skip(1).map(|a| format!(" {a}")).collect();
    let shown_args = if shown_args.is_empty() { String::new() } else { format!(" --{shown_args}") };
    let datasets = [(Known::Mnist, "mnist"), (Known::FashionMnist, "fashion-mnist")];
    // Both small CNNs first: the ResNets take most of the time, and the report is rewritten
    // after every model so an interrupted study still documents what it finished.
    let mut pending: Vec<String> = SPECS
        .iter()
        .flat_map(|spec| datasets.iter().map(move |(known, _)| format!("{}/{}", known.name(), spec.model)))
        .filter(|key| only.as_ref().is_none_or(|o| o == key))
        .collect();
    let mut outcomes = Vec::new();
    for spec in &SPECS {
        for (known, folder) in datasets {
            let key = format!("{}/{}", known.name(), spec.model);
            if only.as_ref().is_some_and(|o| *o != key) {
                continue;
            }
            let train_subset = if quick { Subset::First { n: 1000 } } else { Subset::All };
            let train_data = data::load(&DataSpec {
                split: Split::Train,
                subset: train_subset,
                ..DataSpec::new(root.join(folder))
            })?;
            let test_all = data::load(&DataSpec::new(root.join(folder)))?;
            eprintln!("== {key}");
            let dir = out.join(known.name()).join(spec.model);
            std::fs::create_dir_all(&dir)?;
            let sweep_images = if quick { 50 } else { spec.sweep_images };
            let run = Run {
                quick,
                known,
                spec,
                dir: dir.clone(),
                train_data: train_data.clone(),
                test: test_all.clone().subset(Subset::First { n: if quick { 100 } else { 1000 } })?,
                eval: test_all.clone().subset(Subset::First { n: sweep_images })?,
                norm: known.normalize(),
                ctrl,
            };
            let train = run.train()?;
            let checkpoints = run.checkpoints()?;
            let landscape = run.landscape(&checkpoints)?;
            let dropout = run.dropout(&checkpoints)?;
            let selective = run.selective(&checkpoints)?;
            let parameters = Network::load(&checkpoints[0].path, None, &Device::Cpu)?.params.parameter_count();
            let epochs = checkpoints.iter().map(|c| c.epoch).collect();
            let timings = timings(&dir);
            let mut o = Outcome {
                known,
                model: spec.model,
                parameters,
                epochs,
                timings,
                train,
                landscape,
                dropout,
                selective,
                figures: Vec::new(),
            };
            o.figures = figures(&o, &dir)?;
            outcomes.push(o);
            pending.retain(|k| *k != key);
            let study_md = out.join("..").join("STUDY.md");
            let text = report(&outcomes, &pending, &shown_args) + &kept_section(&study_md);
            fragility_explorer::engine::fsutil::write_atomic(&study_md, text.as_bytes())?;
            eprintln!("wrote {} ({} models pending)", out.join("../STUDY.md").display(), pending.len());
        }
    }
    eprintln!("study finished in {:.1} h", started.elapsed().as_secs_f64() / 3600.0);
    Ok(())
}
