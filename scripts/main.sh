#!/usr/bin/env bash
# The main job: installs what is missing, builds examples/dino and lets the
# trained Dino agent shipped in models/dino.safetensors (docs/results.md)
# play Chrome's Dino game from pixels in headless Chromium, next to the no-op
# and random policies on the same seeded episodes.
#   scripts/main.sh [episodes] [extra dino flags, e.g. --headful]
# Train your own: build/examples/dino/dino train --capture canvas --run-dir runs/dino
set -euo pipefail
cd "$(dirname "$0")/.."
episodes=${1:-5}
shift || true
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DQRL_BUILD_EXAMPLES=ON
cmake --build build -j "$(nproc)" --target dino
dino=./build/examples/dino/dino
# Seeds 1000.. are the model card's evaluation seeds, never used in training.
echo "== no-op policy, $episodes seeded episodes"
"$dino" eval --policy noop --episodes "$episodes" --seed 1000 --capture canvas --json "$@"
echo "== random policy, the same $episodes episodes"
"$dino" eval --policy random --episodes "$episodes" --seed 1000 --capture canvas --json "$@"
echo "== the shipped agent plays the same $episodes episodes"
"$dino" play --episodes "$episodes" --seed 1000 --capture canvas "$@"
