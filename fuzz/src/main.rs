//! `flow-fuzz [--inputs N] [--seed S] [--seeds-dir DIR] [--crashes DIR] [TARGET...]`: runs the
//! readers on N mutated inputs per target (default 100000) and exits 1 on any finding (a
//! panic, an input over the time or allocation bound), with the inputs saved under `--crashes`
//! (default `fuzz-crashes/`). Targets: dicom-header, dicom-series, nifti, yaml, csv (default
//! all). The documented long run is 1,000,000 inputs per target (docs/benchmarks.md).
//! `flow-fuzz --replay FILE TARGET` runs one saved input and prints what the reader did.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let mut inputs = 100_000u64;
    let mut seed = 1u64;
    let mut seeds_dir: Option<PathBuf> = None;
    let mut crashes = PathBuf::from("fuzz-crashes");
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--inputs" => inputs = value("--inputs")?.parse().context("--inputs: a number")?,
            "--seed" => seed = value("--seed")?.parse().context("--seed: a number")?,
            "--seeds-dir" => seeds_dir = Some(value("--seeds-dir")?.into()),
            "--crashes" => crashes = value("--crashes")?.into(),
            "--replay" => {
                let file = PathBuf::from(value("--replay")?);
                let target = value("--replay")?;
                return replay(&file, &target);
            }
            "-h" | "--help" => {
                println!("flow-fuzz [--inputs N] [--seed S] [--seeds-dir DIR] [--crashes DIR] [dicom-header|dicom-series|nifti|yaml|csv]...");
                return Ok(());
            }
            t if !t.starts_with('-') => only.push(t.to_string()),
            other => bail!("unknown option {other} (see --help)"),
        }
    }
    let targets = flow_fuzz::all_targets(seeds_dir.as_deref());
    for name in &only {
        if !targets.iter().any(|t| t.name == name) {
            bail!("unknown target `{name}`");
        }
    }
    let work = tempfile::tempdir().context("scratch folder")?;
    let mut found = 0;
    for t in targets
        .iter()
        .filter(|t| only.is_empty() || only.iter().any(|o| o == t.name))
    {
        let s = flow_fuzz::fuzz(t, inputs, seed, work.path(), Some(&crashes));
        println!(
            "{:<13} {} inputs ({} seeds) in {:.1} s ({:?} each): {} accepted, slowest {:.3} s, largest allocation {:.1} MiB, {} findings",
            t.name,
            s.inputs,
            t.seeds.len(),
            s.seconds,
            flow_fuzz::per_input(&s),
            s.accepted,
            s.slowest_seconds,
            s.largest_allocation as f64 / 1048576.0,
            s.findings.len()
        );
        for f in s.findings.iter().take(10) {
            println!("  input {}: {} (saved: {:?})", f.input, f.what, f.saved);
        }
        found += s.findings.len();
    }
    if found > 0 {
        bail!("{found} finding(s)");
    }
    Ok(())
}

/// Runs one saved input through one target and reports time, allocation and outcome.
fn replay(file: &std::path::Path, target: &str) -> Result<()> {
    let input = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let targets = flow_fuzz::all_targets(None);
    let t = targets
        .iter()
        .find(|t| t.name == target)
        .with_context(|| format!("unknown target `{target}`"))?;
    let work = tempfile::tempdir()?;
    let base = flow_fuzz::alloc::live_bytes();
    flow_fuzz::alloc::reset_peak();
    let t0 = std::time::Instant::now();
    let accepted = (t.run)(&input, work.path());
    println!(
        "{target}: accepted {accepted} in {:.3} s, peak allocation {:.1} MiB",
        t0.elapsed().as_secs_f64(),
        flow_fuzz::alloc::peak_bytes().saturating_sub(base) as f64 / 1048576.0
    );
    Ok(())
}
