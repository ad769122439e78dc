//! Seeded mutation fuzzing of the readers that take a user's files, on the stable toolchain:
//! DICOM (header reader, and whole series through the converter with its decoders), NIfTI,
//! the pipeline YAML loader (templates, foreach, validation) and the CSV readers.
//!
//! Each target starts from valid seed files made here (plus any files of `--seeds-dir`, e.g.
//! pydicom's compressed test files), mutates them ([`mutate`]) and runs the reader on every
//! input in-process, counting as a finding a panic, an input that takes longer than
//! [`MAX_SECONDS_PER_INPUT`] or one that makes the process allocate more than
//! [`MAX_BYTES_PER_INPUT`] at once (a counting global allocator). Errors are the expected
//! outcome of a bad input; only how they happen is checked.

pub mod alloc;
pub mod mutate;
pub mod targets;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

pub use targets::{all_targets, Target};

/// Most a reader may take on one input.
pub const MAX_SECONDS_PER_INPUT: f64 = 5.0;
/// Most a reader may allocate on top of what was live before the input (peak, bytes).
pub const MAX_BYTES_PER_INPUT: u64 = 512 * 1024 * 1024;

/// What was wrong with one input.
#[derive(Debug, Clone)]
pub struct Finding {
    pub target: &'static str,
    pub input: u64,
    pub what: String,
    /// Where the input was saved (for a bug report).
    pub saved: Option<PathBuf>,
}

/// One target's run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub inputs: u64,
    /// How many inputs the reader accepted (the rest were rejected with an error).
    pub accepted: u64,
    pub slowest_seconds: f64,
    pub largest_allocation: u64,
    pub findings: Vec<Finding>,
    pub seconds: f64,
}

/// Runs `inputs` mutated inputs through `target` in `work` (a scratch folder), seeded by
/// `seed`; findings are saved under `crashes` when given.
pub fn fuzz(
    target: &Target,
    inputs: u64,
    seed: u64,
    work: &Path,
    crashes: Option<&Path>,
) -> Summary {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ fnv(target.name));
    let mut s = Summary::default();
    let t0 = Instant::now();
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..inputs {
        let a = rng.gen_range(0..target.seeds.len());
        let b = rng.gen_range(0..target.seeds.len());
        // Now and then an unmutated seed: the reader must accept it.
        let input = if i % 1000 == 0 {
            target.seeds[a].clone()
        } else {
            mutate::mutate(&mut rng, &target.seeds[a], &target.seeds[b], target.text)
        };
        let base = alloc::live_bytes();
        alloc::reset_peak();
        let started = Instant::now();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (target.run)(&input, work)));
        let took = started.elapsed().as_secs_f64();
        let grew = alloc::peak_bytes().saturating_sub(base);
        s.inputs += 1;
        s.slowest_seconds = s.slowest_seconds.max(took);
        s.largest_allocation = s.largest_allocation.max(grew);
        let problem = match outcome {
            Err(p) => Some(format!(
                "panic: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|m| m.to_string()))
                    .unwrap_or_default()
            )),
            Ok(_) if took > MAX_SECONDS_PER_INPUT => Some(format!("took {took:.1} s")),
            Ok(_) if grew > MAX_BYTES_PER_INPUT => {
                Some(format!("allocated {} MiB", grew / (1024 * 1024)))
            }
            Ok(accepted) => {
                s.accepted += u64::from(accepted);
                None
            }
        };
        if let Some(what) = problem {
            let saved = crashes.and_then(|dir| {
                std::fs::create_dir_all(dir).ok()?;
                let p = dir.join(format!("{}-{seed}-{i}", target.name));
                std::fs::write(&p, &input).ok().map(|_| p)
            });
            s.findings.push(Finding {
                target: target.name,
                input: i,
                what,
                saved,
            });
        }
    }
    std::panic::set_hook(quiet);
    s.seconds = t0.elapsed().as_secs_f64();
    s
}

/// A stable small hash, so each target gets its own random stream from one seed.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// Seconds per input, for the summary line.
pub fn per_input(s: &Summary) -> Duration {
    Duration::from_secs_f64(s.seconds / s.inputs.max(1) as f64)
}
