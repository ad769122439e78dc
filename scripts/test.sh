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
export FLOW_REQUIRE_ORACLES=1
cargo test --workspace "$@"
