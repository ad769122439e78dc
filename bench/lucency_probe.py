#!/usr/bin/env python3
"""Can a hand-made "dark line inside bone" detector tell fractured vertebrae apart?

Reads a finished rsna7 run on the synthetic cohort (its CT volumes, stage-1 labels and the
cohort's hidden truth) and, per vertebra, counts voxels that are darker than `dark` HU while
the CT 1-2 voxels away on both sides (any of 13 directions) is at least `depth` HU brighter,
inside the stage-1 label eroded by one voxel and more than 3 voxels from another level.
Prints the AUC of each count and of a logistic model over the counts plus level terms
(fitted on the training studies, measured on the test studies).

    python bench/lucency_probe.py <run dir> [--truth-masks]

Needs numpy, scipy, nibabel, scikit-learn. docs/benchmarks.md has the numbers.
"""
import csv, glob, os, sys

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

DIRS = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, -1, 0), (1, 0, 1), (1, 0, -1),
        (0, 1, 1), (0, 1, -1), (1, 1, 1), (1, 1, -1), (1, -1, 1), (-1, 1, 1)]
DETECTORS = {"dark100_depth200": (100, 200), "dark150_depth300": (150, 300),
             "dark200_depth500": (200, 500)}


def valley_depth(ct):
    """Per voxel, the largest min(I(x+d), I(x-d)) - I(x) over 13 directions, |d| = 1 or 2."""
    out = np.zeros_like(ct)
    for k in (1, 2):
        for d in DIRS:
            a = np.roll(ct, tuple(k * x for x in d), axis=(0, 1, 2))
            b = np.roll(ct, tuple(-k * x for x in d), axis=(0, 1, 2))
            out = np.maximum(out, np.minimum(a, b) - ct)
    return out


def main():
    run = sys.argv[1]
    truth_masks = "--truth-masks" in sys.argv
    root = glob.glob(os.path.join(run, ".flow/view/*/root/truth"))[0][: -len("/truth")]
    labels = {}
    for name in ("train.csv", "truth/test_labels.csv"):
        for r in csv.DictReader(open(os.path.join(root, name))):
            labels[r["StudyInstanceUID"]] = [int(r[f"C{i}"]) for i in range(1, 8)]
    rows = []
    for split in ("train", "test"):
        for f in sorted(glob.glob(f"{run}/results/rsna7/convert_{split}/volumes/*.nii.gz")):
            uid = os.path.basename(f)[: -len(".nii.gz")]
            ct = np.asarray(nib.load(f).dataobj, dtype=np.float32)
            lpath = (f"{root}/truth/vertebrae/{uid}.nii.gz" if truth_masks else
                     f"{run}/results/rsna7/stage1_predict_{split}/labels/{uid}.nii.gz")
            lb = np.asarray(nib.load(lpath).dataobj).astype(np.int16)
            val = valley_depth(ct)
            for lv in range(1, 8):
                m = lb == lv
                if m.sum() < 50:
                    continue
                far = ndi.distance_transform_edt(~((lb > 0) & (lb != lv))) > 3
                inside = ndi.binary_erosion(m, iterations=1) & far
                counts = [int(((ct < dark) & (val > depth) & inside).sum())
                          for dark, depth in DETECTORS.values()]
                rows.append((split, lv, labels[uid][lv - 1], counts))
    feats = lambda rs: np.array([[np.log1p(c) for c in r[3]] + [r[1] == l for l in range(1, 8)]
                                 for r in rs], float)
    tr = [r for r in rows if r[0] == "train"]
    te = [r for r in rows if r[0] == "test"]
    ytr, yte = [r[2] for r in tr], [r[2] for r in te]
    for i, name in enumerate(DETECTORS):
        print(f"{name}: AUC train {roc_auc_score(ytr, [r[3][i] for r in tr]):.3f}"
              f" test {roc_auc_score(yte, [r[3][i] for r in te]):.3f}")
    model = LogisticRegression(max_iter=2000).fit(feats(tr), ytr)
    print(f"logistic (counts + level terms): AUC train "
          f"{roc_auc_score(ytr, model.predict_proba(feats(tr))[:, 1]):.3f} test "
          f"{roc_auc_score(yte, model.predict_proba(feats(te))[:, 1]):.3f}"
          f" ({len(tr)} / {len(te)} vertebrae, {sum(ytr)} / {sum(yte)} fractured)")


if __name__ == "__main__":
    main()
