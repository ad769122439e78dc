//! Growing a label map into the background by a distance in millimetres, each grown voxel
//! taking the label of its nearest labelled voxel.
//!
//! Stage 3 reads a fracture map per vertebra through the stage-1 labels, and a crack is where
//! those labels fail: the gap of a displaced crack is not bone, and a thin lamina or spinous
//! process drawn on a 2 mm grid loses the voxels either side of it. Voxels of the map that sit a
//! few millimetres outside every label belong to the nearest vertebra, not to none.

use crate::volume::Volume;

/// `labels` with every background (0) voxel within `margin_mm` of a labelled voxel (Euclidean
/// distance in world millimetres, from the volume's spacing) set to the label of the nearest
/// one; labelled voxels keep theirs. Ties between equally near voxels go to the first in a
/// fixed order of offsets (by distance, then z, y, x), so the result is deterministic. The cost
/// is the voxel count times the number of grid offsets within the margin (33 for 2.5 mm on a
/// 1.25 mm grid), so keep the margin to a few voxels.
pub fn grow_labels_mm(labels: &Volume<u8>, margin_mm: f64) -> Volume<u8> {
    let offsets = ball_offsets(labels.geometry.spacing, margin_mm);
    let [nx, ny, nz] = labels.dims().map(|d| d as isize);
    let src = labels.data();
    let mut out = labels.clone();
    if offsets.is_empty() {
        return out;
    }
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let at = (i + nx * (j + ny * k)) as usize;
                if src[at] != 0 {
                    continue;
                }
                let nearest = offsets.iter().find_map(|&[di, dj, dk]| {
                    let (x, y, z) = (i + di, j + dj, k + dk);
                    let inside =
                        (0..nx).contains(&x) && (0..ny).contains(&y) && (0..nz).contains(&z);
                    let l = if inside {
                        src[(x + nx * (y + ny * z)) as usize]
                    } else {
                        0
                    };
                    (l != 0).then_some(l)
                });
                if let Some(l) = nearest {
                    out.data_mut()[at] = l;
                }
            }
        }
    }
    out
}

/// The non-zero grid offsets `[di, dj, dk]` within `margin_mm` of the origin, nearest first
/// (ties by z, y, x).
fn ball_offsets(spacing: [f64; 3], margin_mm: f64) -> Vec<[isize; 3]> {
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if !positive(margin_mm) || !spacing.iter().all(|&s| positive(s)) {
        return Vec::new();
    }
    let r = spacing.map(|s| (margin_mm / s).floor() as isize);
    let mut offsets = Vec::new();
    for dk in -r[2]..=r[2] {
        for dj in -r[1]..=r[1] {
            for di in -r[0]..=r[0] {
                let d2 = distance_sq([di, dj, dk], spacing);
                if d2 > 0.0 && d2 <= margin_mm * margin_mm + 1e-9 {
                    offsets.push([di, dj, dk]);
                }
            }
        }
    }
    offsets.sort_by(|a, b| {
        distance_sq(*a, spacing)
            .total_cmp(&distance_sq(*b, spacing))
            .then_with(|| [a[2], a[1], a[0]].cmp(&[b[2], b[1], b[0]]))
    });
    offsets
}

fn distance_sq(d: [isize; 3], spacing: [f64; 3]) -> f64 {
    (0..3).map(|a| (d[a] as f64 * spacing[a]).powi(2)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Geometry;
    use proptest::prelude::*;

    fn volume(dims: [usize; 3], spacing: [f64; 3], data: Vec<u8>) -> Volume<u8> {
        let mut g = Geometry::identity();
        g.spacing = spacing;
        Volume::from_vec(dims, data, g).unwrap()
    }

    /// The definition, by brute force: the distance from each background voxel to every
    /// labelled voxel.
    fn naive(v: &Volume<u8>, margin_mm: f64) -> (Volume<u8>, Vec<Option<f64>>) {
        let d = v.dims();
        let s = v.geometry.spacing;
        let labelled: Vec<([usize; 3], u8)> = (0..d[2])
            .flat_map(|k| (0..d[1]).flat_map(move |j| (0..d[0]).map(move |i| [i, j, k])))
            .filter_map(|p| Some((p, v.get(p[0], p[1], p[2]))).filter(|(_, l)| *l != 0))
            .collect();
        let mut out = v.clone();
        let mut nearest = vec![None; v.len()];
        for k in 0..d[2] {
            for j in 0..d[1] {
                for i in 0..d[0] {
                    if v.get(i, j, k) != 0 {
                        continue;
                    }
                    let best = labelled
                        .iter()
                        .map(|(p, l)| {
                            let dd = [0, 1, 2].map(|a| p[a] as isize - [i, j, k][a] as isize);
                            (distance_sq(dd, s).sqrt(), *l)
                        })
                        .min_by(|a, b| a.0.total_cmp(&b.0));
                    if let Some((dist, l)) = best.filter(|(dist, _)| *dist <= margin_mm + 1e-9) {
                        out.set(i, j, k, l);
                        nearest[v.index(i, j, k)] = Some(dist);
                    }
                }
            }
        }
        (out, nearest)
    }

    #[test]
    fn a_gap_between_two_labels_splits_by_distance_and_far_voxels_stay_background() {
        // One row along x, 1 mm voxels: label 3 at x=0, label 5 at x=5.
        let mut data = vec![0u8; 12];
        data[0] = 3;
        data[5] = 5;
        let v = volume([12, 1, 1], [1.0; 3], data);
        let g = grow_labels_mm(&v, 2.0);
        assert_eq!(g.data(), &[3, 3, 3, 5, 5, 5, 5, 5, 0, 0, 0, 0]);
    }

    #[test]
    fn anisotropic_spacing_counts_millimetres_not_voxels() {
        let mut data = vec![0u8; 5 * 5];
        data[2 + 5 * 2] = 7; // centre of a 5 x 1 x 5 slab
                             // x spacing 1 mm, z spacing 3 mm; a 2 mm margin reaches 2 voxels along x, none along z.
        let v = volume([5, 1, 5], [1.0, 1.0, 3.0], data);
        let g = grow_labels_mm(&v, 2.0);
        for k in 0..5 {
            for i in 0..5 {
                let expect = if k == 2 { 7 } else { 0 };
                assert_eq!(g.get(i, 0, k), expect, "voxel ({i}, 0, {k})");
            }
        }
    }

    #[test]
    fn zero_margin_or_no_labels_change_nothing() {
        let v = volume(
            [3, 3, 3],
            [1.0; 3],
            (0..27).map(|i| u8::from(i == 13)).collect(),
        );
        assert_eq!(grow_labels_mm(&v, 0.0).data(), v.data());
        let empty = volume([3, 3, 3], [1.0; 3], vec![0; 27]);
        assert_eq!(grow_labels_mm(&empty, 5.0).data(), empty.data());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Against the brute-force definition: the same voxels grow, each into a label at the
        /// nearest distance (where two labels are equally near, either is right).
        #[test]
        fn matches_the_brute_force_definition(
            dims in (1usize..7, 1usize..7, 1usize..7),
            spacing in (0.5f64..2.0, 0.5f64..2.0, 0.5f64..3.0),
            margin in 0.0f64..4.0,
            seeds in proptest::collection::vec((0usize..1000, 1u8..4), 0..6),
        ) {
            let d = [dims.0, dims.1, dims.2];
            let mut data = vec![0u8; d[0] * d[1] * d[2]];
            for (at, l) in seeds {
                let n = data.len();
                data[at % n] = l;
            }
            let v = volume(d, [spacing.0, spacing.1, spacing.2], data);
            let fast = grow_labels_mm(&v, margin);
            let (slow, nearest) = naive(&v, margin);
            for (idx, (&f, &s)) in fast.data().iter().zip(slow.data()).enumerate() {
                prop_assert_eq!(f != 0, s != 0, "voxel {} grew in one and not the other", idx);
                if f != s {
                    // A tie: the fast label must also sit at the nearest distance.
                    let dist = nearest[idx].unwrap();
                    let [i, j, k] = [idx % d[0], (idx / d[0]) % d[1], idx / (d[0] * d[1])];
                    let has_f_at_dist = (0..v.len()).any(|q| {
                        let p = [q % d[0], (q / d[0]) % d[1], q / (d[0] * d[1])];
                        let dd = [0, 1, 2].map(|a| p[a] as isize - [i, j, k][a] as isize);
                        v.data()[q] == f
                            && (distance_sq(dd, v.geometry.spacing).sqrt() - dist).abs() < 1e-9
                    });
                    prop_assert!(has_f_at_dist, "voxel {} took label {} that is not nearest", idx, f);
                }
            }
        }
    }
}
