#!/usr/bin/env bash
# Builds `flow` with CUDA (`--features cuda`, candle's CUDA backend) on a machine with no CUDA
# toolkit and no GPU, from PyPI wheels (../shared/design/cuda-build.md has the background).
#
#   scripts/cuda-build.sh            # -> target/cuda/release/flow
#   scripts/cuda-build.sh --checks   # also the GPU check's executables (scripts/gpu-check.sh):
#                                    #    target/cuda/release/gpu-check/{device_parity,nn3d_bench}
#
# What it does:
# 1. a venv (FLOW_CUDA_VENV, default .cuda-venv in the repository) with nvcc and the CUDA 13
#    libraries candle links: cuBLAS, cuBLASLt, cuRAND, NVRTC, the runtime (pinned versions,
#    the ones this script was checked with);
# 2. unversioned link names for those libraries (the wheels ship only libX.so.N);
# 3. a link-time stub of the driver library (libcuda.so.1): the driver API functions that the
#    compiled cudarc and candle reference, each returning CUDA_ERROR_NO_DEVICE. The binary
#    loads the real libcuda.so.1 of the NVIDIA driver wherever one is installed; the stub is
#    only for linking, and for the check below on a machine without a driver;
# 4. the build, then a check: the binary starts, and a `--set gpu=1` node fails with
#    CUDA_ERROR_NO_DEVICE instead of crashing.
#
# To run the binary on a GPU machine, put the venv's library folder on LD_LIBRARY_PATH (the
# script prints it) and not the stub's. CUDA_COMPUTE_CAP (default 90, H100) picks the GPU
# architecture of candle's kernels. The toolkit is pinned to CUDA 13.0 (nvcc, headers and
# libraries): the kernels are PTX that the driver compiles when it loads them, and a driver
# loads PTX only from a toolkit no newer than itself; the NVIDIA driver 580 series (the lent
# H100/H200 machines) is CUDA 13.0.
set -euo pipefail
checks=0
for arg in "$@"; do
  case "$arg" in
    --checks) checks=1 ;;
    *) echo "usage: scripts/cuda-build.sh [--checks]" >&2; exit 2 ;;
  esac
done
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${FLOW_CUDA_VENV:-$root/.cuda-venv}"
target="${CARGO_TARGET_DIR:-$root/target/cuda}"

if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q \
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
  nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 \
  nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
cu="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
[[ -x "$cu/bin/nvcc" ]] || { echo "cuda-build: no nvcc under $cu" >&2; exit 1; }

links="$venv/cuda-link"   # unversioned names of the real libraries
stub="$venv/cuda-stub"    # libcuda.so(.1): link time and the local check only
mkdir -p "$links" "$stub"
for lib in cublas cublasLt curand nvrtc cudart; do
  real="$(ls "$cu"/lib/lib"$lib".so.[0-9]* 2>/dev/null | head -n 1)"
  [[ -n "$real" ]] || { echo "cuda-build: lib$lib.so.* missing from $cu/lib" >&2; exit 1; }
  ln -sf "$real" "$links/lib$lib.so"
done

export PATH="$cu/bin:$PATH" CUDA_ROOT="$cu" CUDA_PATH="$cu" CUDA_HOME="$cu"
export CUDARC_CUDA_VERSION=13000 CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
# One RUSTFLAGS for both passes, so the second pass reuses the first's artefacts.
export RUSTFLAGS="-L native=$links -L native=$stub" CARGO_TARGET_DIR="$target"

# Pass 1: the CUDA crates, no binary to link yet.
(cd "$root" && cargo build --release --features cuda -p flow-nn3d --lib)
# The driver API symbols they reference (cuInit, cuLaunchKernel, ...) -> the stub.
{ nm -u "$target"/release/deps/lib{cudarc,candle_core,candle_kernels}-*.rlib 2>/dev/null || true; } \
  | awk '$2 ~ /^cu[A-Z]/ {print $2}' | sort -u > "$stub/symbols.txt"
[[ -s "$stub/symbols.txt" ]] || { echo "cuda-build: found no driver API symbols" >&2; exit 1; }
awk '{printf "int %s(void) { return 100; /* CUDA_ERROR_NO_DEVICE */ }\n", $1}' \
  "$stub/symbols.txt" > "$stub/stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub/libcuda.so" "$stub/stub.c"
ln -sf libcuda.so "$stub/libcuda.so.1"

# Pass 2: the binary.
(cd "$root" && cargo build --release --features cuda --bin flow)
bin="$target/release/flow"
if [[ $checks -eq 1 ]]; then
  # The CPU-vs-GPU test and the benchmark, as plain executables to carry to a GPU machine.
  mkdir -p "$target/release/gpu-check"
  (cd "$root" && cargo build --release --features cuda -p flow-nn3d --example nn3d_bench)
  cp "$target/release/examples/nn3d_bench" "$target/release/gpu-check/nn3d_bench"
  parity="$(cd "$root" && cargo test --release --features cuda -p flow-nn3d --test device_parity \
    --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "device_parity":
        print(m["executable"])')"
  [[ -x "$parity" ]] || { echo "cuda-build: the device_parity test did not build" >&2; exit 1; }
  cp "$parity" "$target/release/gpu-check/device_parity"
fi

# Check: it starts, and a GPU node fails cleanly where there is no device.
check="$(mktemp -d)"
trap 'rm -rf "$check"' EXIT
if ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
  export LD_LIBRARY_PATH="$cu/lib"          # the driver's own libcuda.so.1
else
  export LD_LIBRARY_PATH="$stub:$cu/lib"    # no driver here: the stub stands in
fi
"$bin" --version
set +e
(cd "$check" && RUST_BACKTRACE=0 "$bin" --quiet run "$root/pipelines/rsna7.yaml" --gpus 0 \
  --set profile=tiny --set gpu=1 --target stage1_lowres > run.log 2>&1)
rc=$?
set -e
if [[ $rc -eq 1 ]] && grep -q "CUDA_ERROR_NO_DEVICE" "$check/run.log"; then
  echo "cuda-build: $bin links; without a GPU its GPU node fails cleanly (CUDA_ERROR_NO_DEVICE)"
elif [[ $rc -eq 0 ]]; then
  echo "cuda-build: $bin ran stage1_lowres on a GPU"
else
  echo "cuda-build: unexpected result (exit $rc):" >&2
  tail -n 20 "$check/run.log" >&2
  exit 1
fi
echo "On a GPU machine: LD_LIBRARY_PATH=$cu/lib $bin run pipelines/rsna7.yaml --gpus 0 --set gpu=1"
