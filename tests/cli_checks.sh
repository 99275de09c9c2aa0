#!/usr/bin/env bash
# Checks of examples/flappy as a user meets it: bad input gives one clear
# error line and a non-zero exit; eval --json ends with a parseable summary;
# train writes weights that eval loads, logs, plots, GIFs and checkpoints that
# resume exactly; damaged checkpoints are refused.
#   tests/cli_checks.sh path/to/flappy scratch-dir
set -u
source "$(dirname "$0")/cli_lib.sh"
cli_begin "$1" "$2"
flappy=$program

expect_error "not expected" train --bogus-flag
expect_error "no such file" eval --weights "$work/missing.safetensors"
QRL_MODELS_DIR="$work/no-models" expect_error "no shipped weights" eval --episodes 1
expect_error "frame-size" eval --policy random --frame-size 81
# Without a GPU (or a build without CUDA) --backend cuda is one clear line;
# with one it must simply work.
check_cuda_backend eval --policy random --episodes 1 --json

"$flappy" eval --policy random --episodes 3 --seed 5 --json >"$work/random.txt" || fail "random eval failed"
tail -n 1 "$work/random.txt" | python3 -c '
import json, sys
s = json.loads(sys.stdin.read())
assert s["episodes"] == 3 and len(s["scores"]) == 3, s
assert s["mean_score"] == sum(s["scores"]) / 3 and s["max_score"] == max(s["scores"]), s
' || fail "eval --json summary is wrong: $(tail -n 1 "$work/random.txt")"

"$flappy" train --steps 600 --learning-starts 200 --buffer-size 2000 --progress-interval 300 \
  --run-dir "$work/run" >"$work/train.txt" 2>&1 || fail "train failed: $(tail -n 5 "$work/train.txt")"
grep -q "steps/s" "$work/train.txt" || fail "train printed no progress line"
# The CPU kernels it runs are in the header, as wide as the CPU
# (qrl/backend/cpu_kernels.hpp); oneDNN limited below the CPU's extensions is
# said on stderr.
head -n 3 "$work/train.txt" | grep -qE '^cpu kernels: oneDNN [0-9.]+ [a-z0-9_]+ \(' ||
  fail "train's header does not name the CPU kernels: $(head -n 3 "$work/train.txt")"
grep -q "NARROWER" "$work/train.txt" && fail "train runs kernels narrower than the CPU: $(head -n 1 "$work/train.txt")"
ONEDNN_MAX_CPU_ISA=SSE41 "$flappy" eval --policy random --episodes 1 >/dev/null 2>"$work/narrow.txt" ||
  fail "eval with ONEDNN_MAX_CPU_ISA=SSE41 failed: $(cat "$work/narrow.txt")"
grep -q "qrl: warning: cpu kernels: oneDNN .* sse41 .*NARROWER.*ONEDNN_MAX_CPU_ISA=SSE41 limits it" "$work/narrow.txt" ||
  fail "a oneDNN limited to SSE4.1 gave no warning: $(cat "$work/narrow.txt")"
[ -s "$work/run/weights.safetensors" ] || fail "train wrote no weights"
[ "$(wc -l <"$work/run/progress.csv")" -eq 3 ] || fail "progress.csv should hold a header and 2 rows"
"$flappy" eval --weights "$work/run/weights.safetensors" --episodes 2 --json >"$work/agent.txt" ||
  fail "eval of trained weights failed: $(cat "$work/agent.txt")"
grep -q "Conv2d(64, 64, kernel=3, stride=1, padding=valid) -> \[1, 64, 6, 6\]" "$work/train.txt" &&
  grep -q "Dense(2304, 512)" "$work/train.txt" ||
  fail "the default network is not Nature DQN's on 80x80 frames: $(grep -E 'Conv|Dense' "$work/train.txt")"
expect_error "shape" eval --weights "$work/run/weights.safetensors" --frame-size 84 --episodes 1
# --network tutorial: the tutorials' convolutions with max pooling and --hidden
# units; weights load only into the network they were trained for.
"$flappy" train --network tutorial --hidden 16 --no-double-dqn --steps 300 --learning-starts 100 --buffer-size 1000 \
  --progress-interval 300 --record off --run-dir "$work/tutorial" >"$work/tutorial.txt" 2>&1 ||
  fail "train --network tutorial failed: $(tail -n 5 "$work/tutorial.txt")"
# config.toml records every flag, given or left at its default, and reads back.
grep -qx 'train.double-dqn=true' "$work/run/config.toml" && grep -qx 'train.keep-weights=false' "$work/run/config.toml" ||
  fail "config.toml does not record the flags left at their defaults: $(cat "$work/run/config.toml")"
"$flappy" train --config "$work/tutorial/config.toml" --run-dir "$work/from-config" >"$work/from-config.txt" 2>&1 ||
  fail "train --config of a run's config.toml failed: $(tail -n 5 "$work/from-config.txt")"
grep -qx 'train.double-dqn=false' "$work/from-config/config.toml" && grep -qx 'train.hidden=16' "$work/from-config/config.toml" ||
  fail "--config did not carry --no-double-dqn and --hidden over: $(cat "$work/from-config/config.toml")"
"$flappy" train --help | grep -q -- '--double-dqn,--no-double-dqn{false}=true' ||
  fail "train --help does not show that Double DQN is on by default"
grep -q "MaxPool2d" "$work/tutorial.txt" && grep -q "Dense(256, 16)" "$work/tutorial.txt" ||
  fail "--network tutorial --hidden 16 did not build the tutorial network: $(grep -E 'Conv|Pool|Dense' "$work/tutorial.txt")"
"$flappy" eval --network tutorial --hidden 16 --weights "$work/tutorial/weights.safetensors" --episodes 1 --json \
  >"$work/tutorial-eval.txt" || fail "eval --network tutorial of its weights failed: $(cat "$work/tutorial-eval.txt")"
expect_error "sizes the tutorial network only" eval --network nature --hidden 128 --weights "$work/run/weights.safetensors" --episodes 1
expect_error "shape" eval --network tutorial --hidden 128 --weights "$work/tutorial/weights.safetensors" --episodes 1
expect_error "network options it was trained with" eval --weights "$work/tutorial/weights.safetensors" --episodes 1
expect_error "network options it was trained with" eval --network tutorial --weights "$work/run/weights.safetensors" --episodes 1
printf 'not a safetensors file' >"$work/garbage.safetensors"
expect_error "not a safetensors file" eval --weights "$work/garbage.safetensors" --episodes 1

# Run directory contents (issue 6): SB3 columns, TensorBoard file, config, plots, GIFs, checkpoint.
head -n 1 "$work/run/progress.csv" | grep -q "time/total_timesteps,time/fps,time/episodes,.*rollout/ep_rew_mean,.*rollout/exploration_rate,train/loss,train/q_values" ||
  fail "progress.csv lacks the Stable-Baselines3 columns: $(head -n 1 "$work/run/progress.csv")"
ls "$work"/run/tb/events.out.tfevents.* >/dev/null 2>&1 || fail "no TensorBoard event file in run/tb"
[ -s "$work/run/config.toml" ] || fail "train wrote no config.toml"
[ -s "$work/run/videos/episode_000000.gif" ] || fail "no recording of episode 0 in run/videos"
python3 - "$work/run" <<'PY' || fail "SVG plots are not well-formed XML with lines"
import sys, xml.etree.ElementTree as ET
for name in ("scores.svg", "q_values.svg"):
    root = ET.parse(f"{sys.argv[1]}/{name}").getroot()
    assert root.tag.endswith("svg"), name
assert ET.parse(f"{sys.argv[1]}/q_values.svg").getroot().iter("{http://www.w3.org/2000/svg}polyline")
PY
"$flappy" plot "$work/run" >"$work/plot.txt" || fail "plot failed: $(cat "$work/plot.txt")"
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3  # Debian's, which may have torch
"$py" "$(dirname "$0")/read_checkpoint.py" "$work/run/checkpoints/step_000000000600" >"$work/read.txt" 2>&1 ||
  fail "the checkpoint does not read in Python: $(cat "$work/read.txt")"

# Exact resume through the CLI: 400 steps straight == 250 (--stop-after) + --resume.
small=(--steps 400 --network tutorial --hidden 16 --batch-size 8 --buffer-size 1000 --learning-starts 100 --progress-interval 200
       --checkpoint-interval 200 --epsilon-start 1 --epsilon-end 0.5 --record every:5)
"$flappy" train "${small[@]}" --run-dir "$work/straight" --keep-weights >"$work/straight.txt" 2>&1 ||
  fail "straight run failed"
"$flappy" train "${small[@]}" --run-dir "$work/split" --stop-after 250 >"$work/split1.txt" 2>&1 || fail "first half failed"
grep -q "continue with --resume" "$work/split1.txt" || fail "--stop-after did not say how to continue"
"$flappy" train --resume "$work/split" >"$work/split2.txt" 2>&1 || fail "resume failed: $(tail -n 3 "$work/split2.txt")"
grep -q "resumed from .*step_000000000250 at step 250" "$work/split2.txt" || fail "resume did not start at step 250"
for f in model.safetensors training.safetensors arrays/replay.ring0.frames.00000.bin; do
  cmp -s "$work/straight/checkpoints/step_000000000400/$f" "$work/split/checkpoints/step_000000000400/$f" ||
    fail "resumed run differs from the straight run in $f"
done
cmp -s "$work/straight/episodes.csv" "$work/split/episodes.csv" ||
  [ "$(cut -d, -f1-6 "$work/straight/episodes.csv")" = "$(cut -d, -f1-6 "$work/split/episodes.csv")" ] ||
  fail "episodes.csv of the resumed run differs"

# --keep-weights: every checkpoint's weights stay, the newest equal to weights.safetensors.
[ "$(ls "$work/straight/weights")" = "$(printf 'step_000000000200.safetensors\nstep_000000000400.safetensors')" ] ||
  fail "--keep-weights kept: $(ls "$work/straight/weights" | tr '\n' ' ')"
cmp -s "$work/straight/weights/step_000000000400.safetensors" "$work/straight/weights.safetensors" ||
  fail "--keep-weights: the step-400 weights differ from weights.safetensors"
cmp -s "$work/straight/weights/step_000000000200.safetensors" "$work/straight/weights.safetensors" &&
  fail "--keep-weights: the step-200 file holds the final weights"
[ -e "$work/split/weights" ] && fail "weights/ written without --keep-weights"

# A damaged newest checkpoint is refused, not skipped.
frames="$work/split/checkpoints/step_000000000400/arrays/replay.ring0.frames.00000.bin"
printf '\x01' | dd of="$frames" bs=1 seek=1000 conv=notrunc status=none
expect_error "CRC-32C" train --resume "$work/split" --steps 600
expect_error "no checkpoints" train --resume "$work/run/videos"
expect_error "--force-memory" train --buffer-size 100000000 --run-dir "$work/huge"

# A diverging run stops with a clear error and a debug checkpoint.
expect_error "non-finite" train "${small[@]}" --lr 1e30 --max-grad-norm 0 --run-dir "$work/diverge"
ls -d "$work"/diverge/checkpoints/debug_step_* >/dev/null 2>&1 || fail "no debug checkpoint after a non-finite loss"

# Ctrl-C: a checkpoint at the next slice, then a clean exit that says how to resume.
"$flappy" train --steps 100000 --network tutorial --hidden 16 --batch-size 8 --buffer-size 1000 --learning-starts 100 \
  --progress-interval 100 --run-dir "$work/ctrlc" --record off >"$work/ctrlc.txt" 2>&1 &
pid=$!
for _ in $(seq 600); do
  [ -f "$work/ctrlc/progress.csv" ] && [ "$(wc -l <"$work/ctrlc/progress.csv")" -ge 2 ] && break
  sleep 0.1
done
kill -INT "$pid"
wait "$pid"
status=$?
[ "$status" -eq 130 ] || fail "train exited $status after Ctrl-C, not 130 (128 + SIGINT): $(tail -n 3 "$work/ctrlc.txt")"
grep -q "stopped by SIGINT (Ctrl-C) at step" "$work/ctrlc.txt" || fail "Ctrl-C did not report the step it stopped at"
ls -d "$work"/ctrlc/checkpoints/step_* >/dev/null 2>&1 || fail "Ctrl-C left no checkpoint"

# The planner reads the game's state: on these seeds it reaches a 25-pipe cap.
"$flappy" eval --policy planner --episodes 2 --seed 1000 --max-pipes 25 --json >"$work/planner.txt" ||
  fail "planner eval failed"
tail -n 1 "$work/planner.txt" | python3 -c '
import json, sys
s = json.loads(sys.stdin.read())
assert s["policy"] == "planner" and s["scores"] == [25.0, 25.0], s
' || fail "planner eval did not reach the 25-pipe cap: $(tail -n 1 "$work/planner.txt")"

# --epsilon perturbs the agent only. Every step random, the shipped agent
# passes no pipe, like the random policy; greedy on the same seeds it passes
# pipes. The random steps are seeded, so a rerun repeats the scores.
expect_error "drop --epsilon" eval --policy random --epsilon 0.1 --episodes 1
expect_error "drop --epsilon" eval --policy planner --epsilon 0.1 --episodes 1
for run in greedy:0 noisy:1 noisy-again:1; do
  "$flappy" eval --epsilon "${run#*:}" --episodes 3 --seed 2000 --max-pipes 20 --json >"$work/epsilon-${run%%:*}.txt" ||
    fail "eval --epsilon ${run#*:} failed: $(cat "$work/epsilon-${run%%:*}.txt")"
done
python3 - "$work"/epsilon-{greedy,noisy,noisy-again}.txt <<'PY' || fail "eval --epsilon does not perturb the agent as asked: $(tail -qn 1 "$work"/epsilon-*.txt)"
import json, sys
greedy, noisy, again = (json.loads(open(f).read().splitlines()[-1]) for f in sys.argv[1:])
assert greedy["mean_score"] >= 5, greedy
assert noisy["scores"] == [0, 0, 0] and again == noisy, (noisy, again)
PY

# DQfD: the planner's play as demonstrations, pre-training, then training that
# mixes them into every batch; a resume regenerates them and skips pre-training.
dqfd=(--steps 300 --network tutorial --hidden 16 --batch-size 8 --buffer-size 1000 --learning-starts 100
      --demonstrations 1500 --demonstration-max-pipes 5 --pretrain-updates 40 --demonstration-rows 3
      --checkpoint-interval 150 --progress-interval 150 --record off)
"$flappy" train "${dqfd[@]}" --run-dir "$work/dqfd" --stop-after 150 >"$work/dqfd1.txt" 2>&1 ||
  fail "DQfD training failed: $(tail -n 3 "$work/dqfd1.txt")"
grep -qE '^demonstrations: 14[0-9][0-9] planner transitions from [0-9]+ episodes \(up to 5 pipes each, 0 crashed\)' \
  "$work/dqfd1.txt" || fail "no demonstrations recorded: $(head -n 20 "$work/dqfd1.txt")"
grep -q '^pretrain 40/40 updates' "$work/dqfd1.txt" || fail "no pre-training line"
[ -s "$work/dqfd/pretrained.safetensors" ] || fail "pre-training wrote no pretrained.safetensors"
"$flappy" train --resume "$work/dqfd" >"$work/dqfd2.txt" 2>&1 || fail "DQfD resume failed: $(tail -n 3 "$work/dqfd2.txt")"
grep -q '^demonstrations: ' "$work/dqfd2.txt" || fail "the resumed DQfD run did not regenerate its demonstrations"
grep -q '^pretrain' "$work/dqfd2.txt" && fail "the resumed DQfD run pre-trained again"
grep -q "resumed from .*step_000000000150 at step 150" "$work/dqfd2.txt" || fail "DQfD resume did not start at step 150"
expect_error "add --demonstrations" train --pretrain-updates 10 --run-dir "$work/no-demos"

"$flappy" play --policy random --episodes 2 --gif "$work/play.gif" >"$work/play.txt" || fail "play --gif failed"
[ "$(head -c 6 "$work/play.gif")" = "GIF89a" ] || fail "play --gif wrote no GIF89a file"
[ "$(grep -cE ': score 0, .*, hit the (ground|(upper|lower) pipe [0-9]+ px too (high|low), [0-9]+ px before clearing it)$' "$work/play.txt")" = 2 ] ||
  fail "play did not say how each random episode ended: $(cat "$work/play.txt")"

cli_end flappy
