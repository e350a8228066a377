//! The compute worker: commands in, events out, progress, cancellation.
