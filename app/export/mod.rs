//! Writing results: data tables (CSV), full results with their config (JSON), figures, and
//! numbers formatted for people.

pub mod figures;
pub mod format;
pub mod tables;
