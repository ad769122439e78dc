"""Re-encode a DICOM folder as JPEG Lossless, Process 14 SV1 (1.2.840.10008.1.2.4.70) with GDCM.

make_jpeg_lossless.py IN_DIR OUT_DIR   (needs PyPI python-gdcm)
"""
import os
import sys

import gdcm

src, dst = sys.argv[1:3]
os.makedirs(dst, exist_ok=True)
target = gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1)
for name in sorted(os.listdir(src)):
    reader = gdcm.ImageReader()
    reader.SetFileName(os.path.join(src, name))
    if not reader.Read():
        sys.exit(f"gdcm cannot read {name}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(target)
    change.SetInput(reader.GetImage())
    if not change.Change():
        sys.exit(f"gdcm cannot encode {name}")
    writer = gdcm.ImageWriter()
    writer.SetFileName(os.path.join(dst, name))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        sys.exit(f"gdcm cannot write {name}")
