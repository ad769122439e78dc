//! Peak GPU memory end to end, with a fake `nvidia-smi` chosen through `FLOW_NVIDIA_SMI`: a
//! command node granted a GPU is charged its process tree (here a grandchild), an in-process
//! stage flow's own pid, a CPU-only node nothing, and `nvidia-smi` is never started for a run
//! without GPU nodes. The value reaches the run report, the journal, the action record and the
//! HTML page; a missing `nvidia-smi` leaves it out without failing the node.
//!
//! One test function: it sets the process environment, which no other thread may read then.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use flow_engine::events::{EventBus, JsonlJournal, NodeState, RunReport};
use flow_engine::run_report::RunTrace;
use flow_engine::runner::{self, RunOptions};
use flow_engine::state::{LockMode, StateDir};
use flow_engine::{OutputDecl, Params, ParamsSchema, Registry, Stage, StageContext, StageError};

/// An in-process stage that holds its GPU for a moment.
struct OnGpu;

impl Stage for OnGpu {
    fn kind(&self) -> &'static str {
        "test.on_gpu"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "test stage"
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
    }
    fn inputs(&self) -> Option<Vec<flow_engine::InputDecl>> {
        None
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![OutputDecl::file("o", "o.txt")])
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(ctx.output("o")?, "x").map_err(|e| StageError::wrap("write", e))
    }
}

/// Runs `pipeline` in `dir` with `gpus`, forcing `rerun`; the journal goes to `dir/journal.jsonl`.
fn run(dir: &Path, pipeline: &str, gpus: Vec<usize>, rerun: &[&str]) -> RunReport {
    let file = dir.join("p.yaml");
    std::fs::write(&file, pipeline).unwrap();
    let mut reg = Registry::with_builtins();
    reg.register(OnGpu);
    let dag = Arc::new(flow_engine::load_pipeline(&file, &[], &reg, dir).unwrap());
    let state = Arc::new(StateDir::open(&dir.join(".flow"), LockMode::FailFast).unwrap());
    let opts = RunOptions {
        jobs: 4,
        keep_going: false,
        targets: vec![],
        rerun: rerun.iter().map(|r| r.to_string()).collect(),
        gpus,
        memory_mb: None,
        base_dir: dir.to_path_buf(),
        results_dir: None,
        run_id: runner::new_run_id(),
        executor: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(runner::run(
        dag,
        state,
        opts,
        Arc::new(EventBus::new(vec![Box::new(
            JsonlJournal::create(&dir.join("journal.jsonl")).unwrap(),
        )])),
        Arc::new(AtomicBool::new(false)),
    ))
    .unwrap()
}

fn gpu_of(report: &RunReport, node: &str) -> Option<u64> {
    let n = report.nodes.iter().find(|n| n.id == node).unwrap();
    assert_eq!(n.state, NodeState::Ran, "{node}: {:?}", n.error);
    n.usage.unwrap().gpu_peak_mb
}

#[test]
fn gpu_nodes_are_charged_their_processes_gpu_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let me = std::process::id();
    // The command below writes its grandchild's pid to `pid`; flow (this test) holds 300 MiB.
    let smi = dir.path().join("fake-nvidia-smi");
    std::fs::write(
        &smi,
        format!(
            "#!/bin/sh\necho called >> '{d}/calls'\n[ -s '{d}/pid' ] && echo \"$(cat '{d}/pid'), 1500\"\n\
             echo '1, 77'\necho '[N/A], [N/A]'\necho ''\necho '{me}, 300'\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&smi, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::env::set_var(flow_engine::gpu_usage::NVIDIA_SMI_ENV, &smi);

    let cpu_only = "name: cpu\nnodes:\n  cpu:\n    stage: command\n    params: {cmd: 'sleep 0.3; echo x > o', shell: true, outputs: {o: o}}\n";
    let report = run(dir.path(), cpu_only, vec![0], &[]);
    assert_eq!(gpu_of(&report, "cpu"), None);
    assert!(
        !dir.path().join("calls").exists(),
        "nvidia-smi was started for a CPU-only node"
    );

    let pipeline = format!(
        "name: gpu\nnodes:\n  \
         cmd:\n    stage: command\n    resources: {{gpu: 1}}\n    params: {{cmd: \"sleep 1.6 & echo $! > '{d}/pid'; wait; echo x > o\", shell: true, outputs: {{o: o}}}}\n  \
         inproc:\n    stage: test.on_gpu\n    resources: {{gpu: 1}}\n  \
         cpu2:\n    stage: command\n    params: {{cmd: 'sleep 0.2; echo y > o', shell: true, outputs: {{o: o}}}}\n"
    );
    let report = run(dir.path(), &pipeline, vec![0, 1], &[]);
    assert_eq!(
        gpu_of(&report, "cmd"),
        Some(1500),
        "the grandchild's, not flow's"
    );
    assert_eq!(gpu_of(&report, "inproc"), Some(300), "flow's own");
    assert_eq!(gpu_of(&report, "cpu2"), None);
    assert!(
        std::fs::read_to_string(dir.path().join("calls"))
            .unwrap()
            .lines()
            .count()
            >= 2
    );

    // The journal, the action record and the HTML page carry it.
    let state = StateDir::open(&dir.path().join(".flow"), LockMode::FailFast).unwrap();
    let key = state.index.last_key("cmd").unwrap().unwrap();
    assert_eq!(
        key.to_hex(),
        report.nodes.iter().find(|n| n.id == "cmd").unwrap().key
    );
    let record = state.index.lookup(&key).unwrap().unwrap();
    assert_eq!(record.gpu_peak_mb, Some(1500));
    let journal = dir.path().join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.contains("\"gpu_peak_mb\":1500"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    let by_id = |id: &str| {
        json["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap()["usage"]
            .clone()
    };
    assert_eq!(by_id("inproc")["gpu_peak_mb"], 300);
    assert!(by_id("cpu2").get("gpu_peak_mb").is_none());
    let html = RunTrace::read(&journal).unwrap().to_html();
    assert!(html.contains("peak GPU memory") && html.contains("1.5 GiB"));
    drop(state);

    // No nvidia-smi: the GPU nodes still run, with no GPU memory.
    std::fs::remove_file(dir.path().join("pid")).unwrap();
    std::env::set_var(
        flow_engine::gpu_usage::NVIDIA_SMI_ENV,
        dir.path().join("absent"),
    );
    let report = run(dir.path(), &pipeline, vec![0, 1], &["cmd", "inproc"]);
    assert_eq!(gpu_of(&report, "cmd"), None);
    assert_eq!(gpu_of(&report, "inproc"), None);
    let html = RunTrace::read(&dir.path().join("journal.jsonl"))
        .unwrap()
        .to_html();
    assert!(!html.contains("GPU memory"), "{html}");
}
