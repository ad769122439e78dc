//! Measures cohort generation time per profile and prints a Markdown table.
//!
//! `cargo run --release -p flow-synth --example synth_bench -- [PROFILE[:STUDIES]]... [--repeat N]`
//! e.g. `tiny demo full:2`. STUDIES overrides the number of train studies (test studies are then
//! 0). Each run writes into a fresh temporary folder; the median of N runs is reported.

use flow_synth::{generate_cohort, CohortConfig, Profile};
use std::path::Path;
use std::time::Instant;

/// CPU seconds (user + system) used by this process so far, from /proc/self/stat.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn tree_size(root: &Path) -> (usize, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut repeat = 1;
    if let Some(i) = args.iter().position(|a| a == "--repeat") {
        repeat = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .expect("--repeat N");
        args.drain(i..i + 2);
    }
    if args.is_empty() {
        args = vec!["tiny".into(), "demo".into()];
    }
    println!("threads: {}", rayon::current_num_threads());
    println!("| profile | studies | voxels/study | files | MB | wall s (median of {repeat}) | wall s/study | CPU s/study |");
    println!("|---|---|---|---|---|---|---|---|");
    for arg in &args {
        let (name, studies) = match arg.split_once(':') {
            Some((n, s)) => (n, Some(s.parse::<usize>().expect("studies"))),
            None => (arg.as_str(), None),
        };
        let mut cfg = CohortConfig::for_profile(Profile::parse(name).expect("profile"));
        if let Some(n) = studies {
            cfg.train_studies = n;
            cfg.test_studies = 0;
        }
        let mut times = Vec::new();
        let mut last = None;
        let cpu_start = cpu_seconds();
        for _ in 0..repeat {
            let dir = tempfile::tempdir().expect("tempdir");
            let out = dir.path().join("cohort");
            let t = Instant::now();
            let summary = generate_cohort(&cfg, &out, &|_, _| {}).expect("generate");
            times.push(t.elapsed().as_secs_f64());
            last = Some((summary, tree_size(&out)));
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let median = times[times.len() / 2];
        let (summary, (files, bytes)) = last.expect("at least one run");
        let n = cfg.total_studies();
        let cpu = match (cpu_start, cpu_seconds()) {
            (Some(a), Some(b)) => format!("{:.2}", (b - a) / (repeat * n) as f64),
            _ => "n/a".to_string(),
        };
        println!(
            "| {name} | {n} | {} | {files} | {:.1} | {median:.2} | {:.2} | {cpu} |",
            summary.voxels / n,
            bytes as f64 / 1e6,
            median / n as f64
        );
    }
}
