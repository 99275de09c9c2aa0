#!/usr/bin/env bash
# Everything the CUDA backend still has to show on a machine with a GPU:
# the cuda-labelled tests, the examples' --backend cuda and the installed
# qrl::cuda, compute-sanitizer memcheck on the parity tests,
# and the benchmarks (qrl and, if a CUDA PyTorch is installed, PyTorch).
#   scripts/gpu_check.sh [build-dir]      (default build-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
nvidia-smi -L
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=native \
  -DQRL_BUILD_TESTS=ON -DQRL_BUILD_EXAMPLES=ON -DQRL_BUILD_BENCH=ON
cmake --build "$build" -j "$(nproc)"
# A skip here means the device was not usable: treat it as a failure.
ctest --test-dir "$build" -L cuda --output-on-failure | tee "$build/ctest-cuda.txt"
if grep -q "(Skipped)" "$build/ctest-cuda.txt"; then echo "gpu_check: CUDA tests were skipped on a GPU machine" >&2; exit 1; fi
# --backend cuda of the examples (short runs on this GPU) and the installed
# qrl::cuda (its consumer compares Q-values with the CPU's).
ctest --test-dir "$build" -R '^(install\.consumer_project|cli\.(flappy|atari)_)' --output-on-failure
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ -x "$sanitizer" ]; then
  "$sanitizer" --tool memcheck --error-exitcode 1 "$build/tests/test_cuda"
else
  echo "gpu_check: compute-sanitizer not found (it ships with the CUDA toolkit under bin/)" >&2
fi
"$build/bench/bench_cuda" 5 32
python3 bench/pytorch_dqn_update_cuda.py 5 32 || echo "gpu_check: no CUDA PyTorch for the comparison" >&2
