//! Watching a run's Slurm jobs: one poller thread asks `squeue` once per poll about every job
//! still running (not once per job), with backoff while nothing changes, and hands each
//! waiting node its job's final state. When the run is cancelled (Ctrl-C, SIGTERM) it cancels
//! every job with one `scancel` and keeps polling until they have all ended, so no job writes
//! into the state dir after the run returns.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::executor::commands::SlurmCli;
use crate::executor::status::Seen;

/// First poll interval after a change; it grows by half each quiet poll up to [`POLL_MAX`].
pub const POLL_MIN: Duration = Duration::from_millis(250);
/// Longest poll interval.
pub const POLL_MAX: Duration = Duration::from_secs(5);
/// squeue failing this many polls in a row ends the wait of every job as unknown.
pub const MAX_POLL_FAILURES: u32 = 60;

#[derive(Default)]
struct Shared {
    /// Job id -> the day it was submitted (`YYYY-MM-DD`, for sacct's `--starttime`).
    watching: BTreeMap<String, String>,
    finished: BTreeMap<String, Seen>,
    poller: bool,
    /// scancel was sent for these jobs.
    cancelled: Vec<String>,
    /// A new job: poll soon.
    fresh: bool,
}

/// See the module docs.
pub struct Tracker {
    cli: Arc<dyn SlurmCli>,
    cancel: Arc<AtomicBool>,
    shared: Mutex<Shared>,
    changed: Condvar,
}

impl Tracker {
    pub fn new(cli: Arc<dyn SlurmCli>, cancel: Arc<AtomicBool>) -> Arc<Tracker> {
        Arc::new(Tracker {
            cli,
            cancel,
            shared: Mutex::new(Shared::default()),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts watching job `id` (submitted on `day`), starting the poller if needed.
    pub fn watch(self: &Arc<Self>, id: &str, day: &str) {
        let mut s = self.lock();
        s.watching.insert(id.to_string(), day.to_string());
        s.fresh = true;
        if !s.poller {
            s.poller = true;
            let me = self.clone();
            std::thread::Builder::new()
                .name("slurm-poll".into())
                .spawn(move || me.poll_loop())
                .expect("spawn the Slurm poller");
        }
        self.changed.notify_all();
    }

    /// Waits up to `timeout` for job `id` to end; `Some` once it has (taken: ask once).
    pub fn wait(&self, id: &str, timeout: Duration) -> Option<Seen> {
        let s = self.lock();
        let (mut s, _) = self
            .changed
            .wait_timeout_while(s, timeout, |s| !s.finished.contains_key(id))
            .unwrap_or_else(|p| p.into_inner());
        s.finished.remove(id)
    }

    /// Whether scancel was sent for job `id` by this run.
    pub fn was_cancelled(&self, id: &str) -> bool {
        self.lock().cancelled.iter().any(|c| c == id)
    }

    fn poll_loop(self: Arc<Self>) {
        let mut interval = POLL_MIN;
        let mut failures = 0u32;
        loop {
            // Sleep in short steps so a cancel is acted on at once.
            let until = Instant::now() + interval;
            while Instant::now() < until && !self.cancel.load(Ordering::Relaxed) {
                let s = self.lock();
                let (mut s, _) = self
                    .changed
                    .wait_timeout(s, Duration::from_millis(100))
                    .unwrap_or_else(|p| p.into_inner());
                if std::mem::take(&mut s.fresh) {
                    interval = POLL_MIN;
                    break;
                }
            }
            let (ids, days): (Vec<String>, BTreeMap<String, String>) = {
                let mut s = self.lock();
                if s.watching.is_empty() {
                    s.poller = false;
                    return;
                }
                (s.watching.keys().cloned().collect(), s.watching.clone())
            };
            if self.cancel.load(Ordering::Relaxed) {
                let todo: Vec<String> = {
                    let s = self.lock();
                    ids.iter()
                        .filter(|i| !s.cancelled.contains(i))
                        .cloned()
                        .collect()
                };
                if !todo.is_empty() {
                    if let Err(e) = self.cli.scancel(&todo) {
                        tracing::warn!("{e}");
                    }
                    self.lock().cancelled.extend(todo);
                }
                interval = POLL_MIN;
            }
            let states = match self.cli.squeue(&ids) {
                Ok(m) => {
                    failures = 0;
                    m
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!("{e} (poll {failures} of {MAX_POLL_FAILURES})");
                    if failures >= MAX_POLL_FAILURES {
                        let mut s = self.lock();
                        for id in ids {
                            s.watching.remove(&id);
                            s.finished.insert(
                                id,
                                Seen::Unknown(format!("squeue kept failing: {}", e.message)),
                            );
                        }
                        self.changed.notify_all();
                    }
                    interval = (interval * 3 / 2).min(POLL_MAX);
                    continue;
                }
            };
            let mut ended = Vec::new();
            for id in &ids {
                match states.get(id) {
                    Some(st) if st.is_active() => {}
                    // Final (or gone): scontrol has the exit code, sacct what scontrol forgot.
                    _ => ended.push((id.clone(), self.final_state(id, &days[id]))),
                }
            }
            let mut s = self.lock();
            let any = !ended.is_empty();
            for (id, seen) in ended {
                if let Some(seen) = seen {
                    s.watching.remove(&id);
                    s.finished.insert(id, seen);
                }
            }
            drop(s);
            if any {
                self.changed.notify_all();
                interval = POLL_MIN;
            } else {
                interval = (interval * 3 / 2).min(POLL_MAX);
            }
        }
    }

    /// How job `id` ended; `None` while scontrol still calls it active (squeue raced it).
    fn final_state(&self, id: &str, day: &str) -> Option<Seen> {
        match self.cli.scontrol(id) {
            Ok(Some(Seen::Active(_))) => None,
            Ok(Some(seen)) => Some(seen),
            Ok(None) => Some(
                self.cli
                    .sacct(id, day)
                    .unwrap_or_else(|| Seen::Unknown("not in squeue, scontrol or sacct".into())),
            ),
            Err(e) => Some(
                self.cli
                    .sacct(id, day)
                    .unwrap_or_else(|| Seen::Unknown(e.to_string())),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::commands::SlurmError;
    use crate::executor::status::{Finished, JobState};

    /// A cluster in memory: jobs run until `ends_after` squeue calls, then COMPLETED.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
        state: Mutex<BTreeMap<String, JobState>>,
    }

    impl SlurmCli for Fake {
        fn sbatch(&self, _: &[String]) -> Result<String, SlurmError> {
            unreachable!()
        }
        fn squeue(&self, ids: &[String]) -> Result<BTreeMap<String, JobState>, SlurmError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("squeue {}", ids.join(",")));
            let st = self.state.lock().unwrap();
            Ok(ids
                .iter()
                .filter_map(|i| st.get(i).map(|s| (i.clone(), s.clone())))
                .collect())
        }
        fn scontrol(&self, id: &str) -> Result<Option<Seen>, SlurmError> {
            let st = self.state.lock().unwrap();
            Ok(st.get(id).map(|s| {
                Seen::Finished(Finished {
                    state: s.clone(),
                    exit_code: Some(0),
                    signal: Some(0),
                    reason: String::new(),
                })
            }))
        }
        fn sacct(&self, _: &str, _: &str) -> Option<Seen> {
            None
        }
        fn scancel(&self, ids: &[String]) -> Result<(), SlurmError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("scancel {}", ids.join(" ")));
            let mut st = self.state.lock().unwrap();
            for i in ids {
                st.insert(i.clone(), JobState::Cancelled);
            }
            Ok(())
        }
    }

    #[test]
    fn one_squeue_for_all_jobs_and_unknown_is_not_success() {
        let fake = Arc::new(Fake::default());
        for id in ["1", "2"] {
            fake.state
                .lock()
                .unwrap()
                .insert(id.into(), JobState::Running);
        }
        let t = Tracker::new(fake.clone(), Arc::new(AtomicBool::new(false)));
        t.watch("1", "2026-01-01");
        t.watch("2", "2026-01-01");
        t.watch("3", "2026-01-01"); // never submitted: unknown to every command
        let third = t.wait("3", Duration::from_secs(5)).expect("ends");
        assert!(matches!(third, Seen::Unknown(_)), "{third:?}");
        assert_eq!(
            t.wait("1", Duration::from_millis(300)),
            None,
            "still running"
        );
        fake.state
            .lock()
            .unwrap()
            .insert("1".into(), JobState::Completed);
        let first = t.wait("1", Duration::from_secs(5)).expect("ends");
        assert!(matches!(
            first,
            Seen::Finished(Finished {
                state: JobState::Completed,
                ..
            })
        ));
        let calls = fake.calls.lock().unwrap().clone();
        assert!(calls.iter().any(|c| c == "squeue 1,2,3"), "{calls:?}");
        assert!(calls.iter().all(|c| c.starts_with("squeue")));
    }

    #[test]
    fn cancel_sends_one_scancel_for_all_jobs() {
        let fake = Arc::new(Fake::default());
        for id in ["7", "8", "9"] {
            fake.state
                .lock()
                .unwrap()
                .insert(id.into(), JobState::Pending);
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let t = Tracker::new(fake.clone(), cancel.clone());
        for id in ["7", "8", "9"] {
            t.watch(id, "2026-01-01");
        }
        std::thread::sleep(Duration::from_millis(400));
        cancel.store(true, Ordering::SeqCst);
        for id in ["7", "8", "9"] {
            let seen = t.wait(id, Duration::from_secs(5)).expect("ends");
            assert!(matches!(
                seen,
                Seen::Finished(Finished {
                    state: JobState::Cancelled,
                    ..
                })
            ));
            assert!(t.was_cancelled(id));
        }
        let calls = fake.calls.lock().unwrap().clone();
        let scancels: Vec<_> = calls.iter().filter(|c| c.starts_with("scancel")).collect();
        assert_eq!(scancels, ["scancel 7 8 9"]);
    }
}
