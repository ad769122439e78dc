//! Shared helpers for tests that consult Python oracles (pydicom, nibabel, dcm2niix).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The oracle interpreter from FLOW_PYTHON. When unset: panic if FLOW_REQUIRE_ORACLES=1,
/// otherwise print the skip notice and return None.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("FLOW_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var("FLOW_REQUIRE_ORACLES").as_deref() == Ok("1") {
                panic!(
                    "FLOW_REQUIRE_ORACLES=1 but FLOW_PYTHON is unset: the oracle tests cannot run"
                );
            }
            println!("skipped: FLOW_PYTHON unset");
            None
        }
    }
}

/// Path of an oracle script in tests/oracle/.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("oracle")
        .join(name)
}

/// Run `python script args...`; panic with its stderr on failure; return stdout.
pub fn run_python(python: &Path, script_name: &str, args: &[&Path]) -> String {
    let out = Command::new(python)
        .arg(script(script_name))
        .args(args)
        .output()
        .expect("spawn oracle python");
    assert!(
        out.status.success(),
        "oracle {script_name} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 oracle output")
}

/// The dcm2niix executable installed next to the oracle interpreter (PyPI `dcm2niix`).
pub fn dcm2niix(python: &Path) -> PathBuf {
    let exe = python
        .parent()
        .expect("python has a folder")
        .join("dcm2niix");
    assert!(
        exe.is_file(),
        "dcm2niix not found next to {} (pip install dcm2niix)",
        python.display()
    );
    exe
}

/// Read little-endian i32 values written by an oracle script.
pub fn read_i32_raw(path: &Path) -> Vec<i32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
