#!/usr/bin/env bash
# The test command (README): builds a Python venv with the reference tools (pydicom, nibabel,
# dcm2niix, scikit-learn) used as oracles, then runs the whole Rust test-suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ] || ! cmp -s scripts/requirements-test.txt .venv/.requirements 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -r scripts/requirements-test.txt
  cp scripts/requirements-test.txt .venv/.requirements
fi
export FLOW_PYTHON="$PWD/.venv/bin/python"
# Real DICOM files (JPEG 2000, JPEG-LS, RLE, deflated, big endian ...) as extra fuzz seeds.
FLOW_FUZZ_SEEDS="$(.venv/bin/python -c 'import os, pydicom.data; print(os.path.dirname(pydicom.data.get_testdata_file("CT_small.dcm")))')"
export FLOW_FUZZ_SEEDS
export FLOW_REQUIRE_ORACLES=1
cargo test --workspace "$@"
