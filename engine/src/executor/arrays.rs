//! Job arrays: nodes submitted within [`ARRAY_WINDOW`] of each other with the same sbatch
//! settings (resources, partition, flags) go to Slurm as one `sbatch --array`, whose task `i`
//! runs node `i`'s batch script. A `foreach` fan-out of 200 ready nodes is then one sbatch
//! call and one squeue line while it waits, not 200; each task is still tracked, cancelled
//! and judged on its own (`<array id>_<i>`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::executor::commands::{SlurmCli, SlurmError};

/// How long the first of a burst of submissions waits for the others.
pub const ARRAY_WINDOW: Duration = Duration::from_millis(300);
/// Tasks per array at most (Slurm's default MaxArraySize is 1001).
pub const MAX_ARRAY_TASKS: usize = 1000;

/// One node's job, as the executor would submit it alone.
#[derive(Debug, Clone)]
pub struct Submission {
    pub node: String,
    /// The sbatch flags that must be equal for nodes to share an array (resources, settings).
    pub shared: Vec<String>,
    /// The node's batch script and the folder it runs in.
    pub script: PathBuf,
    pub workdir: PathBuf,
    /// Where a job of its own writes its output.
    pub out: PathBuf,
}

/// Where a node went: its job id (`123`, or `123_4` for an array task), the file Slurm writes
/// its output to, and the sbatch arguments (for the node's log).
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub id: String,
    pub out: PathBuf,
    pub args: Vec<String>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(u64, Submission)>,
    done: HashMap<u64, Result<Submitted, SlurmError>>,
    leader: bool,
    next: u64,
}

/// Gathers concurrent submissions into arrays (see the module docs).
pub struct ArrayBatcher {
    cli: Arc<dyn SlurmCli>,
    window: Duration,
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl ArrayBatcher {
    pub fn new(cli: Arc<dyn SlurmCli>, window: Duration) -> ArrayBatcher {
        ArrayBatcher {
            cli,
            window,
            queue: Mutex::default(),
            ready: Condvar::new(),
        }
    }

    /// Submits `s` (alone or in an array with others submitted meanwhile); blocks until
    /// sbatch answered.
    pub fn submit(&self, s: Submission) -> Result<Submitted, SlurmError> {
        let lock = || self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let (ticket, lead) = {
            let mut q = lock();
            let ticket = q.next;
            q.next += 1;
            q.waiting.push((ticket, s));
            let lead = !q.leader;
            q.leader = true;
            (ticket, lead)
        };
        if lead {
            std::thread::sleep(self.window);
            let batch = {
                let mut q = lock();
                q.leader = false;
                std::mem::take(&mut q.waiting)
            };
            let results = self.submit_batch(batch);
            lock().done.extend(results);
            self.ready.notify_all();
        }
        let mut q = lock();
        loop {
            if let Some(r) = q.done.remove(&ticket) {
                return r;
            }
            q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn submit_batch(
        &self,
        batch: Vec<(u64, Submission)>,
    ) -> Vec<(u64, Result<Submitted, SlurmError>)> {
        let mut groups: BTreeMap<Vec<String>, Vec<(u64, Submission)>> = BTreeMap::new();
        for (t, s) in batch {
            groups.entry(s.shared.clone()).or_default().push((t, s));
        }
        let mut out = Vec::new();
        for (_, group) in groups {
            for chunk in group.chunks(MAX_ARRAY_TASKS) {
                if let [(t, s)] = chunk {
                    let args = single_args(s);
                    let r = self.cli.sbatch(&args).map(|id| Submitted {
                        id,
                        out: s.out.clone(),
                        args,
                    });
                    out.push((*t, r));
                    continue;
                }
                let members: Vec<&Submission> = chunk.iter().map(|(_, s)| s).collect();
                let r = self.submit_array(&members);
                for (i, (t, _)) in chunk.iter().enumerate() {
                    out.push((
                        *t,
                        r.clone().map(|(id, dir, args)| Submitted {
                            id: format!("{id}_{i}"),
                            out: dir.join(format!("{i}.out")),
                            args,
                        }),
                    ));
                }
            }
        }
        out
    }

    /// One `sbatch --array` for `members` (same shared flags): the array's id, its folder
    /// (script and per-task output) and the arguments.
    fn submit_array(
        &self,
        members: &[&Submission],
    ) -> Result<(String, PathBuf, Vec<String>), SlurmError> {
        let first = members[0];
        let parent = first.workdir.parent().unwrap_or(&first.workdir);
        static ARRAYS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = ARRAYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = parent.join(format!("array-{}-{n}-{}", std::process::id(), first.node));
        let failed = |e: std::io::Error| SlurmError {
            command: "sbatch --array".into(),
            message: format!("cannot write the array script in {}: {e}", dir.display()),
        };
        std::fs::create_dir_all(&dir).map_err(failed)?;
        let script = dir.join("array.sh");
        std::fs::write(&script, array_script(members)).map_err(failed)?;
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name=flow-{}+{}", first.node, members.len() - 1),
            format!("--output={}", dir.join("%a.out").display()),
            format!("--chdir={}", dir.display()),
            format!("--array=0-{}", members.len() - 1),
        ];
        args.extend(first.shared.iter().cloned());
        args.push(script.display().to_string());
        let id = self.cli.sbatch(&args)?;
        Ok((id, dir, args))
    }
}

/// The sbatch arguments of a job of its own.
pub fn single_args(s: &Submission) -> Vec<String> {
    let mut a = vec![
        "--parsable".to_string(),
        format!("--job-name=flow-{}", s.node),
        format!("--output={}", s.out.display()),
        format!("--chdir={}", s.workdir.display()),
    ];
    a.extend(s.shared.iter().cloned());
    a.push(s.script.display().to_string());
    a
}

/// The array's script: task `i` changes to node `i`'s folder and runs its batch script.
pub fn array_script(members: &[&Submission]) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# flow: one node per array task\ncase \"$SLURM_ARRAY_TASK_ID\" in\n",
    );
    for (i, m) in members.iter().enumerate() {
        s.push_str(&format!(
            "{i}) cd {} && exec /bin/sh {} ;; # {}\n",
            quote(&m.workdir),
            quote(&m.script),
            m.node
        ));
    }
    s.push_str("esac\necho \"flow: no node for array task $SLURM_ARRAY_TASK_ID\" >&2\nexit 2\n");
    s
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::status::{JobState, Seen};

    /// Records every sbatch call; job ids count up from 100.
    #[derive(Default)]
    struct FakeCli {
        calls: Mutex<Vec<Vec<String>>>,
    }

    impl SlurmCli for FakeCli {
        fn sbatch(&self, args: &[String]) -> Result<String, SlurmError> {
            let mut c = self.calls.lock().unwrap();
            c.push(args.to_vec());
            Ok((99 + c.len()).to_string())
        }
        fn squeue(&self, _: &[String]) -> Result<BTreeMap<String, JobState>, SlurmError> {
            Ok(BTreeMap::new())
        }
        fn scontrol(&self, _: &str) -> Result<Option<Seen>, SlurmError> {
            Ok(None)
        }
        fn sacct(&self, _: &str, _: &str) -> Option<Seen> {
            None
        }
        fn scancel(&self, _: &[String]) -> Result<(), SlurmError> {
            Ok(())
        }
    }

    fn submission(dir: &Path, node: &str, cpu: u32) -> Submission {
        let workdir = dir.join(node);
        std::fs::create_dir_all(&workdir).unwrap();
        Submission {
            node: node.into(),
            shared: vec![format!("--cpus-per-task={cpu}")],
            script: workdir.join("job.sh"),
            workdir: workdir.clone(),
            out: workdir.join("job.out"),
        }
    }

    #[test]
    fn a_burst_of_submissions_goes_as_arrays_by_shared_flags() {
        let dir = tempfile::tempdir().unwrap();
        let cli = Arc::new(FakeCli::default());
        let b = Arc::new(ArrayBatcher::new(cli.clone(), Duration::from_millis(200)));
        let mut threads = Vec::new();
        for i in 0..6 {
            let (b, s) = (
                b.clone(),
                submission(dir.path(), &format!("n_{i}"), if i < 5 { 1 } else { 4 }),
            );
            threads.push(std::thread::spawn(move || b.submit(s).unwrap()));
        }
        let got: Vec<Submitted> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let calls = cli.calls.lock().unwrap().clone();
        assert_eq!(
            calls.len(),
            2,
            "one array of five, one job of its own: {calls:?}"
        );
        let array = calls
            .iter()
            .find(|c| c.iter().any(|a| a == "--array=0-4"))
            .unwrap();
        assert!(array.contains(&"--cpus-per-task=1".to_string()));
        let tasks: Vec<&Submitted> = got.iter().filter(|s| s.id.contains('_')).collect();
        assert_eq!(tasks.len(), 5);
        let mut ids: Vec<&str> = tasks.iter().map(|s| s.id.as_str()).collect();
        ids.sort();
        let base = ids[0].split('_').next().unwrap();
        assert_eq!(
            ids,
            (0..5).map(|i| format!("{base}_{i}")).collect::<Vec<_>>()
        );
        let single = got.iter().find(|s| !s.id.contains('_')).unwrap();
        assert!(single.out.ends_with("n_5/job.out"));
        // Task i runs node i's script from node i's folder; its output is the array's i.out.
        let script_path = array.last().unwrap();
        let script = std::fs::read_to_string(script_path).unwrap();
        for t in &tasks {
            let i: usize = t.id.rsplit('_').next().unwrap().parse().unwrap();
            assert!(t.out.ends_with(format!("{i}.out")));
            let line = script
                .lines()
                .find(|l| l.starts_with(&format!("{i})")))
                .unwrap();
            let node = line.rsplit("# ").next().unwrap();
            assert!(line.contains(&format!("/{node}/job.sh")), "{line}");
        }
    }

    #[test]
    fn a_lone_submission_is_a_plain_job() {
        let dir = tempfile::tempdir().unwrap();
        let cli = Arc::new(FakeCli::default());
        let b = ArrayBatcher::new(cli.clone(), Duration::from_millis(10));
        let s = submission(dir.path(), "a", 2);
        let got = b.submit(s.clone()).unwrap();
        assert_eq!(got.id, "100");
        assert_eq!(got.args, single_args(&s));
        assert!(!cli.calls.lock().unwrap()[0]
            .iter()
            .any(|a| a.starts_with("--array")));
    }
}
