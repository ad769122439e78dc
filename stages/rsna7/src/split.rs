//! The seeded study split: k folds over the training studies plus a validation hold-out.
//!
//! The order is a BLAKE3 hash of `(seed, uid)`, so the split depends only on the seed and the
//! set of studies (not on file-system order) and adding one study moves only that study. The
//! original's split was unseeded (a known defect, not reproduced).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{read_json, write_json, Result, Rsna7Error};

/// Folds and hold-out of the training studies (`split.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub seed: u64,
    /// `folds[k]` are the studies validated by fold `k` (trained on by the other folds).
    pub folds: Vec<Vec<String>>,
    /// Studies kept out of round-2 training, to validate it.
    pub holdout: Vec<String>,
}

impl Split {
    /// Deals `uids` into `folds` folds (sizes differ by at most one, positives spread evenly
    /// when `positive` says which studies are positive) and picks `round(holdout_fraction * n)`
    /// hold-out studies, also stratified.
    pub fn make(
        uids: &[String],
        positive: &dyn Fn(&str) -> bool,
        folds: usize,
        holdout_fraction: f64,
        seed: u64,
    ) -> Result<Self> {
        if folds < 2 {
            return Err(Rsna7Error::Invalid(format!(
                "a split needs at least 2 folds, got {folds}"
            )));
        }
        if uids.len() < folds {
            return Err(Rsna7Error::Invalid(format!(
                "{} studies cannot fill {folds} folds",
                uids.len()
            )));
        }
        if !(0.0..1.0).contains(&holdout_fraction) {
            return Err(Rsna7Error::Invalid(format!(
                "holdout fraction {holdout_fraction} must be in [0, 1)"
            )));
        }
        let rank = |uid: &str| {
            let mut h = blake3::Hasher::new();
            h.update(&seed.to_le_bytes());
            h.update(uid.as_bytes());
            *h.finalize().as_bytes()
        };
        // Positives first, each group in hash order: dealing round-robin then stratifies.
        let mut order: Vec<(bool, [u8; 32], &String)> =
            uids.iter().map(|u| (!positive(u), rank(u), u)).collect();
        order.sort();
        order.dedup_by(|a, b| a.2 == b.2);
        let mut out = Split {
            seed,
            folds: vec![Vec::new(); folds],
            holdout: Vec::new(),
        };
        for (i, (_, _, uid)) in order.iter().enumerate() {
            out.folds[i % folds].push((*uid).clone());
        }
        let n_holdout = (holdout_fraction * order.len() as f64).round() as usize;
        // Every k-th study in the stratified order, so the hold-out is stratified too.
        if n_holdout > 0 {
            let step = order.len() as f64 / n_holdout as f64;
            out.holdout = (0..n_holdout)
                .map(|i| order[(i as f64 * step) as usize].2.clone())
                .collect();
        }
        for f in &mut out.folds {
            f.sort();
        }
        out.holdout.sort();
        Ok(out)
    }

    /// The fold validating `uid`, if it is in the split.
    pub fn fold_of(&self, uid: &str) -> Option<usize> {
        self.folds.iter().position(|f| f.iter().any(|u| u == uid))
    }

    pub fn read(path: &Path) -> Result<Self> {
        let s: Split = read_json(path)?;
        if s.folds.len() < 2 {
            return Err(Rsna7Error::BadFile {
                path: path.into(),
                message: "a split needs at least 2 folds".into(),
            });
        }
        Ok(s)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("1.2.{i}")).collect()
    }

    #[test]
    fn folds_partition_the_studies_and_stratify_positives() {
        let u = uids(23);
        let pos = |s: &str| s.ends_with('1') || s.ends_with('3');
        let s = Split::make(&u, &pos, 5, 0.2, 7).unwrap();
        let mut all: Vec<String> = s.folds.concat();
        all.sort();
        let mut want = u.clone();
        want.sort();
        assert_eq!(all, want);
        let sizes: Vec<usize> = s.folds.iter().map(Vec::len).collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
        let pos_per_fold: Vec<usize> = s
            .folds
            .iter()
            .map(|f| f.iter().filter(|u| pos(u)).count())
            .collect();
        assert!(
            pos_per_fold.iter().max().unwrap() - pos_per_fold.iter().min().unwrap() <= 1,
            "{pos_per_fold:?}"
        );
        assert_eq!(s.holdout.len(), 5);
        assert!(s.holdout.iter().all(|h| s.fold_of(h).is_some()));
    }

    #[test]
    fn seeded_and_order_independent() {
        let u = uids(20);
        let mut r = u.clone();
        r.reverse();
        let none = |_: &str| false;
        assert_eq!(
            Split::make(&u, &none, 5, 0.1, 3).unwrap(),
            Split::make(&r, &none, 5, 0.1, 3).unwrap()
        );
        assert_ne!(
            Split::make(&u, &none, 5, 0.1, 3).unwrap(),
            Split::make(&u, &none, 5, 0.1, 4).unwrap()
        );
    }

    #[test]
    fn rejects_impossible_splits() {
        let none = |_: &str| false;
        assert!(Split::make(&uids(3), &none, 5, 0.0, 1).is_err());
        assert!(Split::make(&uids(10), &none, 1, 0.0, 1).is_err());
        assert!(Split::make(&uids(10), &none, 2, 1.0, 1).is_err());
    }
}
