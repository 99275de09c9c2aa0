#!/usr/bin/env bash
# A shipped model (models/NAME.safetensors, docs/results.md) loads and its
# agent beats the random policy by a wide margin on a few seeded episodes.
#   shipped_model_check.sh PROGRAM EPISODES MARGIN [eval flags...] [-- agent-only flags...]
# Flags after `--` go to the agent's eval only (--epsilon: the random policy
# takes no greedy steps to perturb, and the CLI rejects it there).
# Passes when the agent's mean score is at least MARGIN times the random
# policy's (and at least MARGIN when random scores 0) on the same seeds; a
# MARGIN of +N asks for N points above random instead, for games whose
# scores go negative (Pong: -21 to +21).
# The seeds (2000 + k) are neither training seeds (64-bit draws) nor the
# model cards' evaluation seeds (1000 + k).
set -uo pipefail
program=$1 episodes=$2 margin=$3
shift 3
common=() agent_only=()
while (($#)); do
  if [[ $1 == -- ]]; then shift; agent_only=("$@"); break; fi
  common+=("$1"); shift
done
mean() { python3 -c 'import json, sys; print(json.loads(sys.stdin.read().splitlines()[-1])["mean_score"])'; }
agent=$("$program" eval --episodes "$episodes" --seed 2000 --json "${common[@]}" "${agent_only[@]}" | mean) || { echo "FAIL: the agent's eval failed"; exit 1; }
random=$("$program" eval --policy random --episodes "$episodes" --seed 2000 --json "${common[@]}" | mean) || { echo "FAIL: the random eval failed"; exit 1; }
echo "$(basename "$program"): shipped agent mean score $agent, random policy $random ($episodes seeded episodes)"
python3 - "$agent" "$random" "$margin" <<'PY'
import math, sys
agent, random = map(float, sys.argv[1:3])
margin = sys.argv[3]
if margin.startswith("+"):
    ok, wanted = agent >= random + float(margin), f"{margin} points"
else:
    ok, wanted = agent >= float(margin) * max(random, 1.0), f"{margin}x"
if not (math.isfinite(agent) and ok):
    print(f"FAIL: the agent ({agent}) does not beat the random policy ({random}) by {wanted}")
    sys.exit(1)
PY
