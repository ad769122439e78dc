//! Stage-3 per-vertebra scores: among a vertebra's ROI voxels with fracture probability
//! `>= alpha`, the `beta`-quantile (linear interpolation, numpy's default), clamped to
//! `[min, max]`; `min` when no voxel qualifies.
//!
//! [`VoxelSummary`] keeps only what the score needs (the sorted probabilities at or above a
//! floor, thinned to a bounded number of order statistics), so fitting the four parameters on
//! thousands of out-of-fold studies never touches voxels again.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::labels::{LABEL_NAMES, N_LABELS};
use crate::ScoringError;

/// Default floor of a [`VoxelSummary`]: the smallest `alpha` it can answer for.
pub const DEFAULT_FLOOR: f32 = 0.005;
/// Default number of order statistics a [`VoxelSummary`] keeps; below it the summary is exact.
pub const DEFAULT_MAX_POINTS: usize = 4096;

/// The four parameters of one target's quantile score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuantileParams {
    /// Voxels with probability `>= alpha` qualify.
    pub alpha: f64,
    /// Quantile of the qualifying probabilities, in [0, 1].
    pub beta: f64,
    /// Lower clamp, and the score when no voxel qualifies.
    pub min: f64,
    /// Upper clamp.
    pub max: f64,
}

impl QuantileParams {
    /// Checks `0 <= alpha, beta <= 1` and `0 <= min <= max <= 1`.
    pub fn validate(&self) -> Result<(), ScoringError> {
        let unit = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if unit(self.alpha)
            && unit(self.beta)
            && unit(self.min)
            && unit(self.max)
            && self.min <= self.max
        {
            Ok(())
        } else {
            Err(ScoringError::InvalidParameter(format!(
                "quantile parameters {self:?}: need alpha, beta in [0, 1] and 0 <= min <= max <= 1"
            )))
        }
    }

    /// The score of raw voxel probabilities (each must be finite in [0, 1]).
    pub fn score(&self, probs: &[f32]) -> Result<f64, ScoringError> {
        self.validate()?;
        check_probs(probs)?;
        let mut qualifying: Vec<f64> = probs
            .iter()
            .map(|&p| f64::from(p))
            .filter(|&p| p >= self.alpha)
            .collect();
        qualifying.sort_by(f64::total_cmp);
        Ok(self.clamp(sorted_quantile(&qualifying, self.beta)))
    }

    /// `clamp(q, min, max)`, or `min` for no qualifying voxel.
    pub fn clamp(&self, quantile: Option<f64>) -> f64 {
        quantile.map_or(self.min, |q| q.clamp(self.min, self.max))
    }
}

/// Linear-interpolation quantile of sorted values (numpy's default method); `None` when empty.
pub fn sorted_quantile(sorted: &[f64], beta: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    Some(interpolate(|i| sorted[i], last, beta * last as f64))
}

/// Value at fractional position `pos` in `[0, last]` of an ascending sequence.
fn interpolate(value: impl Fn(usize) -> f64, last: usize, pos: f64) -> f64 {
    let pos = pos.clamp(0.0, last as f64);
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(last);
    let t = pos - lo as f64;
    let (a, b) = (value(lo), value(hi));
    if t == 0.0 {
        a
    } else {
        a + (b - a) * t
    }
}

fn check_probs(probs: &[f32]) -> Result<(), ScoringError> {
    match probs
        .iter()
        .position(|p| !(p.is_finite() && (0.0..=1.0).contains(p)))
    {
        Some(index) => Err(ScoringError::BadProbability {
            what: "voxel probabilities",
            index,
            value: f64::from(probs[index]),
        }),
        None => Ok(()),
    }
}

/// What the quantile score needs from one study's voxels for one target: the ascending
/// probabilities at or above `floor`, exact up to `max_points` of them and otherwise thinned to
/// `max_points` evenly spaced order statistics (interpolation error is then at most the gap
/// between neighbouring kept values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "VoxelSummaryFields")]
pub struct VoxelSummary {
    floor: f32,
    n_voxels: u64,
    tail_len: u64,
    sketch: Vec<f32>,
}

/// Serialised form of [`VoxelSummary`], validated on the way in.
#[derive(Deserialize)]
struct VoxelSummaryFields {
    floor: f32,
    n_voxels: u64,
    tail_len: u64,
    sketch: Vec<f32>,
}

impl TryFrom<VoxelSummaryFields> for VoxelSummary {
    type Error = ScoringError;

    fn try_from(f: VoxelSummaryFields) -> Result<Self, ScoringError> {
        let bad = |why: &str| {
            Err(ScoringError::InvalidParameter(format!(
                "voxel summary: {why}"
            )))
        };
        if !(f.floor.is_finite() && (0.0..=1.0).contains(&f.floor)) {
            return bad("floor outside [0, 1]");
        }
        if f.tail_len > f.n_voxels || (f.sketch.len() as u64) > f.tail_len {
            return bad("counts are inconsistent");
        }
        if f.tail_len > 0 && f.sketch.len() < 2 && (f.sketch.len() as u64) != f.tail_len {
            return bad("a thinned summary needs at least two points");
        }
        if f.sketch.iter().any(|&v| !(v >= f.floor && v <= 1.0))
            || f.sketch.windows(2).any(|w| w[0] > w[1])
        {
            return bad("values must be ascending within [floor, 1]");
        }
        Ok(Self {
            floor: f.floor,
            n_voxels: f.n_voxels,
            tail_len: f.tail_len,
            sketch: f.sketch,
        })
    }
}

impl VoxelSummary {
    /// Summarises voxel probabilities (each finite in [0, 1]); `floor` is the smallest `alpha`
    /// the summary will answer for, `max_points >= 2` bounds its size.
    pub fn from_probs(probs: &[f32], floor: f32, max_points: usize) -> Result<Self, ScoringError> {
        if !(floor.is_finite() && (0.0..=1.0).contains(&floor)) || max_points < 2 {
            return Err(ScoringError::InvalidParameter(format!(
                "voxel summary: floor {floor} must be in [0, 1] and max_points {max_points} >= 2"
            )));
        }
        check_probs(probs)?;
        let tail: Vec<f32> = probs.iter().copied().filter(|&p| p >= floor).collect();
        Ok(Self::from_tail(tail, probs.len() as u64, floor, max_points))
    }

    /// Summary of already-filtered (`>= floor`, finite) values out of `n_voxels` voxels.
    fn from_tail(mut tail: Vec<f32>, n_voxels: u64, floor: f32, max_points: usize) -> Self {
        tail.sort_by(f32::total_cmp);
        let tail_len = tail.len() as u64;
        let sketch = if tail.len() <= max_points {
            tail
        } else {
            let last = tail.len() - 1;
            (0..max_points)
                .map(|i| {
                    let pos = i as f64 * last as f64 / (max_points - 1) as f64;
                    interpolate(|k| f64::from(tail[k]), last, pos) as f32
                })
                .collect()
        };
        Self {
            floor,
            n_voxels,
            tail_len,
            sketch,
        }
    }

    /// Summary with [`DEFAULT_FLOOR`] and [`DEFAULT_MAX_POINTS`].
    pub fn new(probs: &[f32]) -> Result<Self, ScoringError> {
        Self::from_probs(probs, DEFAULT_FLOOR, DEFAULT_MAX_POINTS)
    }

    /// Smallest `alpha` this summary answers for.
    pub fn floor(&self) -> f32 {
        self.floor
    }

    /// Number of voxels summarised.
    pub fn n_voxels(&self) -> u64 {
        self.n_voxels
    }

    /// Number of voxels at or above the floor.
    pub fn tail_len(&self) -> u64 {
        self.tail_len
    }

    /// True when every voxel at or above the floor is kept (scores are then exact).
    pub fn is_exact(&self) -> bool {
        self.sketch.len() as u64 == self.tail_len
    }

    /// Number of voxels with probability `>= alpha` (`alpha` at least the floor); fractional
    /// when the summary is thinned.
    pub fn count_at_or_above(&self, alpha: f64) -> f64 {
        if self.tail_len == 0 {
            return 0.0;
        }
        (self.tail_len as f64 - self.first_rank_at_or_above(alpha.max(f64::from(self.floor))))
            .max(0.0)
    }

    /// The `k`-th highest probability (`k = 1`: the maximum); `None` when fewer than `k`
    /// voxels reach the floor.
    pub fn top_value(&self, k: u64) -> Option<f64> {
        (k >= 1 && k <= self.tail_len).then(|| self.value_at_rank((self.tail_len - k) as f64))
    }

    /// The `beta`-quantile of voxels `>= alpha` before clamping; `None` when none qualifies.
    pub fn raw_quantile(&self, alpha: f64, beta: f64) -> Result<Option<f64>, ScoringError> {
        if !(f64::from(self.floor)..=1.0).contains(&alpha) || !(0.0..=1.0).contains(&beta) {
            return Err(ScoringError::InvalidParameter(format!(
                "voxel summary: alpha {alpha} must lie in [floor {}, 1] and beta {beta} in [0, 1]",
                self.floor
            )));
        }
        Ok(self.quantile_unchecked(alpha, beta))
    }

    /// Rank (0-based, fractional when thinned) of the first tail value `>= alpha`.
    fn first_rank_at_or_above(&self, alpha: f64) -> f64 {
        let j = self.sketch.partition_point(|&v| f64::from(v) < alpha);
        if self.is_exact() {
            return j as f64;
        }
        let m = self.sketch.len();
        if j == 0 {
            return 0.0;
        }
        if j == m {
            return self.tail_len as f64;
        }
        let step = (self.tail_len - 1) as f64 / (m - 1) as f64;
        let (v0, v1) = (f64::from(self.sketch[j - 1]), f64::from(self.sketch[j]));
        let t = if v1 > v0 {
            (alpha - v0) / (v1 - v0)
        } else {
            1.0
        };
        ((j - 1) as f64 + t) * step
    }

    /// Value at a fractional rank of the full tail.
    fn value_at_rank(&self, rank: f64) -> f64 {
        let m = self.sketch.len();
        let pos = if self.is_exact() || self.tail_len <= 1 {
            rank
        } else {
            rank * (m - 1) as f64 / (self.tail_len - 1) as f64
        };
        interpolate(|k| f64::from(self.sketch[k]), m - 1, pos)
    }

    pub(crate) fn quantile_unchecked(&self, alpha: f64, beta: f64) -> Option<f64> {
        let mut out = [None];
        self.quantiles_unchecked(alpha, &[beta], &mut out);
        out[0]
    }

    /// Raw quantiles for one `alpha` and several `beta`s: one binary search, then reads from the
    /// same region of the summary (fitting is bound by memory latency, not arithmetic).
    pub(crate) fn quantiles_unchecked(&self, alpha: f64, betas: &[f64], out: &mut [Option<f64>]) {
        if self.tail_len == 0 {
            out.fill(None);
            return;
        }
        let first = self.first_rank_at_or_above(alpha).ceil();
        let qualifying = self.tail_len as f64 - first;
        if qualifying < 1.0 {
            out.fill(None);
            return;
        }
        for (o, &beta) in out.iter_mut().zip(betas) {
            *o = Some(self.value_at_rank(first + beta * (qualifying - 1.0)));
        }
    }

    /// The clamped score under `params` (`params.alpha` must be at least the floor).
    pub fn score(&self, params: &QuantileParams) -> Result<f64, ScoringError> {
        params.validate()?;
        Ok(params.clamp(self.raw_quantile(params.alpha, params.beta)?))
    }
}

/// The eight summaries of one study in one pass over its ROI: `probs` are the fracture
/// probabilities and `vertebra` the stage-1 labels of the same voxels (1..=7 = C1..C7; other
/// labels, such as background 0 or T1 = 8, belong to no target). `patient_overall` summarises
/// every C1-C7 voxel.
pub fn summarise_study(
    probs: &[f32],
    vertebra: &[u8],
    floor: f32,
    max_points: usize,
) -> Result<[VoxelSummary; N_LABELS], ScoringError> {
    if probs.len() != vertebra.len() {
        return Err(ScoringError::LengthMismatch {
            what: "study summary probabilities vs vertebra labels",
            left: probs.len(),
            right: vertebra.len(),
        });
    }
    if !(floor.is_finite() && (0.0..=1.0).contains(&floor)) || max_points < 2 {
        return Err(ScoringError::InvalidParameter(format!(
            "voxel summary: floor {floor} must be in [0, 1] and max_points {max_points} >= 2"
        )));
    }
    check_probs(probs)?;
    let mut counts = [0u64; N_LABELS];
    let mut tails: [Vec<f32>; N_LABELS] = Default::default();
    for (&p, &label) in probs.iter().zip(vertebra) {
        let j = usize::from(label);
        if (1..N_LABELS).contains(&j) {
            counts[j] += 1;
            counts[0] += 1;
            if p >= floor {
                tails[j].push(p);
                tails[0].push(p);
            }
        }
    }
    let mut tails = tails.into_iter();
    Ok(std::array::from_fn(|j| {
        let tail = tails.next().unwrap_or_default();
        VoxelSummary::from_tail(tail, counts[j], floor, max_points)
    }))
}

/// Quantile parameters for all eight targets; serialised as a map from target name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantileParamSet(pub [QuantileParams; N_LABELS]);

impl QuantileParamSet {
    /// The original solution's hand-tuned values (`[overall, C1..C7]`), the untuned baseline the
    /// fit must beat.
    pub fn original() -> Self {
        const ALPHA: [f64; N_LABELS] = [0.055, 0.044, 0.052, 0.05, 0.07, 0.077, 0.09, 0.024];
        const BETA: [f64; N_LABELS] = [0.475, 0.34, 0.37, 0.38, 0.31, 0.35, 0.38, 0.36];
        const MIN: [f64; N_LABELS] = [0.116, 0.075, 0.015, 0.015, 0.01, 0.02, 0.032, 0.048];
        const MAX: [f64; N_LABELS] = [0.99, 0.999, 0.993, 0.99, 1.0, 0.943, 0.997, 0.999];
        Self(std::array::from_fn(|j| QuantileParams {
            alpha: ALPHA[j],
            beta: BETA[j],
            min: MIN[j],
            max: MAX[j],
        }))
    }

    /// Scores of one study, `[overall, C1..C7]`, from its eight summaries.
    pub fn score_study(
        &self,
        summaries: &[VoxelSummary; N_LABELS],
    ) -> Result<[f64; N_LABELS], ScoringError> {
        let mut out = [0.0; N_LABELS];
        for j in 0..N_LABELS {
            out[j] = summaries[j].score(&self.0[j])?;
        }
        Ok(out)
    }
}

impl Serialize for QuantileParamSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(N_LABELS))?;
        for (name, params) in LABEL_NAMES.iter().zip(&self.0) {
            map.serialize_entry(name, params)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for QuantileParamSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = HashMap::<String, QuantileParams>::deserialize(deserializer)?;
        let mut out = [QuantileParams {
            alpha: 0.0,
            beta: 0.0,
            min: 0.0,
            max: 0.0,
        }; N_LABELS];
        for (j, name) in LABEL_NAMES.iter().enumerate() {
            let params = map
                .remove(*name)
                .ok_or_else(|| D::Error::custom(format!("quantile parameters lack `{name}`")))?;
            params.validate().map_err(D::Error::custom)?;
            out[j] = params;
        }
        if let Some(extra) = map.keys().next() {
            return Err(D::Error::custom(format!(
                "unknown target `{extra}` in quantile parameters"
            )));
        }
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn score_by_hand() {
        let params = QuantileParams {
            alpha: 0.1,
            beta: 0.5,
            min: 0.05,
            max: 0.9,
        };
        // Qualifying: 0.2, 0.4, 0.6, 0.8 -> median 0.5.
        let probs = [0.0, 0.05, 0.2, 0.8, 0.4, 0.6, 0.09];
        assert!((params.score(&probs).unwrap() - 0.5).abs() < 1e-7);
        assert_eq!(params.score(&[0.01, 0.02]).unwrap(), 0.05);
        assert_eq!(params.score(&[]).unwrap(), 0.05);
        assert!(
            (QuantileParams {
                beta: 1.0,
                ..params
            }
            .score(&[0.95, 0.2])
            .unwrap()
                - 0.9)
                .abs()
                < 1e-12
        );
        assert!(params.score(&[f32::NAN]).is_err());
        assert!(QuantileParams {
            min: 0.9,
            max: 0.1,
            ..params
        }
        .score(&probs)
        .is_err());
    }

    #[test]
    fn param_set_json_round_trip_and_validation() {
        let set = QuantileParamSet::original();
        let json = serde_json::to_string(&set).unwrap();
        assert!(
            json.starts_with("{\"patient_overall\":{\"alpha\":0.055"),
            "{json}"
        );
        let back: QuantileParamSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, set);
        let missing = json.replace("\"C7\"", "\"C8\"");
        assert!(serde_json::from_str::<QuantileParamSet>(&missing).is_err());
    }

    #[test]
    fn summary_json_is_validated() {
        let s = VoxelSummary::new(&[0.0, 0.3, 0.7]).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<VoxelSummary>(&json).unwrap(), s);
        let broken = json.replace("[0.3,0.7]", "[0.7,0.3]");
        assert_ne!(broken, json);
        assert!(serde_json::from_str::<VoxelSummary>(&broken).is_err());
    }

    #[test]
    fn thinned_summary_is_close() {
        let probs: Vec<f32> = (0..100_000)
            .map(|i| ((i * 7919) % 100_000) as f32 / 100_000.0)
            .collect();
        let s = VoxelSummary::from_probs(&probs, 0.005, 1000).unwrap();
        assert!(!s.is_exact());
        for (alpha, beta) in [
            (0.005, 0.0),
            (0.05, 0.3),
            (0.5, 0.5),
            (0.9, 1.0),
            (0.2, 0.77),
        ] {
            let params = QuantileParams {
                alpha,
                beta,
                min: 0.0,
                max: 1.0,
            };
            let exact = params.score(&probs).unwrap();
            let approx = s.score(&params).unwrap();
            assert!(
                (exact - approx).abs() < 2e-3,
                "{alpha} {beta}: {exact} vs {approx}"
            );
        }
    }

    #[test]
    fn study_summary_groups_voxels_by_vertebra() {
        let probs = [0.9, 0.2, 0.0, 0.6, 0.3, 0.8, 0.7];
        let labels = [1, 1, 0, 7, 8, 7, 0];
        let s = summarise_study(&probs, &labels, 0.005, 4096).unwrap();
        let params = QuantileParams {
            alpha: 0.1,
            beta: 1.0,
            min: 0.0,
            max: 1.0,
        };
        assert_eq!(s[0].n_voxels(), 4);
        assert!((s[0].score(&params).unwrap() - 0.9).abs() < 1e-7);
        assert!(
            (s[1]
                .score(&QuantileParams {
                    beta: 0.0,
                    ..params
                })
                .unwrap()
                - 0.2)
                .abs()
                < 1e-7
        );
        assert!(
            (s[7]
                .score(&QuantileParams {
                    beta: 0.5,
                    ..params
                })
                .unwrap()
                - 0.7)
                .abs()
                < 1e-7
        );
        assert_eq!(s[3].n_voxels(), 0);
        assert_eq!(
            s[3].score(&QuantileParams {
                min: 0.02,
                ..params
            })
            .unwrap(),
            0.02
        );
        assert!(summarise_study(&probs, &labels[..3], 0.005, 4096).is_err());
        assert!(summarise_study(&[f32::NAN], &[1], 0.005, 4096).is_err());
    }

    proptest! {
        #[test]
        fn exact_summary_matches_raw_score(
            probs in proptest::collection::vec(0u16..=1000, 0..80),
            alpha in 5u16..1000,
            beta in 0u16..=100,
        ) {
            let probs: Vec<f32> = probs.iter().map(|&v| f32::from(v) / 1000.0).collect();
            let params = QuantileParams {
                alpha: f64::from(alpha) / 1000.0,
                beta: f64::from(beta) / 100.0,
                min: 0.0,
                max: 1.0,
            };
            let s = VoxelSummary::from_probs(&probs, 0.005, 4096).unwrap();
            prop_assert!(s.is_exact());
            let a = params.score(&probs).unwrap();
            let b = s.score(&params).unwrap();
            prop_assert!((a - b).abs() < 1e-12, "{} vs {}", a, b);
        }

        #[test]
        fn counts_and_top_values_match_the_voxels(
            probs in proptest::collection::vec(0u16..=1000, 0..80),
            alpha in 5u16..1000,
            k in 1u64..90,
        ) {
            let probs: Vec<f32> = probs.iter().map(|&v| f32::from(v) / 1000.0).collect();
            let s = VoxelSummary::from_probs(&probs, 0.005, 4096).unwrap();
            let alpha = f64::from(alpha) / 1000.0;
            let naive = probs.iter().filter(|&&p| f64::from(p) >= alpha).count();
            prop_assert_eq!(s.count_at_or_above(alpha), naive as f64);
            let mut tail: Vec<f64> = probs.iter().filter(|&&p| p >= 0.005f32).map(|&p| f64::from(p)).collect();
            tail.sort_by(|a, b| b.total_cmp(a));
            prop_assert_eq!(s.top_value(k), tail.get(k as usize - 1).copied());
        }
    }
}
