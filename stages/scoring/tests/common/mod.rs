//! Helpers shared by the integration tests: the Python oracle switch and random cohorts.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The oracle interpreter, or `None` (after printing why) when oracle tests are optional and
/// `FLOW_PYTHON` is unset. Panics when `FLOW_REQUIRE_ORACLES=1` and it is unset.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("FLOW_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var("FLOW_REQUIRE_ORACLES").as_deref() == Ok("1") {
                panic!("FLOW_REQUIRE_ORACLES=1 but FLOW_PYTHON is unset");
            }
            println!("skipped: FLOW_PYTHON unset");
            None
        }
    }
}

/// Runs `tests/oracle/<script>` with arguments and parses its JSON stdout.
pub fn run_oracle(python: &PathBuf, script: &str, args: &[&std::path::Path]) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/oracle")
        .join(script);
    let out = Command::new(python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "oracle {} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oracle printed invalid JSON")
}

/// A seeded generator.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Random targets with `patient_overall` = any vertebra positive.
pub fn random_targets(rng: &mut ChaCha8Rng, n: usize, rate: f64) -> Vec<[u8; 8]> {
    (0..n)
        .map(|_| {
            let mut y = [0u8; 8];
            for v in y.iter_mut().skip(1) {
                *v = rng.gen_bool(rate) as u8;
            }
            y[0] = y[1..].contains(&1) as u8;
            y
        })
        .collect()
}

/// Study ids that look like the competition's.
pub fn uids(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("1.2.826.0.1.3680043.{}", 1000 + i))
        .collect()
}
