"""Compare flow's NIfTI with dcm2niix's, and report how nibabel reads flow's file.

compare_nifti.py OURS.nii.gz DCM2NIIX_OUTPUT_DIR OURS_DATA.raw

Both images are brought to the closest canonical (RAS) orientation by nibabel before the
voxel values (scaled, get_fdata) and affines are compared. nibabel's raw reading of OURS
(data in file order as int32, x fastest) goes to OURS_DATA.raw. Prints JSON.
"""
import glob
import json
import sys

import nibabel as nib
import numpy as np

ours_path, ref_dir, raw_out = sys.argv[1:4]
refs = sorted(glob.glob(f"{ref_dir}/*.nii.gz")) + sorted(glob.glob(f"{ref_dir}/*.nii"))
if len(refs) != 1:
    sys.exit(f"expected one dcm2niix output in {ref_dir}, found {refs}")

ours = nib.load(ours_path)
ref = nib.load(refs[0])
oc = nib.as_closest_canonical(ours)
rc = nib.as_closest_canonical(ref)
od = oc.get_fdata()
rd = rc.get_fdata()
same_shape = od.shape == rd.shape
out = {
    "ours_shape": list(od.shape),
    "dcm2niix_shape": list(rd.shape),
    "max_voxel_difference": float(np.abs(od - rd).max()) if same_shape else None,
    "max_affine_difference": float(np.abs(oc.affine - rc.affine).max()),
    "ours_sform": ours.get_sform().tolist(),
    "ours_qform": ours.get_qform().tolist(),
    "ours_sform_code": int(ours.header["sform_code"]),
    "ours_qform_code": int(ours.header["qform_code"]),
    "ours_dtype": str(ours.get_data_dtype()),
}
np.asarray(ours.dataobj).astype("<i4").ravel(order="F").tofile(raw_out)
print(json.dumps(out))
