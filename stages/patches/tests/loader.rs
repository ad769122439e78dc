//! Background loading: same batches whatever the worker count, errors and panics surface as
//! that batch's error, resume from a start index, clean shutdown on drop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flow_patches::{
    stream_rng, AugmentConfig, BackgroundLoader, BatchSource, FractureConfig, Grid3, LoaderConfig,
    LoaderError, PatchBatchSource, PatchPipeline, PatchRng, PatchSampler, TrainingCase,
};
use rand::Rng;

fn source() -> Arc<PatchBatchSource> {
    let cases: Vec<TrainingCase> = (0..3)
        .map(|k| {
            let shape = [14 + k, 18, 16];
            let vert = Grid3::from_fn(shape, |z, y, x| {
                if (4..12).contains(&y) && (3..13).contains(&x) {
                    (z / 5 + 1) as u8
                } else {
                    0
                }
            })
            .unwrap();
            let label = vert.map(|v| u8::from(v == 2));
            let image =
                Grid3::from_fn(shape, |z, y, x| ((z * 7 + y * 3 + x + k) % 11) as f32 / 5.0)
                    .unwrap();
            TrainingCase::new(
                format!("case{k}"),
                image,
                label,
                Some(vert),
                [0.8, 0.4, 0.4],
            )
            .unwrap()
        })
        .collect();
    let pipe = PatchPipeline::new(
        PatchSampler::new([8, 12, 10], 0.5).unwrap(),
        AugmentConfig::default(),
        -1.0,
    );
    Arc::new(
        PatchBatchSource::new(
            Arc::new(cases),
            pipe,
            2,
            Some(FractureConfig::method_default(flow_patches::Range::new(
                -2.0, -2.0,
            ))),
        )
        .unwrap(),
    )
}

type Fingerprint = (Vec<usize>, Vec<u32>, Vec<u8>, bool);

fn fingerprint(b: &flow_patches::Batch) -> Fingerprint {
    (
        b.cases.clone(),
        b.stacked_images().iter().map(|v| v.to_bits()).collect(),
        b.stacked_labels(),
        b.fracture_drawn,
    )
}

#[test]
fn batches_do_not_depend_on_worker_count() {
    let src = source();
    let direct: Vec<Fingerprint> = (0..12)
        .map(|i| fingerprint(&src.make_batch(i, &mut stream_rng(42, i)).unwrap()))
        .collect();
    for workers in [1, 2, 3, 5] {
        let cfg = LoaderConfig {
            count: Some(12),
            prefetch: 1,
            ..LoaderConfig::new(42, workers)
        };
        let got: Vec<Fingerprint> = BackgroundLoader::new(src.clone(), cfg)
            .unwrap()
            .map(|b| fingerprint(&b.unwrap()))
            .collect();
        assert_eq!(got.len(), 12);
        assert!(got == direct, "workers = {workers}");
    }
    // A different seed gives different batches.
    let other = BackgroundLoader::new(
        src.clone(),
        LoaderConfig {
            count: Some(1),
            ..LoaderConfig::new(43, 2)
        },
    )
    .unwrap();
    assert!(other.map(|b| fingerprint(&b.unwrap())).next().unwrap() != direct[0]);
}

#[test]
fn resuming_at_a_start_index_continues_the_sequence() {
    let src = source();
    let all: Vec<Fingerprint> = BackgroundLoader::new(
        src.clone(),
        LoaderConfig {
            count: Some(8),
            ..LoaderConfig::new(5, 2)
        },
    )
    .unwrap()
    .map(|b| fingerprint(&b.unwrap()))
    .collect();
    let mut resumed = BackgroundLoader::new(
        src,
        LoaderConfig {
            start: 5,
            count: Some(3),
            ..LoaderConfig::new(5, 3)
        },
    )
    .unwrap();
    assert_eq!(resumed.next_index(), 5);
    let tail: Vec<Fingerprint> = resumed.by_ref().map(|b| fingerprint(&b.unwrap())).collect();
    assert!(tail == all[5..]);
    assert!(resumed.next_batch().is_none());
}

/// A source that fails on some indices, panics on one, and records how many batches it built.
struct Flaky {
    built: Arc<AtomicU64>,
    fail_on: u64,
    panic_on: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("bad volume {0}")]
struct FlakyError(u64);

impl BatchSource for Flaky {
    type Batch = (u64, u64);
    type Error = FlakyError;

    fn make_batch(&self, index: u64, rng: &mut PatchRng) -> Result<(u64, u64), FlakyError> {
        self.built.fetch_add(1, Ordering::SeqCst);
        if index == self.fail_on {
            return Err(FlakyError(index));
        }
        if index == self.panic_on {
            panic!("boom at {index}");
        }
        Ok((index, rng.gen()))
    }
}

#[test]
fn source_errors_are_returned_for_their_batch() {
    let flaky = Arc::new(Flaky {
        built: Arc::new(AtomicU64::new(0)),
        fail_on: 3,
        panic_on: u64::MAX,
    });
    let got: Vec<_> = BackgroundLoader::new(
        flaky,
        LoaderConfig {
            count: Some(6),
            ..LoaderConfig::new(1, 2)
        },
    )
    .unwrap()
    .collect();
    assert_eq!(got.len(), 6);
    for (i, r) in got.iter().enumerate() {
        match r {
            Ok((index, v)) => {
                assert_eq!(*index, i as u64);
                assert_eq!(*v, stream_rng(1, i as u64).gen::<u64>());
            }
            Err(LoaderError::Source { index: 3, source }) => {
                assert_eq!(source.to_string(), "bad volume 3")
            }
            Err(e) => panic!("unexpected error at {i}: {e}"),
        }
    }
    assert!(got[3].is_err() && got.iter().filter(|r| r.is_err()).count() == 1);
}

#[test]
fn worker_panics_surface_as_errors() {
    let flaky = Arc::new(Flaky {
        built: Arc::new(AtomicU64::new(0)),
        fail_on: u64::MAX,
        panic_on: 2,
    });
    let mut loader = BackgroundLoader::new(
        flaky,
        LoaderConfig {
            count: Some(10),
            ..LoaderConfig::new(1, 2)
        },
    )
    .unwrap();
    assert!(loader.next_batch().unwrap().is_ok());
    assert!(loader.next_batch().unwrap().is_ok());
    match loader.next_batch() {
        Some(Err(LoaderError::WorkerPanicked { index: 2, message })) => {
            assert!(message.contains("boom at 2"))
        }
        other => panic!(
            "expected the panic of batch 2, got {:?}",
            other.map(|r| r.map_err(|e| e.to_string()))
        ),
    }
    // Batch 3 belongs to the other worker and is still delivered; batch 4 (the panicked
    // worker's stream) ends the sequence instead of hanging.
    assert!(loader.next_batch().unwrap().is_ok());
    assert!(loader.next_batch().is_none());
}

#[test]
fn dropping_a_busy_loader_stops_its_workers() {
    let built = Arc::new(AtomicU64::new(0));
    let flaky = Arc::new(Flaky {
        built: built.clone(),
        fail_on: u64::MAX,
        panic_on: u64::MAX,
    });
    let mut loader = BackgroundLoader::new(
        flaky,
        LoaderConfig {
            prefetch: 1,
            ..LoaderConfig::new(0, 3)
        },
    )
    .unwrap();
    assert!(loader.next_batch().unwrap().is_ok());
    std::thread::sleep(Duration::from_millis(50));
    // Bounded: 3 workers x (1 queued + 1 blocked in send) + the one consumed.
    assert!(
        built.load(Ordering::SeqCst) <= 7,
        "built {}",
        built.load(Ordering::SeqCst)
    );
    drop(loader); // joins the workers; hanging here would fail the test by timeout
    let after = built.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(built.load(Ordering::SeqCst), after, "no work after drop");
}

#[test]
fn zero_workers_is_rejected() {
    let flaky = Arc::new(Flaky {
        built: Arc::new(AtomicU64::new(0)),
        fail_on: 0,
        panic_on: 0,
    });
    assert!(matches!(
        BackgroundLoader::new(flaky, LoaderConfig::new(0, 0)),
        Err(LoaderError::NoWorkers)
    ));
}
