//! Axis-aligned bounding boxes of foreground voxels, overall and per label.

use crate::volume::{Volume, Voxel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Inclusive voxel bounds `min..=max` on each axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundingBox {
    pub min: [usize; 3],
    pub max: [usize; 3],
}

impl BoundingBox {
    /// Box of one voxel.
    pub fn point(p: [usize; 3]) -> Self {
        BoundingBox { min: p, max: p }
    }

    /// Grow to include `p`.
    pub fn include(&mut self, p: [usize; 3]) {
        for a in 0..3 {
            self.min[a] = self.min[a].min(p[a]);
            self.max[a] = self.max[a].max(p[a]);
        }
    }

    /// Smallest box holding both.
    pub fn union(&self, other: &BoundingBox) -> BoundingBox {
        let mut b = *self;
        b.include(other.min);
        b.include(other.max);
        b
    }

    /// Number of voxels along each axis.
    pub fn size(&self) -> [usize; 3] {
        [0, 1, 2].map(|a| self.max[a] - self.min[a] + 1)
    }
}

/// Bounding box of the voxels where `pred` holds, `None` when there are none.
pub fn bbox_where<T: Voxel>(v: &Volume<T>, pred: impl Fn(T) -> bool) -> Option<BoundingBox> {
    let [nx, ny, nz] = v.dims();
    let mut b: Option<BoundingBox> = None;
    let data = v.data();
    for k in 0..nz {
        for j in 0..ny {
            let row = &data[(k * ny + j) * nx..(k * ny + j + 1) * nx];
            let first = row.iter().position(|&x| pred(x));
            if let Some(i0) = first {
                let i1 = row.iter().rposition(|&x| pred(x)).unwrap_or(i0);
                for p in [[i0, j, k], [i1, j, k]] {
                    match &mut b {
                        Some(bb) => bb.include(p),
                        None => b = Some(BoundingBox::point(p)),
                    }
                }
            }
        }
    }
    b
}

/// Bounding box of non-zero voxels.
pub fn foreground_bbox<T: Voxel>(v: &Volume<T>) -> Option<BoundingBox> {
    bbox_where(v, |x| x != T::default())
}

/// Bounding box of every non-zero label present.
pub fn label_bboxes(labels: &Volume<u8>) -> BTreeMap<u8, BoundingBox> {
    let [nx, ny, _] = labels.dims();
    let mut out: BTreeMap<u8, BoundingBox> = BTreeMap::new();
    for (idx, &l) in labels.data().iter().enumerate() {
        if l != 0 {
            let p = [idx % nx, (idx / nx) % ny, idx / (nx * ny)];
            out.entry(l)
                .and_modify(|b| b.include(p))
                .or_insert_with(|| BoundingBox::point(p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Geometry;

    #[test]
    fn boxes_per_label_and_overall() {
        let mut v = Volume::filled([6, 5, 4], 0u8, Geometry::identity()).unwrap();
        v.set(1, 2, 3, 1);
        v.set(4, 0, 1, 1);
        v.set(2, 2, 2, 7);
        let b = label_bboxes(&v);
        assert_eq!(
            b[&1],
            BoundingBox {
                min: [1, 0, 1],
                max: [4, 2, 3]
            }
        );
        assert_eq!(b[&7], BoundingBox::point([2, 2, 2]));
        assert_eq!(
            foreground_bbox(&v),
            Some(BoundingBox {
                min: [1, 0, 1],
                max: [4, 2, 3]
            })
        );
        assert_eq!(foreground_bbox(&v.like(0u8)), None);
        assert_eq!(b[&1].size(), [4, 3, 3]);
    }
}
