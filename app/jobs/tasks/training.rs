//! Regular against selective training from the open checkpoint, epoch by epoch.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::engine::analysis::selective;
use crate::engine::data::{self, DataSpec, Split, Subset};
use crate::engine::progress::Ctrl;
use crate::engine::setup;
use crate::jobs::command::{Payload, Source, TrainRequest};
use crate::jobs::state::WorkerState;

pub fn train(state: &mut WorkerState, req: &TrainRequest, ctrl: Ctrl, emit: &dyn Fn(Payload)) -> Result<Payload> {
    let net = state.net()?;
    let data = state.dataset()?;
    setup::check_compatible(net, data)?;
    std::fs::create_dir_all(&req.out).with_context(|| format!("cannot create {}", req.out.display()))?;
    // selective::run starts from a file: the open one, else the network saved as it is.
    let checkpoint: PathBuf = match (&state.model_source, state.checkpoints.last()) {
        (_, Some(last)) => last.path.clone(),
        (Source::Path(p), None) => p.clone(),
        (Source::Embedded, None) => {
            let p = req.out.join("start").join("embedded.safetensors");
            std::fs::create_dir_all(req.out.join("start"))?;
            net.save(&p)?;
            p
        }
    };
    let limit = Subset::First { n: req.train_images.max(1) };
    let train_set = match &state.data_source {
        Source::Path(p) => match data::load(&DataSpec { path: p.clone(), split: Split::Train, subset: limit }) {
            Ok(d) => d,
            Err(_) => {
                emit(Payload::Note("the dataset has no train split: training on its test images".into()));
                data.clone().subset(Subset::First { n: req.train_images.clamp(1, data.len()) })?
            }
        },
        Source::Embedded => {
            emit(Payload::Note("the embedded dataset holds test images only: training on them".into()));
            data.clone().subset(Subset::First { n: req.train_images.clamp(1, data.len()) })?
        }
    };
    let norm = setup::normalization(net, Some(data))?;
    let start = net.card.training.as_ref().map_or(0, |t| t.epoch);
    let test = state.eval.as_ref().map(|c| c.data.clone()).unwrap_or_else(|| data.clone());
    let mut cfg = req.config.clone();
    cfg.train.epochs += start;
    let r = selective::run(
        &checkpoint,
        &train_set,
        &test,
        &test,
        &norm,
        &cfg,
        &req.out,
        &state.device,
        ctrl,
        &|arm, log| emit(Payload::Epoch { arm: arm.to_string(), log: log.clone() }),
    )?;
    Ok(Payload::Trained(Box::new(r)))
}
