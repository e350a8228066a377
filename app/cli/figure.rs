//! `figure`: render the app's figures headless from saved results.

use anyhow::{Result, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct FigureArgs {}

pub fn run(_args: &FigureArgs) -> Result<()> {
    bail!("figure export is not implemented yet")
}
