//! A Rust stage plugin, end to end: define a stage, register it next to the built-ins, run a
//! pipeline that uses it. Run with `cargo run -p flow-engine --example custom_stage`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use flow_engine::events::{EventBus, TraceReporter};
use flow_engine::runner::{self, RunOptions};
use flow_engine::state::{LockMode, StateDir};
use flow_engine::{
    InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Registry, Stage, StageContext,
    StageError,
};
use serde::Deserialize;

/// Counts the lines of a text file that contain a word.
struct CountMatches;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountParams {
    word: String,
}

impl Stage for CountMatches {
    fn kind(&self) -> &'static str {
        "example.count_matches"
    }
    fn version(&self) -> u32 {
        1 // bump when the output for the same params and inputs would change
    }
    fn doc(&self) -> &'static str {
        "Counts the lines of `text` containing `word`; writes the count to count.txt."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new().required("word", ParamType::String, "the word to look for")
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![InputDecl {
            name: "text",
            many: false,
            required: true,
            doc: "a text file",
        }])
    }
    fn outputs(&self, _params: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![OutputDecl::file("count", "count.txt")])
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: CountParams = ctx.params_as()?;
        let text = std::fs::read_to_string(ctx.input("text")?)
            .map_err(|e| StageError::wrap("cannot read `text`", e))?;
        let n = text.lines().filter(|l| l.contains(&p.word)).count();
        ctx.log(&format!("{n} matching line(s)"));
        std::fs::write(ctx.output("count")?, format!("{n}\n"))
            .map_err(|e| StageError::wrap("cannot write count", e))
    }
}

const PIPELINE: &str = r#"
name: custom-stage-example
nodes:
  text:
    stage: command
    params:
      cmd: ["sh", "-c", "printf 'a flow\nno match\nflow again\n' > ${outputs.text}"]
      outputs: {text: text.txt}
  count:
    stage: example.count_matches
    params: {word: flow}
    inputs: {text: text.text}
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("pipeline.yaml");
    std::fs::write(&file, PIPELINE)?;
    let mut registry = Registry::with_builtins();
    registry.register(CountMatches);
    let dag = Arc::new(flow_engine::load_pipeline(
        &file,
        &[],
        &registry,
        dir.path(),
    )?);
    let state = Arc::new(StateDir::open(
        &dir.path().join(".flow"),
        LockMode::FailFast,
    )?);
    let opts = RunOptions {
        jobs: 2,
        keep_going: false,
        targets: vec![],
        rerun: vec![],
        gpus: vec![],
        memory_mb: None,
        base_dir: dir.path().to_path_buf(),
        results_dir: Some(dir.path().join("results")),
        run_id: runner::new_run_id(),
        executor: None,
    };
    let bus = Arc::new(EventBus::new(vec![Box::new(TraceReporter)]));
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(runner::run(
        dag,
        state,
        opts,
        bus,
        Arc::new(AtomicBool::new(false)),
    ))?;
    let count = std::fs::read_to_string(
        dir.path()
            .join("results/custom-stage-example/count/count.txt"),
    )?;
    println!("ok={} count={}", report.ok, count.trim());
    assert_eq!(count.trim(), "2");
    Ok(())
}
