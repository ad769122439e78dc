//! Property: any random DAG runs every node after all of its inputs, and a second run is
//! entirely cached.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use flow_engine::events::{EventBus, NodeState};
use flow_engine::runner::{self, RunOptions};
use flow_engine::state::{LockMode, StateDir};
use flow_engine::{
    InputDecl, OutputDecl, Params, ParamsSchema, Registry, Stage, StageContext, StageError,
};
use proptest::prelude::*;

/// Records the order nodes run in; writes its `id` param plus its inputs' bytes.
struct Record(Arc<Mutex<Vec<String>>>);

impl Stage for Record {
    fn kind(&self) -> &'static str {
        "test.record"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "test stage"
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new().required("id", flow_engine::ParamType::String, "what to write")
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        None
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![OutputDecl::file("o", "o.txt")])
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        self.0.lock().unwrap().push(ctx.node.clone());
        // Output depends only on params and inputs (stages must be hermetic: the node id is
        // not part of the key, so two nodes with equal params and inputs share one result).
        let mut text = ctx.params["id"].as_str().unwrap_or_default().to_string();
        for paths in ctx.inputs.values() {
            for p in paths {
                text.push_str(
                    &std::fs::read_to_string(p).map_err(|e| StageError::wrap("read", e))?,
                );
            }
        }
        std::fs::write(ctx.output("o")?, text).map_err(|e| StageError::wrap("write", e))
    }
}

fn yaml(n: usize, edges: &[(usize, usize)]) -> String {
    let mut s = String::from("name: random\nnodes:\n");
    for j in 0..n {
        s.push_str(&format!(
            "  n{j}:\n    stage: test.record\n    params: {{id: n{j}}}\n"
        ));
        let ins: Vec<usize> = edges.iter().filter(|e| e.1 == j).map(|e| e.0).collect();
        if !ins.is_empty() {
            s.push_str("    inputs:\n");
            for i in ins {
                s.push_str(&format!("      x{i}: n{i}.o\n"));
            }
        }
    }
    s
}

fn run_once(
    dir: &std::path::Path,
    file: &std::path::Path,
    log: Arc<Mutex<Vec<String>>>,
    jobs: usize,
) -> Vec<(String, NodeState)> {
    let mut reg = Registry::with_builtins();
    reg.register(Record(log));
    let dag = Arc::new(flow_engine::load_pipeline(file, &[], &reg, dir).unwrap());
    let state = Arc::new(StateDir::open(&dir.join(".flow"), LockMode::FailFast).unwrap());
    let opts = RunOptions {
        jobs,
        keep_going: false,
        targets: vec![],
        rerun: vec![],
        gpus: vec![],
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
    let report = rt
        .block_on(runner::run(
            dag,
            state,
            opts,
            Arc::new(EventBus::default()),
            Arc::new(AtomicBool::new(false)),
        ))
        .unwrap();
    report.nodes.into_iter().map(|n| (n.id, n.state)).collect()
}

fn arb_dag() -> impl Strategy<Value = (usize, Vec<(usize, usize)>)> {
    (2usize..10).prop_flat_map(|n| {
        let pairs: Vec<(usize, usize)> = (0..n).flat_map(|j| (0..j).map(move |i| (i, j))).collect();
        let len = pairs.len();
        (
            Just(n),
            proptest::collection::vec(any::<bool>(), len).prop_map(move |keep| {
                pairs
                    .iter()
                    .zip(keep)
                    .filter(|(_, k)| *k)
                    .map(|(p, _)| *p)
                    .collect()
            }),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]
    #[test]
    fn random_dags_run_in_topological_order_then_cache((n, edges) in arb_dag(), jobs in 1usize..4) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.yaml");
        std::fs::write(&file, yaml(n, &edges)).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let states = run_once(dir.path(), &file, log.clone(), jobs);
        prop_assert!(states.iter().all(|(_, s)| *s == NodeState::Ran));
        let order = log.lock().unwrap().clone();
        prop_assert_eq!(order.len(), n);
        let pos = |id: usize| order.iter().position(|x| *x == format!("n{id}")).unwrap();
        for &(a, b) in &edges {
            prop_assert!(pos(a) < pos(b), "n{} must run before n{}: {:?}", a, b, order);
        }
        let log2 = Arc::new(Mutex::new(Vec::new()));
        let states = run_once(dir.path(), &file, log2.clone(), jobs);
        prop_assert!(states.iter().all(|(_, s)| *s == NodeState::Cached), "{:?}", states);
        prop_assert!(log2.lock().unwrap().is_empty());
    }
}
