"""Decode JPEG streams with libjpeg (pylibjpeg-libjpeg): ljpeg.py A.jpg [B.jpg ...]

Writes the samples of each A.jpg as uint16 little-endian, row by row, to A.raw.
"""
import os
import sys

import numpy as np
from libjpeg import decode

for path in sys.argv[1:]:
    with open(path, "rb") as f:
        samples = decode(f.read())
    samples.astype("<u2").tofile(os.path.splitext(path)[0] + ".raw")
