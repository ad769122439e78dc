#!/usr/bin/env bash
# Runs the flow and PyTorch benchmarks with the same thread count and prints a markdown table.
# Usage: stages/nn3d/bench/run.sh [--threads N] [--reps N] [--quick]
# Needs: a PyTorch venv (default /work/bench-venv; override with TORCH_PYTHON).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
threads=2
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
py="${TORCH_PYTHON:-/work/bench-venv/bin/python}"
out="$(mktemp -d)"
export RAYON_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
(cd "$here/../../.." && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-nn3d}" \
  cargo run --release -q -p flow-nn3d --example nn3d_bench -- "${args[@]}") | tee "$out/flow.jsonl"
"$py" "$here/torch_bench.py" --threads "$threads" "${args[@]}" | tee "$out/torch.jsonl"
python3 "$here/table.py" "$out/flow.jsonl" "$out/torch.jsonl" "$threads"
