#!/usr/bin/env bash
# Benchmark: flow's DICOM->NIfTI converter vs dcm2niix on a 300-slice 512x512 int16 series,
# uncompressed and JPEG Lossless (.70), same files, same run, medians of alternating runs.
#
#   stages/imaging/bench/run.sh [RUNS]
#
# Needs a Python venv with pydicom, python-gdcm (to make the JPEG Lossless copy) and dcm2niix:
# BENCH_VENV (default .bench-venv-imaging in the repository); created with pip if missing.
# CARGO_TARGET_DIR defaults to the repository's target/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
runs="${1:-5}"
venv="${BENCH_VENV:-$root/.bench-venv-imaging}"
target="${CARGO_TARGET_DIR:-$root/target}"
if [ ! -x "$venv/bin/dcm2niix" ] || ! "$venv/bin/python" -c "import gdcm" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pydicom python-gdcm numpy dcm2niix
fi
(cd "$root" && CARGO_TARGET_DIR="$target" cargo build --release -q -p flow-imaging --examples)
work="$(mktemp -d /tmp/flow-imaging-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
"$target/release/examples/write_phantom" "$work/uncompressed" 300 512 512
"$venv/bin/python" "$here/make_jpeg_lossless.py" "$work/uncompressed" "$work/jpeg_lossless"
echo "cores: $(nproc); dcm2niix: $("$venv/bin/dcm2niix" -v 2>&1 | grep -m1 -o 'v[0-9.]*' || true)"
echo
echo "flow, all cores:"
"$venv/bin/python" "$here/compare.py" --flow "$target/release/examples/convert" --dcm2niix "$venv/bin/dcm2niix" \
  --runs "$runs" "uncompressed=$work/uncompressed" "jpeg_lossless=$work/jpeg_lossless"
echo
echo "flow, one thread (RAYON_NUM_THREADS=1):"
"$venv/bin/python" "$here/compare.py" --flow "$target/release/examples/convert" --dcm2niix "$venv/bin/dcm2niix" \
  --runs "$runs" --threads 1 "uncompressed=$work/uncompressed" "jpeg_lossless=$work/jpeg_lossless"
