//! Clean-up of vertebra label maps that survives disc gaps.
//!
//! Vertebrae in public and competition masks are often separate components (the discs are
//! background), so "largest foreground component" would keep one vertebra. We instead take
//! components of the foreground dilated by a few mm, keep the one holding the most foreground,
//! then per label its largest component, and report how many voxels each label lost.

use super::components::{keep_largest_component_per_label, label_components, Connectivity};
use super::morphology::binary_dilate_box;
use crate::volume::Volume;
use serde::{Deserialize, Serialize};

/// Default bridging distance in mm (dilation radius; gaps up to twice this are bridged).
pub const DEFAULT_BRIDGE_MM: f64 = 3.0;

/// Settings of [`clean_label_map_with_report`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CleanupConfig {
    /// Dilation radius in mm used to join the foreground before picking its main body; pieces
    /// separated by gaps up to about twice this stay. 0 = plain largest foreground component.
    pub bridge_mm: f64,
    /// Connectivity of the components (of the dilated foreground and of each label).
    pub connectivity: Connectivity,
}

impl Default for CleanupConfig {
    fn default() -> Self {
        CleanupConfig {
            bridge_mm: DEFAULT_BRIDGE_MM,
            connectivity: Connectivity::TwentySix,
        }
    }
}

/// Voxel counts of one label before and after the clean-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelCleanup {
    pub label: u8,
    pub before: u64,
    pub after: u64,
}

impl LabelCleanup {
    /// Fraction of the label's voxels the clean-up removed (0 when it had none).
    pub fn removed_fraction(&self) -> f64 {
        if self.before == 0 {
            0.0
        } else {
            (self.before - self.after) as f64 / self.before as f64
        }
    }
}

/// What the clean-up removed: one entry per label present before it, in label order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CleanupReport {
    pub labels: Vec<LabelCleanup>,
}

impl CleanupReport {
    /// Counts every non-zero label of `before` and `after` (same grid).
    pub fn compare(before: &Volume<u8>, after: &Volume<u8>) -> CleanupReport {
        let (b, a) = (histogram(before), histogram(after));
        let labels = (1..=255u8)
            .filter(|&l| b[l as usize] > 0)
            .map(|l| LabelCleanup {
                label: l,
                before: b[l as usize],
                after: a[l as usize],
            })
            .collect();
        CleanupReport { labels }
    }

    /// One sentence per label removed entirely or that lost more than `threshold` (a fraction)
    /// of its voxels, naming labels "label N".
    pub fn warnings(&self, threshold: f64) -> Vec<String> {
        self.warnings_named(threshold, |l| format!("label {l}"))
    }

    /// As [`CleanupReport::warnings`], naming each label with `name` (e.g. "label 4 (C4)").
    pub fn warnings_named(&self, threshold: f64, name: impl Fn(u8) -> String) -> Vec<String> {
        self.labels
            .iter()
            .filter_map(|c| {
                if c.after == 0 {
                    Some(format!(
                        "{} was removed entirely in the clean-up (all {} of its voxels)",
                        name(c.label),
                        c.before
                    ))
                } else if c.removed_fraction() > threshold {
                    Some(format!(
                        "{} lost {:.1}% of its voxels ({} of {}) in the clean-up",
                        name(c.label),
                        100.0 * c.removed_fraction(),
                        c.before - c.after,
                        c.before
                    ))
                } else {
                    None
                }
            })
            .collect()
    }
}

fn histogram(v: &Volume<u8>) -> [u64; 256] {
    let mut h = [0u64; 256];
    for &x in v.data() {
        h[x as usize] += 1;
    }
    h
}

/// Dilation radius in voxels per axis for `bridge_mm` on a grid of `spacing` (mm, x y z):
/// `ceil(bridge_mm / spacing)`, with a little slack so 3 mm / 0.6 mm is 5, not 6. Zero for a
/// non-positive distance or spacing.
pub fn bridge_radii(spacing: [f64; 3], bridge_mm: f64) -> [usize; 3] {
    spacing.map(|s| {
        if bridge_mm > 0.0 && s > 0.0 {
            (bridge_mm / s - 1e-9).ceil() as usize
        } else {
            0
        }
    })
}

/// Zero the foreground outside the component of the dilated foreground that holds the most
/// original foreground voxels (lowest component number on ties).
fn keep_bridged_body(labels: &Volume<u8>, radii: [usize; 3], conn: Connectivity) -> Volume<u8> {
    let dilated = binary_dilate_box(labels, radii);
    let comps = label_components(&dilated, conn, |x| x != 0);
    let mut held = vec![0u64; comps.sizes.len()];
    for (&l, &c) in labels.data().iter().zip(&comps.labels) {
        if l != 0 {
            held[c as usize - 1] += 1;
        }
    }
    let mut keep = 0u32;
    let mut best = 0u64;
    for (c, &n) in held.iter().enumerate() {
        if n > best {
            (keep, best) = (c as u32 + 1, n);
        }
    }
    let mut out = labels.clone();
    for (x, &c) in out.data_mut().iter_mut().zip(&comps.labels) {
        if *x != 0 && c != keep {
            *x = 0;
        }
    }
    out
}

/// Clean a vertebra label map: keep the main body of the foreground with gaps up to about
/// `2 * bridge_mm` bridged (radius per axis from `labels.geometry.spacing`), then per label
/// its largest component; returns the cleaned map and per-label voxel counts.
pub fn clean_label_map_with_report(
    labels: &Volume<u8>,
    cfg: &CleanupConfig,
) -> (Volume<u8>, CleanupReport) {
    let radii = bridge_radii(labels.geometry.spacing, cfg.bridge_mm);
    let body = keep_bridged_body(labels, radii, cfg.connectivity);
    let cleaned = keep_largest_component_per_label(&body, cfg.connectivity);
    let report = CleanupReport::compare(labels, &cleaned);
    (cleaned, report)
}

/// [`clean_label_map_with_report`] with the default bridge ([`DEFAULT_BRIDGE_MM`]), without
/// the report.
pub fn clean_label_map(labels: &Volume<u8>, conn: Connectivity) -> Volume<u8> {
    let cfg = CleanupConfig {
        bridge_mm: DEFAULT_BRIDGE_MM,
        connectivity: conn,
    };
    clean_label_map_with_report(labels, &cfg).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Geometry;

    fn geometry(spacing: [f64; 3]) -> Geometry {
        Geometry {
            spacing,
            ..Geometry::identity()
        }
    }

    /// Fill the box `lo..hi` (exclusive) with `label`.
    fn fill(v: &mut Volume<u8>, lo: [usize; 3], hi: [usize; 3], label: u8) {
        for k in lo[2]..hi[2] {
            for j in lo[1]..hi[1] {
                for i in lo[0]..hi[0] {
                    v.set(i, j, k, label);
                }
            }
        }
    }

    fn count(v: &Volume<u8>, label: u8) -> u64 {
        v.data().iter().filter(|&&x| x == label).count() as u64
    }

    /// Seven 6x6x3 vertebrae along z (labels 1..7) separated by 1- or 2-voxel gaps of 0.
    fn spine(dims: [usize; 3], spacing: [f64; 3]) -> Volume<u8> {
        let mut v = Volume::filled(dims, 0u8, geometry(spacing)).unwrap();
        let mut z = 1;
        for l in 1..=7u8 {
            fill(&mut v, [2, 2, z], [8, 8, z + 3], l);
            z += 3 + 1 + (l as usize % 2);
        }
        v
    }

    #[test]
    fn vertebrae_split_by_disc_gaps_are_all_kept() {
        let v = spine([10, 10, 40], [1.0; 3]);
        let (c, report) = clean_label_map_with_report(&v, &CleanupConfig::default());
        assert_eq!(c, v);
        assert_eq!(report.labels.len(), 7);
        assert!(report.labels.iter().all(|l| l.after == l.before));
        assert!(report.warnings(0.0).is_empty());
        assert_eq!(clean_label_map(&v, Connectivity::TwentySix), v);
        // Without bridging only one vertebra would survive: the bug this clean-up fixes.
        let plain = CleanupConfig {
            bridge_mm: 0.0,
            ..CleanupConfig::default()
        };
        let (one, _) = clean_label_map_with_report(&v, &plain);
        let kept: Vec<u8> = (1..=7).filter(|&l| count(&one, l) > 0).collect();
        assert_eq!(kept, [1]);
    }

    #[test]
    fn far_island_is_removed_and_reported() {
        let mut v = spine([30, 10, 40], [1.0; 3]);
        // Label 3 (6x6x3 = 108 voxels in the spine) gets a 4x4x3 island 13 voxels away in x,
        // beyond the 2 * 3 voxels a 3 mm bridge spans; label 9 exists only far away.
        fill(&mut v, [21, 2, 10], [25, 6, 13], 3);
        fill(&mut v, [26, 8, 30], [28, 10, 32], 9);
        let (c, report) = clean_label_map_with_report(&v, &CleanupConfig::default());
        assert_eq!(c, spine([30, 10, 40], [1.0; 3]));
        let l3 = report.labels.iter().find(|l| l.label == 3).unwrap();
        assert_eq!((l3.before, l3.after), (108 + 48, 108));
        assert_eq!(
            report.warnings(0.05),
            [
                "label 3 lost 30.8% of its voxels (48 of 156) in the clean-up",
                "label 9 was removed entirely in the clean-up (all 8 of its voxels)",
            ]
        );
        // A threshold above 30.8% leaves only the removed label.
        assert_eq!(report.warnings(0.5).len(), 1);
        let named = report.warnings_named(0.05, |l| format!("label {l} (V{l})"));
        assert!(named[0].starts_with("label 3 (V3) lost 30.8%"), "{named:?}");
    }

    #[test]
    fn stray_piece_of_a_label_is_removed_per_label() {
        // A bar 1,1,2,2 along x; a stray label-2 voxel touching the label-1 end (same body,
        // separate label-2 piece).
        let mut v = Volume::filled([8, 3, 1], 0u8, Geometry::identity()).unwrap();
        for (p, l) in [
            ([0, 0], 1),
            ([1, 0], 1),
            ([2, 0], 2),
            ([3, 0], 2),
            ([0, 1], 2),
        ] {
            v.set(p[0], p[1], 0, l);
        }
        let (c, report) = clean_label_map_with_report(&v, &CleanupConfig::default());
        let mut expected = v.clone();
        expected.set(0, 1, 0, 0);
        assert_eq!(c, expected);
        let l2 = report.labels.iter().find(|l| l.label == 2).unwrap();
        assert_eq!((l2.before, l2.after), (3, 2));
        assert_eq!(
            report.warnings(0.05),
            ["label 2 lost 33.3% of its voxels (1 of 3) in the clean-up"]
        );
    }

    #[test]
    fn bridge_radius_follows_each_axis_spacing() {
        assert_eq!(bridge_radii([1.0, 1.0, 3.0], 3.0), [3, 3, 1]);
        assert_eq!(bridge_radii([0.6, 0.7, 2.5], 3.0), [5, 5, 2]);
        assert_eq!(bridge_radii([1.0, 1.0, 3.0], 0.0), [0, 0, 0]);
        let cfg = CleanupConfig::default();
        let g = [1.0, 1.0, 3.0];
        let two_boxes = |gap_x: usize, gap_z: usize| {
            let mut v = Volume::filled([30, 6, 20], 0u8, geometry(g)).unwrap();
            fill(&mut v, [0, 0, 0], [5, 5, 5], 1);
            // Box 2 beside box 1 along x (gap_x > 0) or on top of it along z.
            let (x0, z0) = if gap_x > 0 {
                (5 + gap_x, 0)
            } else {
                (0, 5 + gap_z)
            };
            fill(&mut v, [x0, 0, z0], [x0 + 4, 5, z0 + 4], 2);
            v
        };
        // z: radius 1 voxel (3 mm / 3 mm) bridges a 2-voxel gap but not a 3-voxel one.
        let v = two_boxes(0, 2);
        assert_eq!(clean_label_map_with_report(&v, &cfg).0, v);
        let (c, r) = clean_label_map_with_report(&two_boxes(0, 3), &cfg);
        assert_eq!(count(&c, 2), 0);
        assert_eq!(r.labels[1].after, 0);
        // x: radius 3 voxels (3 mm / 1 mm) bridges a 6-voxel gap but not a 7-voxel one.
        let v = two_boxes(6, 0);
        assert_eq!(clean_label_map_with_report(&v, &cfg).0, v);
        assert_eq!(
            count(&clean_label_map_with_report(&two_boxes(7, 0), &cfg).0, 2),
            0
        );
    }

    #[test]
    fn report_counts_match_the_volumes() {
        // Deterministic speckle (LCG) of labels 0..=5 plus a spine: many pieces get removed.
        let mut v = spine([24, 12, 40], [0.8, 0.8, 1.5]);
        let mut s = 12345u64;
        for x in v.data_mut().iter_mut() {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if (s >> 33).is_multiple_of(9) {
                *x = ((s >> 40) % 6) as u8;
            }
        }
        let cfg = CleanupConfig {
            bridge_mm: 1.0,
            connectivity: Connectivity::Six,
        };
        let (c, report) = clean_label_map_with_report(&v, &cfg);
        let present: Vec<u8> = (1..=255).filter(|&l| count(&v, l) > 0).collect();
        assert_eq!(
            report.labels.iter().map(|l| l.label).collect::<Vec<_>>(),
            present
        );
        for l in &report.labels {
            assert_eq!(l.before, count(&v, l.label));
            assert_eq!(l.after, count(&c, l.label));
            assert!(l.after <= l.before);
            let f = (l.before - l.after) as f64 / l.before as f64;
            assert!((l.removed_fraction() - f).abs() < 1e-12);
        }
        // Only voxels are removed, never relabelled.
        assert!(v
            .data()
            .iter()
            .zip(c.data())
            .all(|(&a, &b)| b == 0 || a == b));
        assert_eq!(
            count(&c, 0),
            count(&v, 0)
                + report
                    .labels
                    .iter()
                    .map(|l| l.before - l.after)
                    .sum::<u64>()
        );
    }
}
