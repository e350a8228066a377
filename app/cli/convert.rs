//! `convert`: re-save a checkpoint as safetensors with its model card.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::common::ModelArgs;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output safetensors file; the card is written beside it with the extension .json
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(a: &ConvertArgs) -> Result<()> {
    if a.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!("the output must end in .safetensors: {}", a.out.display());
    }
    let card = a.out.with_extension("json");
    // The card is written beside the checkpoint: never over a file that is not ours to replace.
    if card.exists() && !a.out.exists() {
        bail!(
            "{} exists and would be replaced by the new checkpoint's card; move it or choose another --out: {}",
            card.display(),
            a.out.display()
        );
    }
    let net = a.model.load()?;
    net.save(&a.out)?;
    println!("wrote {} and {}", a.out.display(), a.out.with_extension("json").display());
    Ok(())
}
