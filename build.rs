//! Puts the commit into `flow --version` (FLOW_COMMIT): the short hash and commit date from
//! git; "unknown commit" outside a git checkout (a source archive).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    let commit = match (
        git(&["rev-parse", "--short=10", "HEAD"]),
        git(&["log", "-1", "--format=%cs"]),
    ) {
        (Some(hash), Some(date)) => format!("commit {hash}, {date}"),
        _ => "unknown commit".to_string(),
    };
    println!("cargo:rustc-env=FLOW_COMMIT={commit}");
    // A new commit, checkout, reset or rebase moves HEAD and appends to HEAD's reflog; the
    // branch file may be packed away, so watch all three. Paths come from git itself (in a
    // worktree `.git` is a file, not the directory).
    for path in ["HEAD", "logs/HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &reference]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
