#!/usr/bin/env bash
# Type-checks flow-nn3d with the `cuda` feature on a machine without a CUDA toolkit, using
# nvcc from PyPI wheels (see shared/design/cuda-build.md). Linking is not attempted: the
# wheels lack libcuda (driver) and the unversioned runtime libraries.
#
# Env: CUDA_VENV (default /tmp/flow-cuda-venv), CARGO_TARGET_DIR (default <repo>/target),
#      PYTHON (default python3), CUDA_COMPUTE_CAP (default 90).
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
venv="${CUDA_VENV:-/tmp/flow-cuda-venv}"
py="${PYTHON:-python3}"
if [[ ! -x "$venv/bin/nvcc-found" ]]; then
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q "nvidia-cuda-nvcc==13.*" "nvidia-cuda-runtime==13.*" "nvidia-cuda-crt==13.*" "nvidia-cuda-cccl==13.*"
fi
cu="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
if [[ ! -x "$cu/bin/nvcc" ]]; then
  echo "cuda-check: nvcc not found under $cu" >&2
  exit 1
fi
touch "$venv/bin/nvcc-found" && chmod +x "$venv/bin/nvcc-found"
export PATH="$cu/bin:$PATH" CUDA_ROOT="$cu" CUDA_PATH="$cu" CUDA_HOME="$cu"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" CUDARC_CUDA_VERSION=13000
echo "cuda-check: nvcc $("$cu/bin/nvcc" --version | tail -1)"
cd "$root"
cargo check -p flow-nn3d --features cuda --all-targets
echo "cuda-check: flow-nn3d --features cuda type-checks"
