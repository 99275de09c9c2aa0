#!/usr/bin/env bash
# Installs what is missing (ALE included), builds qrl with its tests, examples and
# benchmarks (Release), and runs the whole test suite with ctest.
#   scripts/test.sh [build-dir]     (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bash scripts/setup.sh
bash scripts/build_ale.sh   # ALE for the Atari env and its tests; a no-op once built
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DQRL_BUILD_TESTS=ON -DQRL_BUILD_EXAMPLES=ON -DQRL_BUILD_BENCH=ON
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure
