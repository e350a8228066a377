//! A terminal progress bar for engine loops, on stderr (hidden when it is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::progress::{Progress, StopFlag};

pub struct Bar(ProgressBar);

impl Bar {
    pub fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({eta} left)")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        Self(bar)
    }
    /// Runs `f` (which prints) with the bar hidden.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.0.suspend(f)
    }
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn start(&self, stage: &str, total: usize) {
        self.0.set_message(stage.to_string());
        self.0.set_length(total as u64);
        self.0.set_position(0);
    }
    fn advance(&self, n: usize) {
        self.0.inc(n as u64);
    }
}

/// A command stopped by Ctrl-C after saving what it finished; it exits with code 130.
#[derive(Debug, thiserror::Error)]
#[error("cancelled: {0}")]
pub struct StoppedEarly(pub &'static str);

/// Ends a command whose results are saved: says what was kept when Ctrl-C stopped it early.
pub fn finished(cancelled: bool, kept: &'static str) -> anyhow::Result<()> {
    if cancelled {
        return Err(StoppedEarly(kept).into());
    }
    Ok(())
}

/// A stop flag raised by Ctrl-C, so loops end cleanly between batches.
pub fn ctrl_c_flag() -> StopFlag {
    let flag = StopFlag::new();
    let f = flag.clone();
    // A second handler cannot be installed; then Ctrl-C simply ends the process.
    ctrlc::set_handler(move || f.stop()).ok();
    flag
}
