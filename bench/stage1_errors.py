#!/usr/bin/env python3
"""Where stage 1's label maps go wrong, against a synthetic cohort's truth.

    python3 bench/stage1_errors.py PRED_DIR TRUTH_DIR

PRED_DIR: a run's results/rsna7/stage1_predict_test/labels (or _train); TRUTH_DIR: the
cohort's truth/vertebrae (`flow synth --out DIR`). Needs numpy, scipy and nibabel. Prints the
mean per-level Dice of C1-C7 (as the report computes it), the Dice of C1-C7 merged into one
mask, the share of the voxels both call C1-C7 that sit on the wrong level, and the false
positives / negatives of the merged mask as shares of the true volume, split by distance to
the true surface (within one voxel: a boundary error; beyond three: a wrong structure).
"""
import glob
import os
import sys

import nibabel as nib
import numpy as np
from scipy import ndimage


def main(pred_dir, truth_dir):
    per_level = {k: [] for k in range(1, 8)}
    rows = []
    for f in sorted(glob.glob(os.path.join(pred_dir, "*.nii.gz"))):
        t = os.path.join(truth_dir, os.path.basename(f))
        if not os.path.exists(t):
            continue
        p = np.asarray(nib.load(f).dataobj)
        g = np.asarray(nib.load(t).dataobj)
        for k in range(1, 8):
            a, b = p == k, g == k
            if a.sum() + b.sum():
                per_level[k].append(2 * (a & b).sum() / (a.sum() + b.sum()))
        a, b = (p >= 1) & (p <= 7), (g >= 1) & (g <= 7)
        n = b.sum()
        inside = ndimage.distance_transform_edt(b)
        outside = ndimage.distance_transform_edt(~b)
        fp, fn = a & ~b, b & ~a
        rows.append([
            2 * (a & b).sum() / (a.sum() + n),
            ((p != g) & a & b).sum() / max((a & b).sum(), 1),
            fp.sum() / n, (fp & (outside <= 1)).sum() / n, (fp & (outside > 3)).sum() / n,
            fn.sum() / n, (fn & (inside <= 1)).sum() / n, (fn & (inside > 3)).sum() / n,
        ])
    if not rows:
        sys.exit("no study of %s has a truth map in %s" % (pred_dir, truth_dir))
    r = np.mean(rows, axis=0)
    levels = [np.mean(v) for v in per_level.values() if v]
    print("studies %d, level Dice %.4f (%s)" % (len(rows), np.mean(levels), " ".join(
        "C%d %.3f" % (k, np.mean(v)) for k, v in per_level.items() if v)))
    print("merged C1-C7 Dice %.4f, wrong level inside the overlap %.4f" % (r[0], r[1]))
    print("false positives %.3f (within 1 voxel %.3f, beyond 3 %.3f), "
          "false negatives %.3f (within 1 voxel %.3f, beyond 3 %.3f)" % tuple(r[2:]))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
