//! The desktop app: driven by widget labels in egui_kittest (`app`), and the real binary
//! started under Xvfb as the README says (`smoke`). One binary for both.

#[path = "../common/mod.rs"]
mod common;

mod app;
mod smoke;
