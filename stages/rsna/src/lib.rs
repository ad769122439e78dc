//! Stage adapters for the rsna7 pipeline.
