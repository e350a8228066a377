//! `train` and `selective`: training runs and selective backpropagation.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::analysis::{SweepArgs, attack_config};
use super::common::DataArgs;
use super::eval::AttackArgs;
use super::progress::{self, Bar, ctrl_c_flag};
use crate::engine::analysis::selective::{self, Selection, SelectiveConfig};
use crate::engine::analysis::sweep::Scope;
use crate::engine::attack::AttackKind;
use crate::engine::card::ModelCard;
use crate::engine::data::{DataSpec, Dataset, Split, Subset};
use crate::engine::device::{self, DeviceChoice};
use crate::engine::eval::DEFAULT_EVAL_IMAGES;
use crate::engine::model::init::initial_state;
use crate::engine::model::{CardOrigin, Network};
use crate::engine::progress::Ctrl;
use crate::engine::setup;
use crate::engine::train::{self, DEFAULT_EVERY, EpochLog, TrainConfig, Trainer, adam};
use crate::export::format::group;
use crate::export::tables;

/// Options shared by both training commands.
#[derive(Args, Debug, Clone)]
pub struct TrainOpts {
    /// Images per training batch
    #[arg(long, default_value_t = train::DEFAULT_BATCH)]
    pub train_batch: usize,
    /// Adam's learning rate
    #[arg(long, default_value_t = adam::DEFAULT_LR)]
    pub lr: f64,
    /// Use only the first N training images
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Test images evaluated after each epoch (clean and FGSM)
    #[arg(long, default_value_t = DEFAULT_EVAL_IMAGES)]
    pub test_limit: usize,
    /// Skip the adversarial test after each epoch
    #[arg(long)]
    pub no_adversarial_test: bool,
    /// Where to compute
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
}

/// The training split (or its first N images) and the first `test_limit` test images.
fn train_and_test(data: &DataArgs, opts: &TrainOpts) -> Result<(Dataset, Dataset)> {
    let path = data.data.clone().context("training needs --data (a dataset with a train split)")?;
    let subset = opts.train_limit.map_or(Subset::All, |n| Subset::First { n });
    let train = crate::engine::data::load(&DataSpec { path: path.clone(), split: Split::Train, subset })?;
    let test = crate::engine::data::load(&DataSpec { path, split: Split::Test, subset: Subset::All })?;
    let n = test.len().min(opts.test_limit.max(1));
    Ok((train, test.subset(Subset::First { n })?))
}

fn print_epoch(arm: &str, l: &EpochLog) {
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2} %", 100.0 * v));
    eprintln!(
        "{arm}epoch {:>3}  loss {:.4}  train {:.2} %  test clean {}  adversarial {}{}",
        l.epoch,
        l.train_loss,
        100.0 * l.train_accuracy,
        f(l.test_clean_accuracy),
        f(l.test_adv_accuracy),
        if l.frozen_fraction > 0.0 { format!("  frozen {:.1} %", 100.0 * l.frozen_fraction) } else { String::new() }
    );
}

#[derive(Args, Debug)]
pub struct TrainCmd {
    /// Model card of the network to train from scratch (layers need out_channels, kernel
    /// and out_features; ResNets a stem)
    #[arg(long, value_name = "FILE", required_unless_present = "resume")]
    pub model_card: Option<PathBuf>,
    /// Continue from a checkpoint written by `train` (weights, epoch and optimiser state)
    #[arg(long, value_name = "FILE", conflicts_with = "model_card")]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Train until this epoch
    #[arg(long)]
    pub epochs: usize,
    /// Save a checkpoint every K epochs (and after the last)
    #[arg(long, default_value_t = DEFAULT_EVERY)]
    pub every: usize,
    #[command(flatten)]
    pub opts: TrainOpts,
    #[command(flatten)]
    pub attack_opts: AttackArgs,
    /// Folder for checkpoints, train.json and train.csv
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run_train(a: &TrainCmd) -> Result<()> {
    let dev = device::open(a.opts.device)?;
    let (train_set, test) = train_and_test(&a.data, &a.opts)?;
    let net = match (&a.resume, &a.model_card) {
        (Some(ckpt), _) => Network::load(ckpt, None, &dev)?,
        (None, Some(card_path)) => {
            let card = ModelCard::load(card_path)?;
            let classes = card.classes.as_ref().map_or(train_set.num_classes(), Vec::len);
            let state = initial_state(&card, classes, a.attack_opts.seed, &dev)?;
            Network::build(state, Some((card, CardOrigin::File(card_path.clone()))), &dev)?
        }
        (None, None) => bail!("give --model-card or --resume"),
    };
    setup::check_compatible(&net, &train_set).context("the training data does not fit the model card")?;
    let norm = setup::normalization(&net, Some(&train_set))?;
    let test_attack = if a.opts.no_adversarial_test {
        None
    } else {
        Some(attack_config(&a.attack_opts, AttackKind::Fgsm, &net, &test)?)
    };
    let cfg = TrainConfig {
        epochs: a.epochs,
        every: a.every,
        seed: a.attack_opts.seed,
        batch: a.opts.train_batch,
        lr: a.opts.lr,
        test_attack,
    };
    let mut trainer = Trainer::new(&net, cfg)?;
    super::common::prepare_out(&a.out)?;
    if let Some(ckpt) = &a.resume
        && !trainer.resume_optimiser(ckpt)?
    {
        eprintln!("note: no optimiser state beside {}; Adam starts afresh", ckpt.display());
    }
    eprintln!(
        "training {} ({} parameters) on {} images from epoch {} to {}",
        net.card.architecture,
        group(net.params.parameter_count()),
        group(train_set.len()),
        trainer.epoch,
        a.epochs
    );
    let (bar, stop) = (Bar::new(), ctrl_c_flag());
    let r = train::train(
        &mut trainer,
        &train_set,
        Some(&test),
        &norm,
        &a.out,
        Ctrl { progress: &bar, stop: &stop },
        &|l| bar.suspend(|| print_epoch("", l)),
    );
    bar.finish();
    let r = r?;
    tables::write_json(&a.out.join("train.json"), &r)?;
    tables::epochs_table(&[("train", &r.logs)]).write(&a.out.join("train.csv"))?;
    for c in &r.checkpoints {
        println!("checkpoint {}", c.display());
    }
    progress::finished(r.cancelled, "finished epochs and their checkpoints are kept")
}

#[derive(Args, Debug)]
pub struct SelectiveCmd {
    /// Checkpoint to start from (written by `train`, so its card has the epoch)
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Train both arms until this epoch
    #[arg(long)]
    pub epochs: usize,
    /// Re-characterise the selective arm every K epochs
    #[arg(long, default_value_t = DEFAULT_EVERY)]
    pub every: usize,
    /// Freeze fragile weights one by one, or whole fragile layers
    #[arg(long, value_enum, default_value_t = Selection::PerWeight)]
    pub selection: Selection,
    #[command(flatten)]
    pub opts: TrainOpts,
    /// Images the characterisation sweeps use
    #[arg(long, default_value_t = DEFAULT_EVAL_IMAGES)]
    pub char_limit: usize,
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// Folder for both arms' final checkpoints, selective.json and selective.csv
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run_selective(a: &SelectiveCmd) -> Result<()> {
    let dev = device::open(a.opts.device)?;
    let net = Network::load(&a.checkpoint, None, &dev)?;
    let (train_set, test) = train_and_test(&a.data, &a.opts)?;
    setup::check_compatible(&net, &train_set).context("the training data does not fit the model")?;
    let char_data = test.clone().subset(Subset::First { n: test.len().min(a.char_limit.max(1)) })?;
    let norm = setup::normalization(&net, Some(&train_set))?;
    let attack = attack_config(&a.sweep.attack_opts, a.sweep.attack, &net, &test)?;
    let test_attack = if a.opts.no_adversarial_test { None } else { Some(attack.clone()) };
    let cfg = SelectiveConfig {
        train: TrainConfig {
            epochs: a.epochs,
            every: a.every,
            seed: a.sweep.attack_opts.seed,
            batch: a.opts.train_batch,
            lr: a.opts.lr,
            test_attack,
        },
        selection: a.selection,
        sweep: a.sweep.config(Scope::Local, attack),
    };
    drop(net);
    super::common::prepare_out(&a.out)?;
    let (bar, stop) = (Bar::new(), ctrl_c_flag());
    let r = selective::run(
        &a.checkpoint,
        &train_set,
        &test,
        &char_data,
        &norm,
        &cfg,
        &a.out,
        &dev,
        Ctrl { progress: &bar, stop: &stop },
        &|arm, l| bar.suspend(|| print_epoch(&format!("{arm:>9} "), l)),
    );
    bar.finish();
    let r = r?;
    tables::write_selective(&a.out, &r)?;
    println!("epoch   regular clean / adv     selective clean / adv   frozen");
    for (g, s) in r.regular.iter().zip(&r.selective) {
        let p = |v: Option<f64>| v.map_or("   -   ".into(), |v| format!("{:6.2} %", 100.0 * v));
        println!(
            "{:>5}   {} / {}   {} / {}   {:.1} %",
            g.epoch,
            p(g.test_clean_accuracy),
            p(g.test_adv_accuracy),
            p(s.test_clean_accuracy),
            p(s.test_adv_accuracy),
            100.0 * s.frozen_fraction
        );
    }
    progress::finished(r.cancelled, "finished epochs are kept")
}
