"""Reference HU of one DICOM file: pixels.py IN.dcm OUT.raw

Decodes with pydicom (+pylibjpeg for compressed syntaxes), applies the modality LUT
(RescaleSlope/Intercept), rounds, and writes int32 little-endian values row by row.
Prints {"rows": R, "columns": C, "transfer_syntax": UID} as JSON.
"""
import json
import sys

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

ds = pydicom.dcmread(sys.argv[1])
arr = ds.pixel_array
hu = apply_modality_lut(arr, ds)
np.round(hu).astype("<i4").tofile(sys.argv[2])
print(json.dumps({"rows": int(ds.Rows), "columns": int(ds.Columns), "transfer_syntax": str(ds.file_meta.TransferSyntaxUID)}))
