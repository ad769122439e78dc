//! The stage-3 quantile score against numpy (`np.quantile`, linear interpolation), both on raw
//! voxels and through an exact [`VoxelSummary`].

mod common;

use flow_scoring::{QuantileParams, VoxelSummary};
use rand::Rng;

#[test]
fn quantile_score_matches_numpy() {
    let Some(python) = common::python() else {
        return;
    };
    let mut rng = common::rng(31);
    let mut cases = Vec::new();
    for k in 0..60 {
        let n = [0usize, 1, 2, 7, 100, 3000][k % 6];
        let probs: Vec<f32> = (0..n)
            .map(|_| match rng.gen_range(0..6) {
                0 => 0.0,
                1 => 1.0,
                2 => (rng.gen_range(0..20) as f32) / 20.0,
                _ => rng.gen::<f32>().powi(3),
            })
            .collect();
        let lo = rng.gen_range(0.0..0.2);
        let params = QuantileParams {
            alpha: [0.005, 0.05, 0.3, 0.5, 0.999][k % 5],
            beta: rng.gen_range(0.0..=1.0),
            min: lo,
            max: rng.gen_range(lo..=1.0),
        };
        cases.push((probs, params));
    }
    let json: Vec<serde_json::Value> = cases
        .iter()
        .map(|(p, q)| {
            serde_json::json!({"probs": p, "alpha": q.alpha, "beta": q.beta, "min": q.min, "max": q.max})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::Value::Array(json).to_string()).unwrap();
    let oracle = common::run_oracle(&python, "quantile_oracle.py", &[&path]);
    for (k, (probs, params)) in cases.iter().enumerate() {
        let expected = oracle[k].as_f64().unwrap();
        let raw = params.score(probs).unwrap();
        assert!(
            (raw - expected).abs() < 1e-12,
            "case {k}: {raw} vs numpy {expected} ({params:?})"
        );
        let summary = VoxelSummary::new(probs).unwrap();
        assert!(summary.is_exact());
        let summarised = summary.score(params).unwrap();
        assert!(
            (summarised - expected).abs() < 1e-12,
            "case {k}: summary {summarised} vs numpy {expected}"
        );
    }
}
