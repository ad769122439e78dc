#!/usr/bin/env python3
"""Oracle round-1 labels: the cohort's true crack masks on each ROI grid, for an upper bound.

A `command` node in place of `labels_round1` in a copy of pipelines/rsna7.yaml:

    labels_round1:
      stage: command
      inputs: {rois: roi_train.rois, root: "${params.data}"}
      params:
        cmd: [python3, bench/oracle_fracture_labels.py, "${inputs.rois}", "${inputs.root}", labels]
        outputs: {labels: labels/, summary: summary.json}

Every positive training study (train.csv) gets its true mask (`truth/fractures/<UID>.nii.gz`,
resampled linearly onto the ROI grid, kept where >= 0.25); every negative study an empty
label. No run has these labels: they show what the fracture net learns when labels are right.
Needs numpy, scipy, nibabel. docs/benchmarks.md (seventh session) has the numbers.
"""
import csv
import glob
import json
import os
import sys

import nibabel as nib
import numpy as np
from scipy.ndimage import affine_transform


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    rois, root, out = sys.argv[1:]
    os.makedirs(out, exist_ok=True)
    positive = {r["StudyInstanceUID"]: r["patient_overall"] == "1"
                for r in csv.DictReader(open(os.path.join(root, "train.csv")))}
    written = 0
    for p in sorted(glob.glob(os.path.join(rois, "*.vertebrae.nii.gz"))):
        uid = os.path.basename(p)[: -len(".vertebrae.nii.gz")]
        if uid not in positive:
            continue
        roi = nib.load(p)
        label = np.zeros(roi.shape, np.uint8)
        if positive[uid]:
            truth = nib.load(os.path.join(root, "truth", "fractures", f"{uid}.nii.gz"))
            m = np.linalg.inv(truth.affine) @ roi.affine
            mask = (np.asarray(truth.dataobj) > 0).astype(np.float32)
            label = (affine_transform(mask, m[:3, :3], m[:3, 3], output_shape=roi.shape,
                                      order=1) >= 0.25).astype(np.uint8)
        img = nib.Nifti1Image(label, roi.affine)
        img.set_qform(roi.affine, 1)
        img.set_sform(roi.affine, 1)
        nib.save(img, os.path.join(out, f"{uid}.nii.gz"))
        written += 1
    with open("summary.json", "w") as f:
        json.dump({"labelled": written}, f)


if __name__ == "__main__":
    main()
