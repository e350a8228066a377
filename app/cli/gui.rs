//! `gui` (and no command at all): the desktop explorer.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;

use crate::engine::device::DeviceChoice;
use crate::ui::settings::Tab;
use crate::ui::{AppOptions, ExplorerApp};

#[derive(Args, Debug, Default)]
pub struct GuiArgs {
    /// Checkpoint to open, or a folder of checkpoints (default: the last one, else the embedded model)
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Dataset to open (default: the last one, else the embedded data)
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Where to compute
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
    /// Start without the stored settings and files
    #[arg(long)]
    pub fresh: bool,
    /// Save a screenshot to this PNG once the app is idle, then quit (for docs and smoke tests)
    #[arg(long, value_name = "PNG", hide = true)]
    pub screenshot: Option<PathBuf>,
    /// The view to show first: mask, perturbation, curves, scores, dropout, landscape, training
    #[arg(long, value_name = "VIEW")]
    pub view: Option<String>,
    /// Steps to run once the model is open, in order (comma-separated): layer:NAME, sweep,
    /// characterise, compression, eps, perturb, dropout, classes (show the class view)
    #[arg(long, value_delimiter = ',', hide = true)]
    pub run: Vec<String>,
    /// Images in the evaluation subset (the first N)
    #[arg(long, value_name = "N")]
    pub eval_images: Option<usize>,
    /// Thresholds per sweep (odd, at least 3)
    #[arg(long, value_name = "R")]
    pub steps: Option<usize>,
    /// Window size in points, WIDTHxHEIGHT
    #[arg(long, value_name = "WxH", default_value = "1400x860")]
    pub size: String,
}

pub fn run(args: &GuiArgs) -> Result<()> {
    let tab = match &args.view {
        Some(v) => Some(Tab::parse(v).ok_or_else(|| anyhow!("unknown view `{v}`"))?),
        None => None,
    };
    let (w, h) = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<f32>().ok()?, h.parse::<f32>().ok()?)))
        .ok_or_else(|| anyhow!("--size must look like 1400x860, found `{}`", args.size))?;
    let options = AppOptions {
        model: args.model.clone(),
        data: args.data.clone(),
        device: args.device,
        fresh: args.fresh || args.screenshot.is_some(),
        screenshot: args.screenshot.clone(),
        tab,
        autorun: args.run.clone(),
        eval_images: args.eval_images,
        steps: args.steps,
        dialogs: None,
    };
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Fragility explorer")
            .with_inner_size([w, h])
            .with_min_inner_size([800.0, 500.0])
            .with_drag_and_drop(true),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    eframe::run_native(
        "fragility-explorer",
        native,
        Box::new(move |cc| Ok(Box::new(ExplorerApp::new(cc, options)?) as Box<dyn eframe::App>)),
    )
    .map_err(|e| anyhow!("cannot open the window: {e}"))
}
