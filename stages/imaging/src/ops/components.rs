//! Connected components of foreground voxels (6- or 26-connectivity) and the per-label
//! clean-up (each label's largest component); the whole-map clean-up is in `spine_cleanup`.

use crate::volume::{Volume, Voxel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Which neighbours touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Connectivity {
    /// Face neighbours.
    Six,
    /// Face, edge and corner neighbours.
    TwentySix,
}

/// Component labelling: `labels[idx]` is 0 for background, else 1..=sizes.len();
/// `sizes[c - 1]` is the voxel count of component `c`. Components are numbered in the order
/// their first voxel appears (x fastest).
pub struct Components {
    pub labels: Vec<u32>,
    pub sizes: Vec<usize>,
}

impl Components {
    /// Number of the largest component (lowest number on ties), `None` when empty.
    pub fn largest(&self) -> Option<u32> {
        let mut best: Option<(usize, u32)> = None;
        for (c, &s) in self.sizes.iter().enumerate() {
            if best.is_none_or(|(bs, _)| s > bs) {
                best = Some((s, c as u32 + 1));
            }
        }
        best.map(|b| b.1)
    }
}

fn offsets(conn: Connectivity) -> Vec<[isize; 3]> {
    let mut v = Vec::new();
    for dk in -1isize..=1 {
        for dj in -1isize..=1 {
            for di in -1isize..=1 {
                let l1 = di.abs() + dj.abs() + dk.abs();
                let ok = match conn {
                    Connectivity::Six => l1 == 1,
                    Connectivity::TwentySix => l1 >= 1,
                };
                if ok {
                    v.push([di, dj, dk]);
                }
            }
        }
    }
    v
}

/// Label the connected components of the voxels where `is_fg` holds.
pub fn label_components<T: Voxel>(
    v: &Volume<T>,
    conn: Connectivity,
    is_fg: impl Fn(T) -> bool,
) -> Components {
    let [nx, ny, nz] = v.dims();
    let data = v.data();
    let mut labels = vec![0u32; data.len()];
    let mut sizes = Vec::new();
    let offs = offsets(conn);
    let mut stack: Vec<usize> = Vec::new();
    for start in 0..data.len() {
        if labels[start] != 0 || !is_fg(data[start]) {
            continue;
        }
        let c = sizes.len() as u32 + 1;
        let mut size = 0usize;
        labels[start] = c;
        stack.push(start);
        while let Some(idx) = stack.pop() {
            size += 1;
            let (i, j, k) = (
                (idx % nx) as isize,
                ((idx / nx) % ny) as isize,
                (idx / (nx * ny)) as isize,
            );
            for o in &offs {
                let (a, b, d) = (i + o[0], j + o[1], k + o[2]);
                if a < 0
                    || b < 0
                    || d < 0
                    || a >= nx as isize
                    || b >= ny as isize
                    || d >= nz as isize
                {
                    continue;
                }
                let n = a as usize + nx * (b as usize + ny * d as usize);
                if labels[n] == 0 && is_fg(data[n]) {
                    labels[n] = c;
                    stack.push(n);
                }
            }
        }
        sizes.push(size);
    }
    Components { labels, sizes }
}

/// For each label value, keep only its largest connected component.
pub fn keep_largest_component_per_label(labels: &Volume<u8>, conn: Connectivity) -> Volume<u8> {
    let present: BTreeSet<u8> = labels.data().iter().copied().filter(|&l| l != 0).collect();
    let mut out = labels.clone();
    for l in present {
        let comps = label_components(labels, conn, |x| x == l);
        let keep = comps.largest();
        for (x, &c) in out.data_mut().iter_mut().zip(comps.labels.iter()) {
            if c != 0 && Some(c) != keep {
                *x = 0;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Geometry;

    fn vol(dims: [usize; 3], on: &[([usize; 3], u8)]) -> Volume<u8> {
        let mut v = Volume::filled(dims, 0u8, Geometry::identity()).unwrap();
        for &(p, l) in on {
            v.set(p[0], p[1], p[2], l);
        }
        v
    }

    #[test]
    fn diagonal_neighbours_join_only_with_26() {
        let v = vol([3, 3, 3], &[([0, 0, 0], 1), ([1, 1, 1], 1), ([2, 2, 2], 1)]);
        assert_eq!(
            label_components(&v, Connectivity::Six, |x| x != 0).sizes,
            vec![1, 1, 1]
        );
        assert_eq!(
            label_components(&v, Connectivity::TwentySix, |x| x != 0).sizes,
            vec![3]
        );
    }
}
