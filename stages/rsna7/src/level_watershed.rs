//! Moves the boundaries between vertebra levels onto the narrow joints of the spine mask.
//!
//! The low-resolution model knows which vertebra a region is but draws the boundary between
//! two levels a few millimetres off (its voxels are 5-7 mm); the full-resolution spine mask
//! shows where one vertebra ends: adjacent vertebrae touch only at small contacts (disc rims,
//! facet joints), the narrowest places of the mask. A marker-controlled watershed joins the
//! two: voxels where the low-resolution level is confident keep it and flood the rest of the
//! mask, the thickest parts first (depth below the mask's surface), so two floods meet at the
//! thin contacts between bodies instead of halfway between the markers. A part of the mask no
//! flood reaches keeps the level it had.

use std::collections::BinaryHeap;

/// Depth of every voxel of `mask` (grid `dims`, x fastest) below its surface: the number of
/// 6-connected steps to the nearest voxel outside the mask (the grid's outside counts as
/// outside); 0 outside the mask.
pub fn depth_below_surface(mask: &[bool], dims: [usize; 3]) -> Vec<u16> {
    let [nx, ny, nz] = dims;
    let mut depth = vec![u16::MAX; mask.len()];
    let mut frontier = Vec::new();
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let v = (k * ny + j) * nx + i;
                if !mask[v] {
                    depth[v] = 0;
                } else if i == 0 || j == 0 || k == 0 || i + 1 == nx || j + 1 == ny || k + 1 == nz {
                    depth[v] = 1;
                    frontier.push(v);
                }
            }
        }
    }
    // Mask voxels next to an outside voxel are at depth 1.
    for v in 0..mask.len() {
        if mask[v] && depth[v] == u16::MAX && neighbours(v, dims).any(|n| !mask[n]) {
            depth[v] = 1;
            frontier.push(v);
        }
    }
    let mut d = 1u16;
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for &v in &frontier {
            for n in neighbours(v, dims) {
                if depth[n] == u16::MAX {
                    depth[n] = d + 1;
                    next.push(n);
                }
            }
        }
        frontier = next;
        d += 1;
    }
    depth
}

/// The 6-connected neighbours of voxel `v` inside the grid.
fn neighbours(v: usize, dims: [usize; 3]) -> impl Iterator<Item = usize> {
    let [nx, ny, nz] = dims;
    let (i, j, k) = (v % nx, (v / nx) % ny, v / (nx * ny));
    let plane = nx * ny;
    [
        (i > 0).then(|| v - 1),
        (i + 1 < nx).then(|| v + 1),
        (j > 0).then(|| v - nx),
        (j + 1 < ny).then(|| v + nx),
        (k > 0).then(|| v - plane),
        (k + 1 < nz).then(|| v + plane),
    ]
    .into_iter()
    .flatten()
}

/// Relabels the non-zero voxels of `levels` (grid `dims`): those whose level `confidence` is
/// at least `marker_confidence` are markers and keep their level; every other voxel of the
/// mask takes the level of the flood that reaches it first, deepest voxels first. Voxels no
/// flood reaches (a part of the mask without a marker) keep their level.
pub fn relabel_levels(
    levels: &[u8],
    confidence: &[f32],
    dims: [usize; 3],
    marker_confidence: f32,
) -> Vec<u8> {
    let mask: Vec<bool> = levels.iter().map(|&l| l != 0).collect();
    let depth = depth_below_surface(&mask, dims);
    let mut out: Vec<u8> = levels
        .iter()
        .zip(confidence)
        .map(|(&l, &c)| {
            if l != 0 && c >= marker_confidence {
                l
            } else {
                0
            }
        })
        .collect();
    // Max-heap on depth; among equal depths the earlier push first (deterministic).
    let mut heap = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<(u16, std::cmp::Reverse<u64>, usize, u8)>, v, l| {
        heap.push((depth[v], std::cmp::Reverse(seq), v, l));
        seq += 1;
    };
    for v in 0..out.len() {
        if out[v] != 0 {
            for n in neighbours(v, dims) {
                if mask[n] && out[n] == 0 {
                    push(&mut heap, n, out[v]);
                }
            }
        }
    }
    while let Some((_, _, v, l)) = heap.pop() {
        if out[v] != 0 {
            continue;
        }
        out[v] = l;
        for n in neighbours(v, dims) {
            if mask[n] && out[n] == 0 {
                push(&mut heap, n, l);
            }
        }
    }
    for ((o, &l), &m) in out.iter_mut().zip(levels).zip(&mask) {
        if m && *o == 0 {
            *o = l;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two 6x6x6 blocks joined by a one-voxel bridge, along x.
    fn dumbbell() -> ([usize; 3], Vec<bool>) {
        let dims = [15, 8, 8];
        let mut m = vec![false; 15 * 64];
        for k in 1..7 {
            for j in 1..7 {
                for i in 1..14 {
                    let bridge = i == 7;
                    if !bridge || (j == 4 && k == 4) {
                        m[(k * 8 + j) * 15 + i] = true;
                    }
                }
            }
        }
        (dims, m)
    }

    #[test]
    fn depth_counts_steps_to_the_outside() {
        let dims = [5, 5, 5];
        let m = vec![true; 125];
        let d = depth_below_surface(&m, dims);
        assert_eq!(d[0], 1);
        assert_eq!(d[(2 * 5 + 2) * 5 + 2], 3);
        assert_eq!(d[(2 * 5 + 2) * 5 + 1], 2);
        let mut m2 = m.clone();
        m2[0] = false;
        assert_eq!(depth_below_surface(&m2, dims)[0], 0);
    }

    #[test]
    fn boundary_moves_to_the_bridge() {
        let (dims, m) = dumbbell();
        // A blurred level map: the boundary drawn at x = 4 instead of the bridge at x = 7;
        // the right level is confident closer to the bridge than the left one, so a flood in
        // plain distance order would carry it past the bridge.
        let mut levels = vec![0u8; m.len()];
        let mut conf = vec![0f32; m.len()];
        for (v, &inside) in m.iter().enumerate() {
            if inside {
                let i = v % 15;
                levels[v] = if i < 4 { 3 } else { 4 };
                conf[v] = if !(2..=8).contains(&i) { 0.9 } else { 0.55 };
            }
        }
        let out = relabel_levels(&levels, &conf, dims, 0.8);
        for (v, &inside) in m.iter().enumerate() {
            let i = v % 15;
            if inside && i != 7 {
                assert_eq!(out[v], if i < 7 { 3 } else { 4 }, "voxel x = {i}");
            } else if !inside {
                assert_eq!(out[v], 0);
            }
        }
    }

    #[test]
    fn a_part_without_markers_keeps_its_levels() {
        let (dims, m) = dumbbell();
        let levels: Vec<u8> = m.iter().map(|&b| if b { 5 } else { 0 }).collect();
        let conf = vec![0.1f32; m.len()];
        assert_eq!(relabel_levels(&levels, &conf, dims, 0.8), levels);
    }
}
