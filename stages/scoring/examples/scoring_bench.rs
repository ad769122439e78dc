//! Benchmark table for flow-scoring (release build):
//! `FLOW_PYTHON=.venv/bin/python cargo run --release -p flow-scoring --example scoring_bench`
//!
//! Times, as medians: `score_files` against scikit-learn on the same files (competition size,
//! 2019 studies), `summarise_study` on a 96^3 ROI, and `fit_quantile_params` on 2019 studies.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use flow_scoring::quantile::{DEFAULT_FLOOR, DEFAULT_MAX_POINTS};
use flow_scoring::{
    fit_quantile_params, score_files, summarise_study, LabelTable, Predictions, QuantileFitConfig,
    VoxelSummary, N_LABELS,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const REPEATS: usize = 5;
/// Repeats of the (slow) Python reference.
const PYTHON_REPEATS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time<T>(mut f: impl FnMut() -> T) -> (f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..REPEATS {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64());
    }
    (median(times), last.expect("REPEATS > 0"))
}

fn targets(rng: &mut ChaCha8Rng, n: usize) -> Vec<[u8; N_LABELS]> {
    (0..n)
        .map(|_| {
            let mut y = [0u8; N_LABELS];
            for v in y.iter_mut().skip(1) {
                *v = u8::from(rng.gen_bool(0.1));
            }
            y[0] = u8::from(y[1..].contains(&1));
            y
        })
        .collect()
}

/// A 96^3 ROI: one slab per vertebra label 0..=8, fractured vertebrae with a raised cluster.
fn roi(rng: &mut ChaCha8Rng, y: &[u8; N_LABELS]) -> (Vec<f32>, Vec<u8>) {
    let n = 96 * 96 * 96;
    let labels: Vec<u8> = (0..n).map(|i| (i * 9 / n) as u8).collect();
    let probs = labels
        .iter()
        .map(|&l| {
            let fractured = (1..=7).contains(&l) && y[usize::from(l)] == 1;
            if fractured && rng.gen_bool(0.01) {
                rng.gen_range(0.3..0.95)
            } else if rng.gen_bool(0.0005) {
                rng.gen_range(0.02..0.4)
            } else {
                rng.gen::<f32>().powi(8) * 0.05
            }
        })
        .collect();
    (probs, labels)
}

fn main() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let n = 2019;
    let y = targets(&mut rng, n);
    let uids: Vec<String> = (0..n).map(|i| format!("1.2.826.0.1.3680043.{i}")).collect();
    let probs: Vec<[f64; N_LABELS]> = (0..n).map(|_| std::array::from_fn(|_| rng.gen())).collect();
    let dir = std::env::temp_dir().join(format!("flow-scoring-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create bench dir");
    let labels_path = dir.join("labels.csv");
    let pred_path = dir.join("pred.csv");
    LabelTable::new(uids.clone(), y.clone())
        .unwrap()
        .write(&labels_path)
        .unwrap();
    Predictions::new(uids, probs)
        .unwrap()
        .write(&pred_path, None)
        .unwrap();

    let (t_score, report) = time(|| score_files(&labels_path, &pred_path).unwrap());
    let sklearn = std::env::var_os("FLOW_PYTHON").map(|python| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/sklearn_metric_timing.py");
        let out = Command::new(python)
            .arg(script)
            .arg(&labels_path)
            .arg(&pred_path)
            .arg(PYTHON_REPEATS.to_string())
            .output()
            .expect("run python");
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Vec<f64> = text
            .split_whitespace()
            .map(|v| v.parse::<f64>().expect("python output"))
            .collect();
        assert_eq!(v.len(), 4, "python printed {text}");
        (v[0], v[1], v[2], v[3])
    });

    let samples: Vec<(Vec<f32>, Vec<u8>)> = (0..3).map(|k| roi(&mut rng, &y[k])).collect();
    let mut k = 0;
    let (t_summary, _) = time(|| {
        k = (k + 1) % samples.len();
        summarise_study(
            &samples[k].0,
            &samples[k].1,
            DEFAULT_FLOOR,
            DEFAULT_MAX_POINTS,
        )
        .unwrap()
    });

    // Fitting input: 2019 studies, summaries of ~1500 voxels per vertebra (as in the tests).
    let summaries: Vec<[VoxelSummary; N_LABELS]> = y
        .iter()
        .map(|t| {
            let per: Vec<Vec<f32>> = (1..N_LABELS)
                .map(|j| {
                    let mut v: Vec<f32> =
                        (0..1500).map(|_| rng.gen::<f32>().powi(8) * 0.04).collect();
                    v.extend((0..rng.gen_range(0..40)).map(|_| rng.gen_range(0.02..0.45f32)));
                    if t[j] == 1 {
                        let s: f32 = rng.gen_range(0.15..0.95);
                        v.extend(
                            (0..rng.gen_range(20..300))
                                .map(|_| (s + rng.gen_range(-0.15..0.05f32)).clamp(0.0, 1.0)),
                        );
                    }
                    v
                })
                .collect();
            let mut out = vec![VoxelSummary::new(&per.concat()).unwrap()];
            out.extend(per.iter().map(|v| VoxelSummary::new(v).unwrap()));
            out.try_into().unwrap()
        })
        .collect();
    let config = QuantileFitConfig::default();
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        fit_quantile_params(&summaries, &y, &config).unwrap();
        times.push(t.elapsed().as_secs_f64());
    }
    let t_fit = median(times);

    println!("| operation | size | flow-scoring (median) | reference (median) | ratio |");
    println!("|---|---|---|---|---|");
    match sklearn {
        Some((t_ref, value, t_np, value_np)) => {
            for v in [value, value_np] {
                assert!((v - report.metric).abs() < 1e-9, "python {v} vs {}", report.metric);
            }
            println!(
                "| metric from CSV files (`score_files`, incl. AUC + prior) | {n} studies | {:.2} ms | {:.1} ms (sklearn log_loss per study) | {:.0}x faster |",
                t_score * 1e3,
                t_ref * 1e3,
                t_ref / t_score
            );
            println!(
                "| metric from CSV files | {n} studies | (same) {:.2} ms | {:.1} ms (vectorised numpy) | {:.1}x faster |",
                t_score * 1e3,
                t_np * 1e3,
                t_np / t_score
            );
        }
        None => println!(
            "| metric from CSV files (`score_files`) | {n} studies | {:.2} ms | (FLOW_PYTHON unset) | |",
            t_score * 1e3
        ),
    }
    println!(
        "| `summarise_study` | 96^3 ROI, 9 labels | {:.2} ms | - | |",
        t_summary * 1e3
    );
    println!(
        "| `fit_quantile_params` (default grid, 8 targets) | {n} studies | {:.2} s | - | |",
        t_fit
    );
    std::fs::remove_dir_all(&dir).ok();
}
