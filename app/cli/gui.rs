//! `gui` (and no command at all): the desktop explorer.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug, Default)]
pub struct GuiArgs {
    /// Checkpoint to open (default: the last one, else the embedded model)
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Dataset to open (default: the last one, else the embedded data)
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
}

/// Until the desktop app lands: the embedded model's summary and evaluation.
pub fn run(_args: &GuiArgs) -> Result<()> {
    super::eval::default_summary()
}
