//! Writing results: data tables (CSV), full results with their config (JSON), and figures.

pub mod figures;
pub mod tables;
