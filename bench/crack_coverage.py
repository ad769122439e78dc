#!/usr/bin/env python3
"""Do the fracture maps find the cracks, and do the stage-1 labels cover them?

Reads the published outputs of an rsna7 run on a cohort with hidden truth (`flow synth`), as
bench/fracture_rounds.py does (`roi_<split>/rois/<UID>.vertebrae.nii.gz`,
`predict_round<N>_<split>/probs/<UID>.nii.gz`; run a copy of pipelines/rsna7.yaml with
`publish: true` on the `roi_*` and `predict_round*` nodes), and the cohort's true crack masks
(`truth/fractures/<UID>.nii.gz`, voxel value = the vertebra's level).

Prints, per part of the vertebra (body, lamina, spinous process, ...): the cracks, how many the
map finds (probability >= 0.5 somewhere in the true crack), and the mean fraction of the
crack's voxels inside the stage-1 label of its vertebra, as labelled and grown by 2.5 mm to the
nearest label. Then the pooled AUC over all vertebrae of the map's maximum in each vertebra,
for the labels grown by 0, 2.5, 5 and 12 mm (rsna.stage3's `vertebra_margin_mm`).

    python bench/crack_coverage.py <results/rsna7 dir> <cohort root> [round, default 3]

Needs numpy, scipy, nibabel, scikit-learn. docs/benchmarks.md (tenth session) has the numbers.
"""
import csv
import glob
import os
import sys
from collections import defaultdict

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to
from scipy import ndimage
from sklearn.metrics import roc_auc_score

LEVELS = ["C1", "C2", "C3", "C4", "C5", "C6", "C7"]
MARGINS_MM = [0.0, 2.5, 5.0, 12.0]


def grown(vert, spacing, margin_mm):
    """Background voxels within margin_mm of a label take the nearest label."""
    if margin_mm <= 0:
        return vert
    dist, idx = ndimage.distance_transform_edt(vert == 0, sampling=spacing, return_indices=True)
    return np.where(dist <= margin_mm, vert[tuple(idx)], 0)


def labels(root):
    out = {}
    for f in (os.path.join(root, "train.csv"), os.path.join(root, "truth", "test_labels.csv")):
        for r in csv.DictReader(open(f)):
            out[r["StudyInstanceUID"]] = [int(r[c]) for c in LEVELS]
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    results, root = sys.argv[1], sys.argv[2]
    rnd = sys.argv[3] if len(sys.argv) > 3 else "3"
    truth = labels(root)
    cracks = defaultdict(list)
    for r in csv.DictReader(open(os.path.join(root, "truth", "fractures.csv"))):
        cracks[r["StudyInstanceUID"]].append(r)
    by_part = defaultdict(lambda: [0, 0, [], []])  # cracks, found, in label, in grown label
    ys, maxima = [], defaultdict(list)
    for split in ("train", "test"):
        for p in sorted(glob.glob(f"{results}/predict_round{rnd}_{split}/probs/*.nii.gz")):
            uid = os.path.basename(p)[: -len(".nii.gz")]
            img = nib.load(p)
            prob = np.asarray(img.dataobj)
            vert = np.asarray(nib.load(f"{results}/roi_{split}/rois/{uid}.vertebrae.nii.gz").dataobj)
            spacing = img.header.get_zooms()[:3]
            views = {m: grown(vert, spacing, m) for m in MARGINS_MM}
            for k in range(1, 8):
                for m, v in views.items():
                    sel = prob[v == k]
                    maxima[m].append(sel.max() if sel.size else 0.0)
                ys.append(truth[uid][k - 1])
            if not cracks.get(uid):
                continue
            mask = resample_from_to(nib.load(f"{root}/truth/fractures/{uid}.nii.gz"), (prob.shape, img.affine), order=0)
            mask = np.asarray(mask.dataobj)
            for r in cracks[uid]:
                k = LEVELS.index(r["vertebra"]) + 1
                m = mask == k
                if not m.any():
                    continue
                row = by_part[r["part"]]
                row[0] += 1
                row[1] += int(prob[m].max() >= 0.5)
                row[2].append((vert[m] == k).mean())
                row[3].append((views[2.5][m] == k).mean())
    print(f"round {rnd}: cracks by part (a crack counts once per crack row; two cracks of one vertebra share its mask)")
    print(f"{'part':<18} {'cracks':>6} {'found':>6} {'in label':>9} {'in label + 2.5 mm':>18}")
    for part, (n, found, inside, inside_grown) in sorted(by_part.items()):
        print(f"{part:<18} {n:>6} {found:>6} {np.mean(inside):>9.2f} {np.mean(inside_grown):>18.2f}")
    ys = np.array(ys)
    print(f"\npooled vertebra AUC of the map's maximum ({int(ys.sum())} fractured of {len(ys)} vertebrae):")
    for m in MARGINS_MM:
        print(f"  labels grown by {m:>4} mm: {roc_auc_score(ys, maxima[m]):.3f}")


if __name__ == "__main__":
    main()
