"""Re-encode every DICOM file of a folder with pydicom: compress.py IN_DIR OUT_DIR SYNTAX

SYNTAX is "rle" (RLE Lossless, pydicom's own encoder) or "j2k" (JPEG 2000 Lossless via
pylibjpeg-openjpeg).
"""
import os
import sys

import pydicom
from pydicom.uid import JPEG2000Lossless, RLELossless

src, dst, syntax = sys.argv[1:4]
uid = {"rle": RLELossless, "j2k": JPEG2000Lossless}[syntax]
os.makedirs(dst, exist_ok=True)
for name in sorted(os.listdir(src)):
    ds = pydicom.dcmread(os.path.join(src, name))
    ds.compress(uid)
    ds.save_as(os.path.join(dst, name))
