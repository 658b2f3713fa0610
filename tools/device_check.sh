#!/usr/bin/env bash
# What a GPU machine proves in a few minutes, with no network and no TensorRT needed.
#
#   bash tools/device_check.sh [OUT_DIR]          (default OUT_DIR: device-check/)
#
# 1. the GPU, nvcc and PyTorch it finds;
# 2. edgeseg's CPU ops library (the reference the kernels are compared with), built with g++ if
#    this checkout has none;
# 3. pytest -m cuda: every RoIAlign and PasteMasks case of the CPU tests, FP32 and FP16, on the
#    plugins' own CUDA launchers against the CPU build (tests/test_cuda_kernels.py);
# 4. compute-sanitizer memcheck and racecheck over a small run of both kernels, where the
#    sanitizer works;
# 5. the kernels' GPU time against torchvision's CUDA ops (benchmarks/cuda_kernels.py);
# 6. if TensorRT's Python package is there: the plugin library (CMake) and pytest -m gpu.
#
# Writes OUT_DIR/device_check.log, OUT_DIR/kernels.json and OUT_DIR/summary.txt; exits 1 if a step
# failed. Each step has its own time limit, all within one budget (BUDGET_SECONDS, default 470), so
# the whole check ends within 8 minutes. On a machine without a CUDA GPU it only checks that the
# kernel test library compiles, says so, and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-device-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
LOG="$OUT/device_check.log"
: >"$LOG"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
failed=()
summary=()
BUDGET=${BUDGET_SECONDS:-470}

step() {  # step NAME SECONDS COMMAND...: run, log, remember the outcome
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 15 ]; then
    skip "$name" "out of time (budget ${BUDGET} s)"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name" | tee -a "$LOG"
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  local took=$((SECONDS - start))
  if [ "$rc" -eq 0 ]; then
    summary+=("ok      $name (${took} s)")
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    summary+=("TIMEOUT $name (limit ${limit} s)")
    failed+=("$name")
  else
    summary+=("FAILED  $name (exit $rc, ${took} s)")
    failed+=("$name")
  fi
}

skip() { echo "== $1: skipped ($2)" | tee -a "$LOG"; summary+=("skipped $1: $2"); }

finish() {
  {
    echo "edgeseg device check, $(date -u +%Y-%m-%dT%H:%M:%SZ), ${1}"
    printf '%s\n' "${summary[@]}"
  } | tee "$OUT/summary.txt"
  [ ${#failed[@]} -eq 0 ]
  exit $?
}

gpu=$("$PY" -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else '')" 2>/dev/null)
if [ -z "$gpu" ]; then
  why="no CUDA GPU visible to $PY's PyTorch (or no PyTorch)"
  if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
    step "kernel test library compiles (no GPU to run it)" 120 "$PY" -c "
import pathlib, tempfile
from tests.cuda_kernels import build_library
with tempfile.TemporaryDirectory() as d:
    print('built', build_library(pathlib.Path(d), 87).name, 'for sm_87')"
  fi
  skip "kernel tests, sanitizers, timings" "$why; run this on a GPU machine"
  finish "no GPU"
fi

step "GPU, nvcc and PyTorch" 30 bash -c '
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader || exit 1
  nvcc --version >/dev/null || exit 1
  nvcc --version | tail -1
  '"$PY"' -c "import torch, sys; ok = torch.cuda.is_available(); print(\"torch\", torch.__version__, \"sees\", torch.cuda.get_device_name() if ok else \"no GPU\"); sys.exit(0 if ok else 1)"'

if ! ls edgeseg/_ops_cpu*.so >/dev/null 2>&1; then
  step "CPU ops library (g++)" 60 g++ -O3 -std=c++17 -ffp-contract=off -fopenmp -shared -fPIC -Iplugins \
    plugins/multilevel_roi_align/roi_align_cpu.cpp plugins/paste_masks/paste_masks_cpu.cpp \
    -o edgeseg/_ops_cpu.so
fi

step "Python packages the tests import (pytest, numpy, OpenCV)" 30 "$PY" -c "import pytest, numpy, cv2"
# On a GPU machine the kernel tests must run, not skip: a skip there is a failure.
export EDGESEG_REQUIRE_CUDA=1
step "pytest -m cuda (kernels vs the CPU build)" 180 "$PY" -m pytest -m cuda tests/test_cuda_kernels.py -q -rs \
  -p no:cacheprovider

if command -v compute-sanitizer >/dev/null 2>&1; then
  for tool in memcheck racecheck; do
    # No caching allocator under the sanitizer: a write past one tensor into the next is seen.
    step "compute-sanitizer $tool" 75 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool "$tool" \
      --error-exitcode 3 \
      "$PY" -m pytest -m cuda tests/test_cuda_kernels.py -k sanitizer_smoke -q -p no:cacheprovider
  done
else
  skip "compute-sanitizer" "not on PATH"
fi

if "$PY" -c "import torchvision" >/dev/null 2>&1; then
  step "kernel times vs torchvision" 90 "$PY" benchmarks/cuda_kernels.py --runs 30 --json "$OUT/kernels.json"
else
  skip "kernel times vs torchvision" "torchvision is not installed"
fi

if "$PY" -c "import tensorrt" >/dev/null 2>&1; then
  arch=$("$PY" -c "import torch; a, b = torch.cuda.get_device_capability(); print(a * 10 + b)")
  if cmake -S plugins -B build/plugins -DCMAKE_CUDA_ARCHITECTURES="$arch" >>"$LOG" 2>&1; then
    step "TensorRT plugin library (CMake)" 300 bash -c 'cmake --build build/plugins -j && cmake --install build/plugins'
  else
    skip "TensorRT plugin library" "CMake found no TensorRT headers (NvInferRuntime.h); set TENSORRT_INCLUDE_DIR"
  fi
  step "pytest -m gpu (TensorRT)" 300 "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider
else
  skip "pytest -m gpu" "TensorRT's Python package is not installed"
fi

finish "$gpu"
