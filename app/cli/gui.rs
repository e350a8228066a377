//! `gui` (and no command at all): the desktop explorer.
//!
//! The bare binary and `gui` parse the same [`GuiArgs`] through clap (they are flattened into
//! the top-level command), so their defaults have one source and cannot disagree.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Result, anyhow};
use clap::Args;

use crate::engine::device::DeviceChoice;
use crate::ui::autorun::RunStep;
use crate::ui::settings::Tab;
use crate::ui::{AppOptions, ExplorerApp};

/// A window size in points, written `WIDTHxHEIGHT`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowSize {
    pub width: f32,
    pub height: f32,
}

impl WindowSize {
    /// The size the window opens at.
    pub const DEFAULT: Self = Self { width: 1400.0, height: 860.0 };
    /// The smallest window the panels fit into.
    pub const MIN: Self = Self { width: 800.0, height: 500.0 };
    /// Larger than any screen: a typo, not a wish.
    const MAX_SIDE: f32 = 16_384.0;
}

impl fmt::Display for WindowSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl FromStr for WindowSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (min, max) = (Self::MIN, Self::MAX_SIDE);
        let expected = || {
            format!(
                "expected WIDTHxHEIGHT such as {}, each side from {}x{} to {max}",
                Self::DEFAULT,
                min.width,
                min.height
            )
        };
        let (w, h) = s.split_once(['x', 'X']).ok_or_else(expected)?;
        let (width, height) =
            (w.trim().parse::<f32>().map_err(|_| expected())?, h.trim().parse::<f32>().map_err(|_| expected())?);
        let fits = |v: f32, lo: f32| v.is_finite() && (lo..=max).contains(&v);
        if !fits(width, min.width) || !fits(height, min.height) {
            return Err(expected());
        }
        Ok(Self { width, height })
    }
}

fn parse_view(s: &str) -> Result<Tab, String> {
    Tab::parse(s).ok_or_else(|| {
        let names: Vec<String> = Tab::ALL.iter().map(|t| format!("{t:?}").to_lowercase()).collect();
        format!("unknown view; expected one of {}", names.join(", "))
    })
}

#[derive(Args, Debug)]
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
    /// The view to show first: mask, perturbation, curves, scores, dropout, landscape, training, compare
    #[arg(long, value_name = "VIEW", value_parser = parse_view)]
    pub view: Option<Tab>,
    /// Steps to run once the model is open, in order (comma-separated): layer:NAME, sweep,
    /// characterise, compression, eps, perturb, dropout, classes (show the class view)
    #[arg(long, value_delimiter = ',', hide = true)]
    pub run: Vec<RunStep>,
    /// Images in the evaluation subset (the first N)
    #[arg(long, value_name = "N")]
    pub eval_images: Option<usize>,
    /// Thresholds per sweep (odd, at least 3)
    #[arg(long, value_name = "R")]
    pub steps: Option<usize>,
    /// Trajectory results (trajectory.json, or their folders) to compare, comma-separated; the
    /// Compare view opens unless --view says otherwise
    #[arg(long, value_name = "RESULT,...", value_delimiter = ',')]
    pub compare: Vec<PathBuf>,
    /// Window size in points
    #[arg(long, value_name = "WxH", default_value_t = WindowSize::DEFAULT)]
    pub size: WindowSize,
}

pub fn run(args: &GuiArgs) -> Result<()> {
    let options = AppOptions {
        model: args.model.clone(),
        data: args.data.clone(),
        device: args.device,
        fresh: args.fresh || args.screenshot.is_some(),
        settings_path: None,
        screenshot: args.screenshot.clone(),
        tab: args.view,
        autorun: args.run.clone(),
        eval_images: args.eval_images,
        steps: args.steps,
        dialogs: None,
        runs: args.compare.clone(),
    };
    let (size, min) = (args.size, WindowSize::MIN);
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Fragility explorer")
            .with_inner_size([size.width, size.height])
            .with_min_inner_size([min.width, min.height])
            .with_drag_and_drop(true),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    eframe::run_native(
        crate::ui::settings_file::APP_ID,
        native,
        Box::new(move |cc| Ok(Box::new(ExplorerApp::new(cc, options)?) as Box<dyn eframe::App>)),
    )
    .map_err(|e| anyhow!("cannot open the window: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_parse_and_absurd_ones_are_refused() {
        assert_eq!("1200x760".parse::<WindowSize>(), Ok(WindowSize { width: 1200.0, height: 760.0 }));
        assert_eq!(WindowSize::DEFAULT.to_string().parse::<WindowSize>(), Ok(WindowSize::DEFAULT));
        for bad in ["", "1200", "x", "0x0", "1200x-5", "nanx800", "99999999x800", "10x10"] {
            assert!(bad.parse::<WindowSize>().is_err(), "{bad} should be refused");
        }
    }
}
