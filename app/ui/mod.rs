//! The eframe app and its panels, one panel per file.
