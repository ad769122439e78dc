//! The CI budget: a few thousand mutated inputs per reader, no finding. The long run is
//! `cargo run --release -p flow-fuzz -- --inputs 1000000` (docs/benchmarks.md).

#[test]
fn every_reader_survives_a_short_fuzz_run() {
    let inputs: u64 = std::env::var("FLOW_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let work = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    for t in flow_fuzz::all_targets(
        std::env::var_os("FLOW_FUZZ_SEEDS")
            .as_deref()
            .map(std::path::Path::new),
    ) {
        let s = flow_fuzz::fuzz(&t, inputs, 7, work.path(), None);
        assert!(
            s.accepted > 0,
            "{}: the unmutated seeds must be accepted",
            t.name
        );
        for f in &s.findings {
            report.push(format!("{}: input {}: {}", t.name, f.input, f.what));
        }
    }
    assert!(report.is_empty(), "{report:#?}");
}
