#!/usr/bin/env python3
"""A user's stage-3 feature, run by flow's `command` stage (no flow code, no recompiling).

For every study with a fracture-probability map it computes, per vertebra C1..C7, the share
of the vertebra's ROI voxels whose probability is >= 0.5, and writes the largest share as the
feature `vertebra_burden`:

    vertebra_burden.py ROIS_DIR PROBS_DIR [ROIS_DIR PROBS_DIR ...] OUT_CSV

ROIS_DIR holds `<UID>.vertebrae.nii.gz` (rsna.roi), PROBS_DIR `<UID>.nii.gz` (float32 on the
same grid, rsna.fracture_predict). Only the standard library is used: NIfTI-1 is a 348-byte
header followed by the voxels, gzip-compressed.
"""
import array
import gzip
import os
import struct
import sys

DTYPES = {2: "B", 4: "h", 16: "f"}  # uint8, int16, float32


def read_nifti(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    endian = "<" if struct.unpack("<i", data[:4])[0] == 348 else ">"
    dims = struct.unpack(endian + "8h", data[40:56])
    datatype = struct.unpack(endian + "h", data[70:72])[0]
    offset = int(struct.unpack(endian + "f", data[108:112])[0])
    if datatype not in DTYPES:
        sys.exit(f"{path}: unsupported NIfTI datatype {datatype}")
    n = dims[1] * dims[2] * dims[3]
    values = array.array(DTYPES[datatype])
    values.frombytes(data[offset:offset + n * values.itemsize])
    if endian != ("<" if sys.byteorder == "little" else ">"):
        values.byteswap()
    return values


def burden(vertebrae, probs):
    total = [0] * 8
    hot = [0] * 8
    for v, p in zip(vertebrae, probs):
        if 1 <= v <= 7:
            total[v] += 1
            hot[v] += p >= 0.5
    return max((hot[v] / total[v] for v in range(1, 8) if total[v]), default=0.0)


def main(argv):
    if len(argv) < 4 or len(argv) % 2 != 0:
        sys.exit("usage: vertebra_burden.py ROIS_DIR PROBS_DIR [ROIS_DIR PROBS_DIR ...] OUT_CSV")
    *pairs, out = argv[1:]
    rows = []
    for rois, probs in zip(pairs[0::2], pairs[1::2]):
        for name in sorted(os.listdir(probs)):
            if not name.endswith(".nii.gz"):
                continue
            uid = name[: -len(".nii.gz")]
            vert = os.path.join(rois, uid + ".vertebrae.nii.gz")
            if not os.path.exists(vert):
                sys.exit(f"{vert}: missing (every probability map needs its ROI vertebra map)")
            rows.append((uid, burden(read_nifti(vert), read_nifti(os.path.join(probs, name)))))
    with open(out, "w") as f:
        f.write("StudyInstanceUID,vertebra_burden\n")
        for uid, b in rows:
            f.write(f"{uid},{b:.6f}\n")
    print(f"vertebra_burden: {len(rows)} studies", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
