//! Nodal dropout of a convolution layer.

use anyhow::Result;

use crate::engine::analysis::dropout::{self, DropoutConfig};
use crate::engine::progress::Ctrl;
use crate::jobs::command::Payload;
use crate::jobs::state::WorkerState;

pub fn dropout(state: &mut WorkerState, cfg: &DropoutConfig, subset: usize, ctrl: Ctrl) -> Result<Payload> {
    let (net, part, norm) = state.prepared(subset)?;
    let r = dropout::run(net, &part, &norm, cfg, ctrl)?;
    Ok(Payload::Dropout(Box::new(r)))
}
