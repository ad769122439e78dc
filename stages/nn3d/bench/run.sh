#!/usr/bin/env bash
# Runs the flow and PyTorch benchmarks with the same thread count and prints a markdown table.
# Usage: stages/nn3d/bench/run.sh [--threads N] [--reps N] [--quick] [--device cuda]
# (--device cuda: both on the GPU, flow built with --features cuda, no memory rows.)
# Needs PyTorch: TORCH_PYTHON (default .bench-venv/bin/python in the repository, created with
# pip install torch numpy if missing). CARGO_TARGET_DIR defaults to the repository's target/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
threads=2
device=cpu
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --device) device="$2"; args+=("$1" "$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
features=()
[[ "$device" == cpu ]] || features=(--features cuda)
root="$(cd "$here/../../.." && pwd)"
py="${TORCH_PYTHON:-$root/.bench-venv/bin/python}"
if [[ -z "${TORCH_PYTHON:-}" ]] && ! "$py" -c "import torch" 2>/dev/null; then
  python3 -m venv "$root/.bench-venv"
  "$root/.bench-venv/bin/pip" install -q torch numpy
fi
out="$(mktemp -d)"
export RAYON_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
(cd "$root" && cargo run --release -q "${features[@]}" -p flow-nn3d --example nn3d_bench -- "${args[@]}") | tee "$out/flow.jsonl"
"$py" "$here/torch_bench.py" --threads "$threads" "${args[@]}" | tee "$out/torch.jsonl"
if [[ "$device" == cpu ]]; then
  # Peak memory of a training iteration, each in a process of its own.
  (cd "$root" && cargo run --release -q -p flow-nn3d --example nn3d_bench -- --memory "${args[@]}") | tee -a "$out/flow.jsonl"
  "$py" "$here/torch_bench.py" --threads "$threads" --memory "${args[@]}" | tee -a "$out/torch.jsonl"
fi
python3 "$here/table.py" "$out/flow.jsonl" "$out/torch.jsonl" "$threads"
