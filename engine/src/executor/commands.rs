//! The Slurm commands flow calls (`sbatch`, `squeue`, `scontrol`, `sacct`, `scancel`),
//! behind a trait so the poller and the state mapping are tested with a fake cluster.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::executor::status::{self, parse_sbatch, Seen};

/// A failed Slurm command: what was run and what it said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{command}` failed: {message}")]
pub struct SlurmError {
    pub command: String,
    pub message: String,
}

/// The calls flow makes to Slurm.
pub trait SlurmCli: Send + Sync {
    /// Submits a batch job; returns its id.
    fn sbatch(&self, args: &[String]) -> Result<String, SlurmError>;
    /// States of the given jobs (one call); a job missing from the map is not in squeue.
    fn squeue(
        &self,
        ids: &[String],
    ) -> Result<std::collections::BTreeMap<String, status::JobState>, SlurmError>;
    /// How one job ended (or that it is still active); `None` when slurmctld no longer knows it.
    fn scontrol(&self, id: &str) -> Result<Option<Seen>, SlurmError>;
    /// The accounting record of a job submitted on or after `since` (`YYYY-MM-DD`); `None`
    /// when there is none (or accounting is off).
    fn sacct(&self, id: &str, since: &str) -> Option<Seen>;
    /// Cancels all the given jobs (one call).
    fn scancel(&self, ids: &[String]) -> Result<(), SlurmError>;
}

/// How often sbatch is tried when slurmctld is too busy to answer ("Socket timed out").
pub const SBATCH_TRIES: u32 = 4;

/// The real commands, found on `PATH`.
pub struct RealCli;

fn run(program: &str, args: &[String]) -> Result<(String, String, bool), SlurmError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SlurmError {
            command: program.into(),
            message: format!("cannot run it ({e}); is Slurm installed and on PATH?"),
        })?;
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    ))
}

/// Whether sbatch's complaint is the controller being busy (worth another try).
pub fn is_busy(stderr: &str) -> bool {
    stderr.contains("Socket timed out")
        || stderr.contains("Unable to contact slurm controller")
        || stderr.contains("Resource temporarily unavailable")
}

/// Calls `submit` (one sbatch: stdout, stderr, success) until it succeeds, fails for good,
/// or has been tried [`SBATCH_TRIES`] times while the controller was busy; `sleep` waits
/// 0.5 s, then 1 s, 2 s between tries.
pub fn sbatch_with_retry(
    mut submit: impl FnMut() -> Result<(String, String, bool), SlurmError>,
    mut sleep: impl FnMut(Duration),
) -> Result<String, SlurmError> {
    let mut delay = Duration::from_millis(500);
    let mut tries = 0;
    loop {
        tries += 1;
        let (out, err, ok) = submit()?;
        if ok {
            return parse_sbatch(&out).ok_or_else(|| SlurmError {
                command: "sbatch --parsable".into(),
                message: format!("printed no job id: {out:?}"),
            });
        }
        if is_busy(&err) && tries < SBATCH_TRIES {
            tracing::warn!("sbatch: {} (try {tries} of {SBATCH_TRIES})", err.trim());
            sleep(delay);
            delay *= 2;
            continue;
        }
        return Err(SlurmError {
            command: "sbatch".into(),
            message: err.trim().to_string(),
        });
    }
}

impl SlurmCli for RealCli {
    fn sbatch(&self, args: &[String]) -> Result<String, SlurmError> {
        sbatch_with_retry(|| run("sbatch", args), std::thread::sleep)
    }

    fn squeue(
        &self,
        ids: &[String],
    ) -> Result<std::collections::BTreeMap<String, status::JobState>, SlurmError> {
        let args = [
            "-h".to_string(),
            // One line per array task, never a collapsed `123_[0-199]`.
            "-r".into(),
            "-t".into(),
            "all".into(),
            "-j".into(),
            ids.join(","),
            "-o".into(),
            "%i %T".into(),
        ];
        let (out, err, ok) = run("squeue", &args)?;
        if ok {
            Ok(status::parse_squeue(&out))
        } else if status::is_invalid_job_id(&err) {
            // Every listed job is unknown to slurmctld.
            Ok(Default::default())
        } else {
            Err(SlurmError {
                command: "squeue".into(),
                message: err.trim().to_string(),
            })
        }
    }

    fn scontrol(&self, id: &str) -> Result<Option<Seen>, SlurmError> {
        let args = ["show".to_string(), "job".into(), "-o".into(), id.into()];
        let (out, err, ok) = run("scontrol", &args)?;
        if ok {
            Ok(status::parse_scontrol(&out))
        } else if status::is_invalid_job_id(&err) {
            Ok(None)
        } else {
            Err(SlurmError {
                command: format!("scontrol show job {id}"),
                message: err.trim().to_string(),
            })
        }
    }

    fn sacct(&self, id: &str, since: &str) -> Option<Seen> {
        let args = [
            "-n",
            "-P",
            "-X",
            "-j",
            id,
            "--starttime",
            since,
            "-o",
            "JobID,State,ExitCode",
        ]
        .map(String::from);
        match run("sacct", &args) {
            Ok((out, _, true)) => status::parse_sacct(&out, id),
            _ => None,
        }
    }

    fn scancel(&self, ids: &[String]) -> Result<(), SlurmError> {
        if ids.is_empty() {
            return Ok(());
        }
        let (_, err, ok) = run("scancel", ids)?;
        // A job that ended meanwhile makes scancel complain; the others were still cancelled.
        if ok || status::is_invalid_job_id(&err) || err.contains("already completing") {
            Ok(())
        } else {
            Err(SlurmError {
                command: format!("scancel {}", ids.join(" ")),
                message: err.trim().to_string(),
            })
        }
    }
}

/// Whether `program` is an executable on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(d.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(
        list: Vec<(&'static str, &'static str, bool)>,
    ) -> impl FnMut() -> Result<(String, String, bool), SlurmError> {
        let mut it = list.into_iter();
        move || {
            let (o, e, ok) = it.next().expect("no more answers");
            Ok((o.to_string(), e.to_string(), ok))
        }
    }

    #[test]
    fn sbatch_is_retried_only_while_the_controller_is_busy() {
        let busy =
            "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation";
        let mut slept = Vec::new();
        let id = sbatch_with_retry(
            answers(vec![
                ("", busy, false),
                ("", busy, false),
                ("77\n", "", true),
            ]),
            |d| slept.push(d.as_millis()),
        )
        .unwrap();
        assert_eq!((id.as_str(), slept), ("77", vec![500, 1000]));

        let e = sbatch_with_retry(answers(vec![("", busy, false); 4]), |_| {}).unwrap_err();
        assert!(e.message.contains("Socket timed out"), "{e}");

        let bad = "sbatch: error: invalid partition specified: gpu";
        let e = sbatch_with_retry(answers(vec![("", bad, false)]), |_| {
            panic!("a bad partition is not retried")
        })
        .unwrap_err();
        assert!(e.to_string().contains("invalid partition"), "{e}");
    }
}
