#!/usr/bin/env bash
# The main job, until the Dino environment lands: installs what is missing,
# builds examples/flappy, trains a DQN on Flappy Bird from pixels on the CPU,
# then evaluates the trained agent against the random policy.
#   scripts/main.sh [steps]         (default 100000 steps)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-100000}
bash scripts/setup.sh
bash scripts/build_ale.sh   # ALE, so the build below also configures examples/atari; a no-op once built
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DQRL_BUILD_EXAMPLES=ON
cmake --build build -j "$(nproc)" --target flappy
run=runs/flappy-quickstart
./build/examples/flappy/flappy train --steps "$steps" --run-dir "$run"
echo "== random policy, 10 seeded episodes"
./build/examples/flappy/flappy eval --policy random --episodes 10 --seed 1000 --json
echo "== trained agent, the same 10 episodes"
./build/examples/flappy/flappy eval --weights "$run/weights.safetensors" --episodes 10 --seed 1000
