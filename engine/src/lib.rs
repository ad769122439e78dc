//! The flow engine: pipeline files, the DAG, node keys, the scheduler and the Stage trait.
//!
//! Flow of a run: [`spec::load`] parses and expands the YAML, [`validate::validate`] checks it
//! against the [`Registry`] and builds the [`Dag`], [`runner::run`] walks it with the
//! scheduler, computing each node's key ([`key`]) from its params and input digests, serving
//! cached results from the [`flow_cache`] index and running the rest ([`execute`]) when a
//! [`pool::ResourcePool`] of cpu slots, GPUs and memory has room, emitting [`events::Event`]s.

pub mod child;
pub mod command;
pub mod error;
pub mod events;
pub mod execute;
pub mod executor;
pub mod gpu_usage;
pub mod graph;
pub mod inspect;
pub mod items;
pub mod key;
pub mod params;
pub mod pool;
pub mod progress;
pub mod publish;
pub mod redact;
pub mod registry;
pub mod resolve;
pub mod run_report;
pub mod runner;
mod scheduler;
pub mod spec;
pub mod stage;
pub mod state;
pub mod usage;
pub mod validate;

pub use error::EngineError;
pub use params::{ParamSpec, ParamType, ParamsSchema};
pub use registry::Registry;
pub use stage::{Device, InputDecl, OutputDecl, Params, Stage, StageContext, StageError};
pub use validate::Dag;

/// Loads, expands and validates a pipeline file.
pub fn load_pipeline(
    file: &std::path::Path,
    overrides: &[(String, serde_json::Value)],
    registry: &Registry,
    base_dir: &std::path::Path,
) -> Result<Dag, EngineError> {
    let p = spec::load(file, overrides).map_err(EngineError::Invalid)?;
    validate::validate(p, registry, base_dir).map_err(EngineError::Invalid)
}
