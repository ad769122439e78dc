//! Reading Slurm's answers: job states and the output of `squeue`, `scontrol show job -o`
//! and `sacct`, as plain text parsing so it is unit-tested without a cluster.
//!
//! One `squeue -h -t all -j ID,ID,... -o '%i %T'` per poll gives every job's state; a job in
//! a final state (or gone from squeue) is then asked of `scontrol show job -o ID` for its exit
//! code and reason (slurmctld keeps finished jobs for `MinJobAge`, 300 s by default), and of
//! `sacct` when accounting is on. A job none of them knows is [`Seen::Unknown`]: never a success.

use std::collections::BTreeMap;

/// A Slurm job state (`JobState=` of scontrol, `%T` of squeue, `State` of sacct).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    /// Ending: processes are being stopped. Not final: outputs may still be written.
    Completing,
    Completed,
    Failed,
    Timeout,
    OutOfMemory,
    NodeFail,
    Preempted,
    Cancelled,
    BootFail,
    Deadline,
    /// Another state; [`ACTIVE_OTHER`] lists the ones that are not final.
    Other(String),
}

/// States besides pending/running/completing in which a job is not finished yet.
pub const ACTIVE_OTHER: [&str; 10] = [
    "CONFIGURING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
    "RESV_DEL_HOLD",
];

impl JobState {
    /// Parses a state name; sacct's `CANCELLED by 0` counts as `CANCELLED`.
    pub fn parse(s: &str) -> JobState {
        let word = s
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches('+');
        match word {
            "PENDING" | "PD" => JobState::Pending,
            "RUNNING" | "R" => JobState::Running,
            "COMPLETING" | "CG" => JobState::Completing,
            "COMPLETED" | "CD" => JobState::Completed,
            "FAILED" | "F" => JobState::Failed,
            "TIMEOUT" | "TO" => JobState::Timeout,
            "OUT_OF_MEMORY" | "OOM" => JobState::OutOfMemory,
            "NODE_FAIL" | "NF" => JobState::NodeFail,
            "PREEMPTED" | "PR" => JobState::Preempted,
            "CANCELLED" | "CA" => JobState::Cancelled,
            "BOOT_FAIL" | "BF" => JobState::BootFail,
            "DEADLINE" | "DL" => JobState::Deadline,
            other => JobState::Other(other.to_string()),
        }
    }

    /// Slurm's name of the state.
    pub fn name(&self) -> &str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Running => "RUNNING",
            JobState::Completing => "COMPLETING",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Timeout => "TIMEOUT",
            JobState::OutOfMemory => "OUT_OF_MEMORY",
            JobState::NodeFail => "NODE_FAIL",
            JobState::Preempted => "PREEMPTED",
            JobState::Cancelled => "CANCELLED",
            JobState::BootFail => "BOOT_FAIL",
            JobState::Deadline => "DEADLINE",
            JobState::Other(s) => s,
        }
    }

    /// Not finished: the job may still run (or be started, or write files).
    pub fn is_active(&self) -> bool {
        match self {
            JobState::Pending | JobState::Running | JobState::Completing => true,
            JobState::Other(s) => ACTIVE_OTHER.contains(&s.as_str()),
            _ => false,
        }
    }

    /// A failure of the machine or the scheduler, not of the node: worth a retry.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            JobState::NodeFail | JobState::Preempted | JobState::BootFail
        )
    }
}

/// How a job ended, as scontrol or sacct tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub state: JobState,
    /// The batch script's exit code (`ExitCode=3:0` -> 3).
    pub exit_code: Option<i32>,
    /// The signal that ended it (`ExitCode=0:9` -> 9).
    pub signal: Option<i32>,
    /// scontrol's `Reason=` (e.g. `NonZeroExitCode`, `JobLaunchFailure`), empty when none.
    pub reason: String,
}

/// What Slurm says about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Active(JobState),
    Finished(Finished),
    /// Neither squeue, scontrol nor sacct knows the job (the text says what was asked).
    Unknown(String),
}

/// `squeue -h -o '%i %T'` lines -> job id -> state.
pub fn parse_squeue(text: &str) -> BTreeMap<String, JobState> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let id = w.next()?;
            let state = w.next()?;
            Some((id.to_string(), JobState::parse(state)))
        })
        .collect()
}

/// Whether an error of squeue or scontrol means "no such job" (rather than a broken call).
pub fn is_invalid_job_id(stderr: &str) -> bool {
    stderr.contains("Invalid job id")
}

/// `ExitCode=3:0` -> (3, 0).
fn exit_pair(s: &str) -> (Option<i32>, Option<i32>) {
    let (a, b) = s.split_once(':').unwrap_or((s, "0"));
    (a.trim().parse().ok(), b.trim().parse().ok())
}

/// `scontrol show job -o ID` (one line of `Key=Value` words) -> how it ended, when it has.
pub fn parse_scontrol(text: &str) -> Option<Seen> {
    let line = text.lines().find(|l| l.contains("JobState="))?;
    let mut fields = BTreeMap::new();
    for word in line.split_whitespace() {
        if let Some((k, v)) = word.split_once('=') {
            fields.entry(k).or_insert(v);
        }
    }
    let state = JobState::parse(fields.get("JobState")?);
    if state.is_active() {
        return Some(Seen::Active(state));
    }
    let (exit_code, signal) = fields
        .get("ExitCode")
        .map(|e| exit_pair(e))
        .unwrap_or((None, None));
    let reason = fields
        .get("Reason")
        .filter(|r| **r != "None" && **r != "(null)")
        .map(|r| r.to_string())
        .unwrap_or_default();
    Some(Seen::Finished(Finished {
        state,
        exit_code,
        signal,
        reason,
    }))
}

/// `sacct -n -P -X -j ID -o JobID,State,ExitCode` -> how job `id` ended, when it has.
pub fn parse_sacct(text: &str, id: &str) -> Option<Seen> {
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() < 3 || f[0] != id {
            continue;
        }
        let state = JobState::parse(f[1]);
        if state.is_active() {
            return Some(Seen::Active(state));
        }
        let (exit_code, signal) = exit_pair(f[2]);
        return Some(Seen::Finished(Finished {
            state,
            exit_code,
            signal,
            reason: String::new(),
        }));
    }
    None
}

/// `sbatch --parsable` prints `ID` or `ID;CLUSTER`.
pub fn parse_sbatch(stdout: &str) -> Option<String> {
    let id = stdout.trim().split(';').next()?.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines() {
        let m = parse_squeue("12 RUNNING\n13 PENDING\n14 COMPLETED\n\n15 CANCELLED\n");
        assert_eq!(m["12"], JobState::Running);
        assert_eq!(m["13"], JobState::Pending);
        assert_eq!(m["14"], JobState::Completed);
        assert_eq!(m["15"], JobState::Cancelled);
        assert!(m["12"].is_active() && !m["14"].is_active());
        assert!(JobState::parse("REQUEUED").is_active());
        assert!(!JobState::parse("SPECIAL_EXIT").is_active());
    }

    /// Real output of Slurm 22.05 for a script that exited with code 3.
    #[test]
    fn scontrol_exit_code_and_reason() {
        let text = "JobId=2 JobName=j.sh UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901758 Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:00 TimeLimit=UNLIMITED Command=/tmp/sl/j.sh WorkDir=/tmp/sl StdErr=/tmp/sl/out-2.txt StdIn=/dev/null StdOut=/tmp/sl/out-2.txt Power= \n";
        assert_eq!(
            parse_scontrol(text),
            Some(Seen::Finished(Finished {
                state: JobState::Failed,
                exit_code: Some(3),
                signal: Some(0),
                reason: "NonZeroExitCode".into()
            }))
        );
        let oom = "JobId=3 JobState=OUT_OF_MEMORY Reason=OutOfMemory ExitCode=0:125";
        let Some(Seen::Finished(f)) = parse_scontrol(oom) else {
            panic!()
        };
        assert_eq!(f.state, JobState::OutOfMemory);
        let running = "JobId=4 JobState=RUNNING Reason=None ExitCode=0:0";
        assert_eq!(
            parse_scontrol(running),
            Some(Seen::Active(JobState::Running))
        );
        assert_eq!(
            parse_scontrol("slurm_load_jobs error: Invalid job id specified"),
            None
        );
    }

    #[test]
    fn sacct_rows() {
        let text = "7|CANCELLED by 0|0:15\n7.batch|CANCELLED|0:15\n8|TIMEOUT|0:0\n";
        let Some(Seen::Finished(f)) = parse_sacct(text, "7") else {
            panic!()
        };
        assert_eq!((f.state, f.signal), (JobState::Cancelled, Some(15)));
        let Some(Seen::Finished(f)) = parse_sacct(text, "8") else {
            panic!()
        };
        assert_eq!(f.state, JobState::Timeout);
        assert_eq!(parse_sacct(text, "9"), None);
    }

    #[test]
    fn sbatch_ids() {
        assert_eq!(parse_sbatch("42\n").as_deref(), Some("42"));
        assert_eq!(parse_sbatch("42;cluster\n").as_deref(), Some("42"));
        assert_eq!(parse_sbatch("Submitted batch job 42"), None);
        assert_eq!(parse_sbatch(""), None);
    }
}
