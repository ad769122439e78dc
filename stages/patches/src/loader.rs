//! Background batch production: worker threads build batches ahead of the training loop
//! through bounded channels, so loading and augmentation overlap compute.
//!
//! Determinism: batch `i` is built with `stream_rng(seed, i)` and always by worker
//! `i mod workers`, and the consumer reads the workers' channels round-robin, so the sequence
//! of batches depends only on `(seed, start index)`, never on thread timing or the number of
//! workers. Memory is bounded by `workers × (prefetch + 1)` batches. Dropping the loader stops
//! and joins the workers. A source error or a worker panic comes back as that batch's error.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use thiserror::Error;

use crate::seeding::{stream_rng, PatchRng};

/// Something that builds batch number `index` from a generator seeded for that index.
pub trait BatchSource: Send + Sync + 'static {
    type Batch: Send + 'static;
    type Error: std::error::Error + Send + Sync + 'static;

    /// Builds batch `index`. Must depend only on `index` and the draws from `rng`.
    fn make_batch(&self, index: u64, rng: &mut PatchRng) -> Result<Self::Batch, Self::Error>;
}

/// Errors from the loader.
#[derive(Debug, Error)]
pub enum LoaderError<E: std::error::Error + 'static> {
    #[error("loader needs at least one worker thread")]
    NoWorkers,
    #[error("failed to spawn loader worker {worker}")]
    Spawn {
        worker: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to build batch {index}")]
    Source {
        index: u64,
        #[source]
        source: E,
    },
    #[error("loader worker panicked while building batch {index}: {message}")]
    WorkerPanicked { index: u64, message: String },
}

/// Loader settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Seed of the whole run; batch `i` uses stream `i` of it.
    pub seed: u64,
    /// Worker threads (each may additionally use the rayon pool).
    pub workers: usize,
    /// Batches each worker may hold ready beyond the one it is building.
    pub prefetch: usize,
    /// First batch index (e.g. `epoch × iterations` when resuming).
    pub start: u64,
    /// Number of batches to produce; `None` = unbounded.
    pub count: Option<u64>,
}

impl LoaderConfig {
    /// `workers` threads, prefetch 2, starting at batch 0, unbounded.
    pub fn new(seed: u64, workers: usize) -> Self {
        Self {
            seed,
            workers,
            prefetch: 2,
            start: 0,
            count: None,
        }
    }
}

type Item<S> = (
    u64,
    Result<<S as BatchSource>::Batch, LoaderError<<S as BatchSource>::Error>>,
);

/// Produces batches of a [`BatchSource`] on background threads, in index order.
pub struct BackgroundLoader<S: BatchSource> {
    receivers: Vec<Receiver<Item<S>>>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    next: u64,
    end: Option<u64>,
    start: u64,
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

fn worker_loop<S: BatchSource>(
    source: &S,
    seed: u64,
    first: u64,
    step: u64,
    end: Option<u64>,
    stop: &AtomicBool,
    tx: SyncSender<Item<S>>,
) {
    let mut index = first;
    while end.is_none_or(|e| index < e) && !stop.load(Ordering::Relaxed) {
        let mut rng = stream_rng(seed, index);
        let result = match catch_unwind(AssertUnwindSafe(|| source.make_batch(index, &mut rng))) {
            Ok(r) => r.map_err(|source| LoaderError::Source { index, source }),
            Err(p) => Err(LoaderError::WorkerPanicked {
                index,
                message: panic_message(p),
            }),
        };
        let panicked = matches!(result, Err(LoaderError::WorkerPanicked { .. }));
        if tx.send((index, result)).is_err() || panicked {
            return; // consumer gone, or this worker's state is suspect after a panic
        }
        index += step;
    }
}

impl<S: BatchSource> BackgroundLoader<S> {
    /// Starts the workers.
    pub fn new(source: Arc<S>, cfg: LoaderConfig) -> Result<Self, LoaderError<S::Error>> {
        if cfg.workers == 0 {
            return Err(LoaderError::NoWorkers);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let end = cfg.count.map(|c| cfg.start.saturating_add(c));
        let mut loader = Self {
            receivers: Vec::new(),
            handles: Vec::new(),
            stop: stop.clone(),
            next: cfg.start,
            end,
            start: cfg.start,
        };
        for w in 0..cfg.workers {
            let (tx, rx) = sync_channel(cfg.prefetch);
            let (source, stop) = (source.clone(), stop.clone());
            let (seed, step) = (cfg.seed, cfg.workers as u64);
            let first = cfg.start + w as u64;
            let handle = std::thread::Builder::new()
                .name(format!("patch-loader-{w}"))
                .spawn(move || worker_loop(&*source, seed, first, step, end, &stop, tx))
                .map_err(|source| LoaderError::Spawn { worker: w, source })?;
            loader.receivers.push(rx);
            loader.handles.push(handle);
        }
        tracing::debug!(
            workers = cfg.workers,
            prefetch = cfg.prefetch,
            start = cfg.start,
            "background loader started"
        );
        Ok(loader)
    }

    /// Index of the batch the next call returns.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// The next batch in index order; `None` once `count` batches were returned (or after a
    /// worker panicked and its stream ended).
    pub fn next_batch(&mut self) -> Option<Result<S::Batch, LoaderError<S::Error>>> {
        if self.end.is_some_and(|e| self.next >= e) {
            return None;
        }
        let w = ((self.next - self.start) % self.receivers.len() as u64) as usize;
        match self.receivers[w].recv() {
            Ok((index, result)) => {
                debug_assert_eq!(index, self.next);
                self.next += 1;
                Some(result)
            }
            // The worker ended early: only after it reported a panic, which was returned.
            Err(_) => None,
        }
    }
}

impl<S: BatchSource> Iterator for BackgroundLoader<S> {
    type Item = Result<S::Batch, LoaderError<S::Error>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
    }
}

impl<S: BatchSource> Drop for BackgroundLoader<S> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receivers wakes workers blocked on a full channel.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            // Panics inside make_batch are caught; a panic here would be a bug in the loop.
            if h.join().is_err() {
                tracing::error!("patch loader worker thread panicked outside batch building");
            }
        }
    }
}
