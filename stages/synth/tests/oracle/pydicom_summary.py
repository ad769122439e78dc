"""Reads every DICOM file of a synthetic cohort with pydicom and prints one JSON object per
study: file count, HU statistics and the slice positions in file-number order.

Usage: python pydicom_summary.py COHORT_ROOT
"""
import json
import os
import sys

import numpy as np
import pydicom

root = sys.argv[1]
out = {}
for split in ("train_images", "test_images"):
    base = os.path.join(root, split)
    for uid in sorted(os.listdir(base)):
        folder = os.path.join(base, uid)
        numbers = sorted(int(f[:-4]) for f in os.listdir(folder) if f.endswith(".dcm"))
        total = 0
        lo, hi = None, None
        z = []
        series = set()
        for n in numbers:
            ds = pydicom.dcmread(os.path.join(folder, f"{n}.dcm"))
            assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2", ds.SOPClassUID
            assert ds.StudyInstanceUID == uid
            assert str(ds.PatientName) == "" and ds.PatientID == ""
            hu = ds.pixel_array.astype(np.int64) * int(float(ds.RescaleSlope)) + int(float(ds.RescaleIntercept))
            total += int(hu.sum())
            lo = int(hu.min()) if lo is None else min(lo, int(hu.min()))
            hi = int(hu.max()) if hi is None else max(hi, int(hu.max()))
            z.append(float(ds.ImagePositionPatient[2]))
            series.add(ds.SeriesInstanceUID)
        out[uid] = {
            "split": split,
            "files": len(numbers),
            "first_number": numbers[0],
            "last_number": numbers[-1],
            "hu_sum": total,
            "hu_min": lo,
            "hu_max": hi,
            "z": z,
            "series": len(series),
            "rows": int(ds.Rows),
            "cols": int(ds.Columns),
            "pixel_representation": int(ds.PixelRepresentation),
            "intercept": float(ds.RescaleIntercept),
        }
print(json.dumps(out))
