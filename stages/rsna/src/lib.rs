//! Stage adapters: the engine's [`Stage`](flow_engine::Stage) trait over the imaging,
//! synthetic-cohort, nn and scoring crates. Each adapter is a thin layer: typed params in,
//! library call, outputs written where the context says.

use flow_engine::Registry;

/// A registry with the engine's built-ins and every stage of this crate.
pub fn registry() -> Registry {
    Registry::with_builtins()
}
