//! `flow --version` names the commit; `flow completions SHELL` prints a script for that shell.

use assert_cmd::Command;
use predicates::prelude::*;

fn flow() -> Command {
    Command::cargo_bin("flow").unwrap()
}

#[test]
fn version_names_the_package_version_and_the_commit() {
    let out = flow().arg("--version").assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.starts_with(&format!("flow {} (", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    // A checkout (with git to read it) gives the short hash and date; otherwise it says so.
    let in_git = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .is_ok_and(|o| o.status.success());
    let commit = if in_git {
        "(commit "
    } else {
        "(unknown commit)"
    };
    assert!(text.contains(commit), "{text}");
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_flow()"),
        ("zsh", "#compdef flow"),
        ("fish", "complete -c flow"),
    ] {
        flow()
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains(marker))
            .stdout(predicate::str::contains("explain"));
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    flow()
        .args(["completions", "tcsh"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("possible values"));
}

/// `flow stages | head -1`: a closed pipe ends the listing quietly, as `cat` would, instead
/// of a "Broken pipe" panic.
#[test]
fn a_closed_pipe_ends_a_listing_without_a_panic() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("flow"))
        .arg("stages")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end at once: `flow` meets a closed pipe on its first line.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
}
