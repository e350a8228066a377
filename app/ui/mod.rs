//! The eframe app and its panels, one panel per file.
//!
//! State is kept in three kinds: persisted [`settings::Settings`] (restored by eframe
//! storage), runtime results in [`session::Session`] with the worker handle in the app, and
//! [`panels`], which read both and push [`actions::Action`]s.

pub mod actions;
pub mod app;
mod app_actions;
mod app_events;
pub mod autorun;
pub mod dialogs;
mod figures;
pub mod panels;
pub mod session;
pub mod settings;
pub mod settings_file;
pub mod sweep_store;
pub mod theme;

pub use app::{AppOptions, ExplorerApp};
