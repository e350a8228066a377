//! The desktop app: driven by widget labels in egui_kittest (`app`), and the real binary
//! started under Xvfb as the README says (`smoke`); hostile files and settings through the
//! app (`hostile`). One binary for all.

#[path = "../common/mod.rs"]
mod common;

mod app;
mod compare;
mod hostile;
mod smoke;

// The fuzz harness's regression corpus (with the seeds and mutations it is built on), which
// `hostile` opens through the app.
#[path = "../fuzz/mutate.rs"]
#[allow(dead_code)]
mod mutate;
#[path = "../fuzz/regressions.rs"]
#[allow(dead_code)]
mod regressions;
#[path = "../fuzz/targets.rs"]
#[allow(dead_code)]
mod targets;
