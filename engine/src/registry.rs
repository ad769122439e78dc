//! The set of stage kinds a binary knows, looked up by their `stage:` name.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::stage::Stage;

/// Stage kinds by name. The `flow` binary registers the built-in `command` stage and every
/// stage crate's kinds; a Rust plugin adds its own with [`Registry::register`].
#[derive(Clone, Default)]
pub struct Registry {
    stages: BTreeMap<&'static str, Arc<dyn Stage>>,
}

impl Registry {
    /// A registry holding the engine's built-in stages (`command`).
    pub fn with_builtins() -> Registry {
        let mut r = Registry::default();
        r.register(crate::command::CommandStage);
        r
    }

    /// Adds a stage kind; a later registration of the same kind replaces the earlier one.
    pub fn register(&mut self, stage: impl Stage) -> &mut Self {
        self.stages.insert(stage.kind(), Arc::new(stage));
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn Stage>> {
        self.stages.get(kind).cloned()
    }

    pub fn kinds(&self) -> impl Iterator<Item = &Arc<dyn Stage>> {
        self.stages.values()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.stages.keys().copied().collect()
    }
}
