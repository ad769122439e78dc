#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, does flow compute the same numbers as on the
# CPU, how fast is it next to PyTorch on the same GPU, and does the pipeline run with `gpu=1`?
#
#   scripts/gpu-check.sh pack   # on a machine with cargo and the network (no GPU needed):
#                               # builds with CUDA (scripts/cuda-build.sh --checks) and packs
#                               # the executables into .gpu-check/ (FLOW_GPU_CHECK_DIR)
#   scripts/gpu-check.sh run    # on the GPU machine, in the repository with .gpu-check/ in it
#   scripts/gpu-check.sh        # both, on a GPU machine that can also build
#
# `run` needs nvidia-smi and a python3 with PyTorch for CUDA (FLOW_GPU_PYTHON, default python3;
# the PyTorch side of the benchmark), and the CUDA 13 runtime libraries flow links (cuBLAS,
# cuRAND, NVRTC, the runtime): FLOW_CUDA_LIBS, else the `nvidia/cu13/lib` folder of that
# python's CUDA wheels (PyTorch's own). It does, and prints as one markdown table:
# 1. tests/device_parity.rs of flow-nn3d with FLOW_NN3D_TEST_DEVICE=cuda: every op, a U-Net
#    training step and a sliding-window prediction, GPU against CPU (tolerances in the test);
# 2. the nn3d benchmark on the GPU next to PyTorch on the same GPU (stages/nn3d/bench);
# 3. the rsna7 pipeline with the tiny profile, once with `--set gpu=1` and once on the CPU:
#    exit code, wall time, stage-1 Dice and the test metric of each.
# The work happens in a temporary folder; the table and the logs (seven files) are copied to
# $OUT where it is set, else left in that folder, which the last line names.
# `pack` leaves about 40 MiB: small enough to carry to a machine with no Rust toolchain. Through
# the device tool: `run` with carry [".gpu-check"] and command `scripts/gpu-check.sh run`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
pack_dir="${FLOW_GPU_CHECK_DIR:-$root/.gpu-check}"
mode="${1:-all}"

pack() {
  "$root/scripts/cuda-build.sh" --checks
  local release="${CARGO_TARGET_DIR:-$root/target/cuda}/release"
  rm -rf "$pack_dir"
  mkdir -p "$pack_dir"
  strip -o "$pack_dir/flow" "$release/flow"
  strip -o "$pack_dir/device_parity" "$release/gpu-check/device_parity"
  strip -o "$pack_dir/nn3d_bench" "$release/gpu-check/nn3d_bench"
  gzip -9 "$pack_dir"/*
  echo "gpu-check: packed $(du -sh "$pack_dir" | cut -f1) into $pack_dir"
}

# Seconds since the epoch, with fractions.
now() { date +%s.%N; }

run() {
  local py="${FLOW_GPU_PYTHON:-python3}"
  local out
  out="$(mktemp -d)"
  local bin="$out/bin"
  mkdir -p "$bin"
  for f in flow device_parity nn3d_bench; do
    if [[ -f "$pack_dir/$f.gz" ]]; then
      gzip -dc "$pack_dir/$f.gz" > "$bin/$f"
    elif [[ -f "$pack_dir/$f" ]]; then
      cp "$pack_dir/$f" "$bin/$f"
    else
      echo "gpu-check: $pack_dir/$f(.gz) missing: run 'scripts/gpu-check.sh pack' first" >&2
      exit 2
    fi
    chmod +x "$bin/$f"
  done
  local gpu
  gpu="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n 1)" \
    || { echo "gpu-check: nvidia-smi found no GPU" >&2; exit 2; }
  local libs="${FLOW_CUDA_LIBS:-$("$py" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null || true)}"
  [[ -d "$libs" ]] || { echo "gpu-check: no CUDA 13 libraries (set FLOW_CUDA_LIBS)" >&2; exit 2; }
  libs="$(cd "$libs" && pwd)"
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local table="$out/gpu-check.md"
  {
    echo "GPU: $gpu; flow $("$bin/flow" --version); PyTorch $("$py" -c 'import torch; print(torch.__version__)')"
    echo
    echo "| check | result | detail |"
    echo "|---|---|---|"
  } > "$table"

  # 1. The same numbers as the CPU.
  local rc=0
  FLOW_NN3D_TEST_DEVICE=cuda "$bin/device_parity" --test-threads 1 > "$out/parity.log" 2>&1 || rc=$?
  local verdict="pass"
  [[ $rc -eq 0 ]] || verdict="**FAIL** (exit $rc; parity.log)"
  echo "| nn3d on CUDA vs CPU (ops fwd+bwd 1e-4, U-Net step and sliding window 2e-3) | $verdict | $(grep -o 'test result.*passed; [0-9]* failed' "$out/parity.log" | head -n 1) |" >> "$table"

  # 2. The tiny pipeline on the GPU and on the CPU.
  for where in gpu cpu; do
    local dir="$out/tiny-$where" start end
    mkdir -p "$dir"
    local set_gpu=(--set gpu=0)
    [[ $where == gpu ]] && set_gpu=(--set gpu=1 --gpus 0)
    start="$(now)"
    rc=0
    (cd "$dir" && "$bin/flow" --quiet run "$root/pipelines/rsna7.yaml" --set profile=tiny \
      "${set_gpu[@]}" > "$out/tiny-$where.log" 2>&1) || rc=$?
    end="$(now)"
    local detail
    detail="$("$py" - "$dir/results/rsna7/report/metrics.json" <<'EOF' 2>/dev/null || echo "no metrics.json"
import json, sys
m = json.load(open(sys.argv[1]))
print("stage-1 Dice %.3f, test metric / baseline %.3f" % (m["stage1_mean_dice"], m["test"]["ratio_to_prior"]))
EOF
)"
    verdict="ok"
    [[ $rc -eq 0 ]] || verdict="**FAIL** (exit $rc; tiny-$where.log)"
    printf '| tiny pipeline, %s | %s, %.0f s | %s |\n' "$where" "$verdict" \
      "$(awk "BEGIN { print $end - $start }")" "$detail" >> "$table"
  done

  # 3. Speed next to PyTorch on the same GPU.
  "$bin/nn3d_bench" --device cuda --reps 5 > "$out/flow.jsonl" 2> "$out/bench.log" \
    || echo "| nn3d benchmark | **FAIL** (bench.log) | |" >> "$table"
  "$py" "$root/stages/nn3d/bench/torch_bench.py" --device cuda --reps 5 > "$out/torch.jsonl" \
    2>> "$out/bench.log" || echo "| PyTorch benchmark | **FAIL** (bench.log) | |" >> "$table"
  "$py" "$root/stages/nn3d/bench/table.py" "$out/flow.jsonl" "$out/torch.jsonl" GPU >> "$table" \
    2>> "$out/bench.log" || true
  rm -rf "$bin" "$out"/tiny-gpu "$out"/tiny-cpu   # the unpacked executables and run states
  cat "$table"
  if [[ -n "${OUT:-}" ]]; then
    cp "$table" "$out"/{parity.log,bench.log,flow.jsonl,torch.jsonl,tiny-gpu.log,tiny-cpu.log} "$OUT"/ 2>/dev/null || true
    echo "gpu-check: table and logs in $OUT (work folder $out)"
  else
    echo "gpu-check: table and logs in $out"
  fi
  grep -q FAIL "$table" && return 1
  return 0
}

case "$mode" in
  pack) pack ;;
  run) run ;;
  all) pack && run ;;
  *) echo "usage: scripts/gpu-check.sh [pack|run]" >&2; exit 2 ;;
esac
