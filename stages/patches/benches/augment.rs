//! Augmentation throughput: patches per second of `PatchPipeline::sample` for cubic patches
//! cut from a larger random volume, with the method's recipe ("recipe": default
//! probabilities), with every augmentation firing ("all"; mirroring stays 0.5 per axis, as
//! batchgenerators' MirrorTransform), with none ("none": a crop) and one at a time. Prints one tab-separated line
//! per configuration; `bench/run.sh` runs it beside batchgenerators and builds the table.
//!
//! Two rates per line: patches per wall-clock second and per CPU second of the process (the
//! latter is stable when other jobs share the cores).
//!
//! Usage: cargo bench -p flow-patches --bench augment -- [PATCH SOURCE PER_BLOCK BLOCKS]...

use std::time::Instant;

use flow_patches::augment::Range;
use flow_patches::{stream_rng, AugmentConfig, Grid3, PatchPipeline, PatchSampler, TrainingCase};
use rand::Rng;

fn all_on() -> AugmentConfig {
    AugmentConfig {
        p_rotation: 1.0,
        p_scale: 1.0,
        p_noise: 1.0,
        p_blur: 1.0,
        p_brightness: 1.0,
        p_contrast: 1.0,
        p_low_res: 1.0,
        p_gamma_inverted: 1.0,
        p_gamma: 1.0,
        ..AugmentConfig::default()
    }
}

/// CPU seconds used by this process (all threads): robust to other processes sharing the
/// cores, unlike wall time.
fn process_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn run(patch: usize, source: usize, per_block: usize, blocks: usize) {
    let mut rng = stream_rng(0, 0);
    let shape = [source; 3];
    let image = Grid3::from_fn(shape, |_, _, _| rng.gen_range(-1.0f32..1.0)).unwrap();
    let label = Grid3::from_fn(shape, |z, y, x| ((z / 8 + y / 8 + x / 8) % 3) as u8).unwrap();
    let case = TrainingCase::new("bench", image, label, None, [1.0; 3]).unwrap();
    let sampler = PatchSampler::new([patch; 3], 0.33).unwrap();
    let none = AugmentConfig::none();
    let modes = [
        ("recipe", AugmentConfig::default()),
        ("all", all_on()),
        ("none", none.clone()),
        (
            "spatial",
            AugmentConfig {
                p_rotation: 1.0,
                p_scale: 1.0,
                ..none.clone()
            },
        ),
        (
            "noise",
            AugmentConfig {
                p_noise: 1.0,
                ..none.clone()
            },
        ),
        (
            "blur",
            AugmentConfig {
                p_blur: 1.0,
                ..none.clone()
            },
        ),
        (
            "contrast",
            AugmentConfig {
                p_contrast: 1.0,
                ..none.clone()
            },
        ),
        (
            "low_res",
            AugmentConfig {
                p_low_res: 1.0,
                ..none.clone()
            },
        ),
        (
            "gamma",
            AugmentConfig {
                p_gamma: 1.0,
                ..none.clone()
            },
        ),
        (
            "mirror",
            AugmentConfig {
                p_mirror: [0.5; 3],
                ..none.clone()
            },
        ),
    ];
    for (name, cfg) in modes {
        // "all" keeps the recipe's ranges but fixes the scale away from 1 so it always resamples.
        let cfg = if name == "all" || name == "spatial" {
            AugmentConfig {
                scale: Range::new(0.8, 1.25),
                ..cfg
            }
        } else {
            cfg
        };
        let pipe = PatchPipeline::new(sampler.clone(), cfg, 0.0);
        let mut r = stream_rng(1, 0);
        pipe.sample(&case, None, &mut r).unwrap(); // warm-up
        let mut rates = Vec::new();
        let mut cpu_rates = Vec::new();
        for _ in 0..blocks {
            let (t, c) = (Instant::now(), process_cpu_seconds());
            for _ in 0..per_block {
                std::hint::black_box(pipe.sample(&case, None, &mut r).unwrap());
            }
            rates.push(per_block as f64 / t.elapsed().as_secs_f64());
            cpu_rates.push(per_block as f64 / (process_cpu_seconds() - c));
        }
        let threads = rayon::current_num_threads();
        println!(
            "flow\t{name}\t{patch}\t{source}\t{threads}\t{:.2}\t{:.2}",
            median(rates),
            median(cpu_rates)
        );
    }
}

fn main() {
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let configs: Vec<[usize; 4]> = if nums.len() >= 4 {
        nums.chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect()
    } else {
        vec![[64, 96, 20, 5], [128, 192, 4, 5]]
    };
    println!("impl\tmode\tpatch\tsource\tthreads\tpatches_per_s\tpatches_per_cpu_s");
    for [patch, source, per_block, blocks] in configs {
        run(patch, source, per_block, blocks);
    }
}
