//! Hash contract: the node keys of the fixture pipelines are snapshotted, so a change to key
//! computation (or to a stage's version) is never accidental. Update with
//! `INSTA_UPDATE=always cargo test --test keys` and review the diff.

mod common;

use common::Work;

fn keys(file: &str, sets: &[&str]) -> String {
    let w = Work::new();
    let root = env!("CARGO_MANIFEST_DIR");
    let state = w.path().join("state");
    // Run first (into a private state dir, without publishing) so every key is known.
    let mut run = vec![
        "--state-dir",
        state.to_str().unwrap(),
        "run",
        file,
        "--no-publish",
    ];
    for s in sets {
        run.extend(["--set", s]);
    }
    let out = w.flow(&run).current_dir(root).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut args = vec![
        "--state-dir",
        state.to_str().unwrap(),
        "plan",
        file,
        "--json",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = w.flow(&args).current_dir(root).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["id"].as_str().unwrap(),
                e["key"].as_str().unwrap_or("(depends on upstream outputs)")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn diamond_keys() {
    insta::assert_snapshot!(keys("pipelines/examples/diamond.yaml", &[]));
}

#[test]
fn diamond_keys_with_override() {
    insta::assert_snapshot!(keys("pipelines/examples/diamond.yaml", &["greeting=hi"]));
}

#[test]
fn custom_command_keys() {
    insta::assert_snapshot!(keys("pipelines/examples/custom-command.yaml", &[]));
}
