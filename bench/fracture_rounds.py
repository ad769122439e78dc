#!/usr/bin/env python3
"""How well does each fracture round's probability map rank the vertebrae?

Reads the published outputs of an rsna7 run on a cohort with hidden truth (`flow synth`): the
ROIs (`roi_<split>/rois/<UID>.vertebrae.nii.gz`) and each round's probabilities
(`predict_round<N>_<split>/probs/<UID>.nii.gz`), so run a copy of pipelines/rsna7.yaml with
`publish: true` on the `roi_*` and `predict_round*` nodes. Prints, per round and split, the
AUC of three per-vertebra statistics for "this vertebra is fractured" (train.csv for the
training studies, truth/test_labels.csv for the test studies): the maximum, the mean of the
20 highest voxels and the number of voxels >= 0.5. Round 3's training maps are out of fold.

    python bench/fracture_rounds.py <results/rsna7 dir> <cohort root> [rounds, e.g. 1,2,3]

Needs numpy, nibabel, scikit-learn. docs/benchmarks.md (seventh session) has the numbers.
"""
import csv
import glob
import os
import sys

import nibabel as nib
import numpy as np
from sklearn.metrics import roc_auc_score


def labels(root):
    out = {}
    for f in (os.path.join(root, "train.csv"), os.path.join(root, "truth", "test_labels.csv")):
        for r in csv.DictReader(open(f)):
            out[r["StudyInstanceUID"]] = [int(r["C%d" % i]) for i in range(1, 8)]
    return out


def round_aucs(results, lab, split, rnd):
    ys, xs = [], []
    for p in sorted(glob.glob(f"{results}/predict_round{rnd}_{split}/probs/*.nii.gz")):
        uid = os.path.basename(p)[: -len(".nii.gz")]
        prob = np.asarray(nib.load(p).dataobj)
        vert = np.asarray(nib.load(f"{results}/roi_{split}/rois/{uid}.vertebrae.nii.gz").dataobj)
        for k in range(1, 8):
            v = prob[vert == k]
            if v.size == 0:
                continue
            xs.append([v.max(), np.sort(v)[-20:].mean(), (v >= 0.5).sum()])
            ys.append(lab[uid][k - 1])
    xs, ys = np.array(xs), np.array(ys)
    return [roc_auc_score(ys, xs[:, j]) for j in range(3)], int(ys.sum()), len(ys)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    results, root = sys.argv[1], sys.argv[2]
    rounds = [int(r) for r in sys.argv[3].split(",")] if len(sys.argv) > 3 else [1, 2, 3]
    lab = labels(root)
    for rnd in rounds:
        for split in ("train", "test"):
            (a_max, a_top, a_vol), pos, n = round_aucs(results, lab, split, rnd)
            print(f"round {rnd} {split}: vertebra AUC max {a_max:.3f}, top-20 mean {a_top:.3f}, "
                  f"voxels >= 0.5 {a_vol:.3f} ({pos} fractured of {n})")


if __name__ == "__main__":
    main()
