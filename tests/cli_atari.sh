#!/usr/bin/env bash
# Checks of examples/atari as a user meets it: bad input gives one clear
# error line and a non-zero exit; eval --json on parallel envs ends with a
# parseable summary; train (one env and two) writes weights that eval loads;
# a run stopped with --stop-after and continued with --resume ends with the
# same weights, byte for byte, as one straight run; play --gif writes the RGB screen.
#   tests/cli_atari.sh path/to/atari scratch-dir
set -u
source "$(dirname "$0")/cli_lib.sh"
cli_begin "$1" "$2"
atari=$program

expect_error "unknown game 'pongg'; the games in" eval --game pongg --policy random
expect_error "space_invaders" eval --game pongg --policy random
expect_error "does not exist" eval --rom "$work/missing.bin" --policy random
expect_exit 1 "Atari: /tmp is a directory; give the path of a ROM file" eval --rom /tmp --policy random
expect_error "no shipped weights" eval --game seaquest --episodes 1   # Pong, Breakout, Space Invaders have weights
# --backend cuda: one clear line without a GPU (or CUDA in the build), a run with one.
check_cuda_backend eval --game pong --policy random --episodes 1 --max-episode-steps 50 --json
check_cuda_backend train --game pong --steps 120 --learning-starts 100 --buffer-size 500 --batch-size 8 --record off \
  --run-dir "$work/cuda_run"
expect_error "cannot hold 8 rings" train --game pong --envs 8 --buffer-size 64 --stack 16 --steps 10

# Two envs on two threads, episodes cut at 150 steps.
"$atari" eval --game pong --policy random --episodes 3 --envs 2 --max-episode-steps 150 --json >"$work/random.txt" ||
  fail "random eval failed"
tail -n 1 "$work/random.txt" | python3 -c '
import json, sys
s = json.loads(sys.stdin.read())
assert s["episodes"] == 3 and len(s["scores"]) == 3, s
assert all(-21 <= x <= 21 for x in s["scores"]), s
assert s["mean_score"] == sum(s["scores"]) / 3 and s["max_score"] == max(s["scores"]), s
' || fail "eval --json summary is wrong: $(tail -n 1 "$work/random.txt")"

# Episode k has seed --seed + k whatever --envs is: the same scores, in seed
# order, from one env and from three (and the seeds shift with --seed).
for envs in 1 3; do
  "$atari" eval --game pong --policy random --episodes 4 --seed 7 --envs $envs --max-episode-steps 300 --json |
    tail -n 1 >"$work/envs$envs.txt" || fail "random eval --envs $envs failed"
done
"$atari" play --game pong --policy random --episodes 3 --seed 8 --envs 2 --max-episode-steps 300 >"$work/seed8.txt" ||
  fail "random play --seed 8 failed"
python3 - "$work/envs1.txt" "$work/envs3.txt" "$work/seed8.txt" <<'PY' || fail "eval's episodes depend on --envs or ignore --seed + k"
import json, re, sys
one, three = (json.loads(open(p).read()) for p in sys.argv[1:3])
assert one["scores"] == three["scores"], (one, three)
# play --seed 8 plays episodes 2-4 of --seed 7, listed by seed.
lines = [l for l in open(sys.argv[3]) if l.startswith("episode ")]
found = sorted((int(m.group(2)), int(m.group(1)), float(m.group(3)))
               for m in (re.match(r"episode (\d)/3 seed (\d+): score (-?\d+)", l) for l in lines))
assert [(s, k) for s, k, _ in found] == [(8, 1), (9, 2), (10, 3)], lines
assert [x for _, _, x in found] == one["scores"][1:], (lines, one)
assert len(set(one["scores"])) > 1, one  # else a shifted seed could not show
PY

train_args=(--game pong --steps 300 --learning-starts 260 --buffer-size 1000 --batch-size 8 --progress-interval 150
            --checkpoint-interval 150 --record off)
"$atari" train "${train_args[@]}" --run-dir "$work/run" >"$work/train.txt" 2>&1 ||
  fail "train failed: $(tail -n 5 "$work/train.txt")"
[ -s "$work/run/weights.safetensors" ] || fail "train wrote no weights"
[ "$(wc -l <"$work/run/progress.csv")" -eq 3 ] || fail "progress.csv should hold a header and 2 rows"
[ -f "$work/run/checkpoints/step_000000000300/COMPLETE" ] || fail "no complete checkpoint at step 300"
grep -q '^train.game="pong"$' "$work/run/config.toml" || fail "config.toml lacks train.game: $(cat "$work/run/config.toml")"
grep -q '^train.steps=300$' "$work/run/config.toml" || fail "config.toml lacks train.steps=300"
[ -s "$work/run/tb/"events.out.tfevents.* ] || fail "no TensorBoard event file in run/tb"
"$atari" eval --game pong --weights "$work/run/weights.safetensors" --episodes 2 --envs 2 --max-episode-steps 40 \
  --json >"$work/agent.txt" || fail "eval of trained weights failed: $(cat "$work/agent.txt")"
tail -n 1 "$work/agent.txt" | python3 -c 'import json, sys; s = json.loads(sys.stdin.read()); assert s["episodes"] == 2, s' ||
  fail "agent eval --json is wrong: $(tail -n 1 "$work/agent.txt")"
# Two envs training: --steps and --progress-interval count env steps of both.
"$atari" train --game pong --envs 2 --steps 300 --learning-starts 260 --buffer-size 1000 --batch-size 8 \
  --progress-interval 150 --save-interval 300 --run-dir "$work/run2" >"$work/train2.txt" 2>&1 ||
  fail "train --envs 2 failed: $(tail -n 5 "$work/train2.txt")"
[ -s "$work/run2/weights.safetensors" ] || fail "train --envs 2 wrote no weights"
[ "$(wc -l <"$work/run2/progress.csv")" -eq 3 ] || fail "train --envs 2: progress.csv should hold a header and 2 rows"
tail -n 1 "$work/run2/progress.csv" | grep -q '^300,' || fail "train --envs 2 should end at step 300: $(tail -n 1 "$work/run2/progress.csv")"
expect_error "another game" eval --game breakout --weights "$work/run/weights.safetensors" --episodes 1
# --epsilon's random steps come from each episode's own stream: still the same
# episodes for one env and for two.
for envs in 1 2; do
  "$atari" eval --game pong --weights "$work/run/weights.safetensors" --epsilon 0.3 --episodes 3 --envs $envs \
    --max-episode-steps 200 --json | tail -n 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["scores"])' \
    >"$work/epsilon$envs.txt" || fail "eval --epsilon 0.3 --envs $envs failed"
done
cmp -s "$work/epsilon1.txt" "$work/epsilon2.txt" ||
  fail "eval --epsilon 0.3 scores depend on --envs: $(cat "$work/epsilon1.txt") vs $(cat "$work/epsilon2.txt")"
expect_error "--epsilon" eval --game pong --policy random --epsilon 1.5

# Stop at step 150 (mid-episode: Pong lasts longer), resume from the run
# directory alone (its config.toml supplies the settings): the same weights.
"$atari" train "${train_args[@]}" --run-dir "$work/split" --stop-after 150 >"$work/split1.txt" 2>&1 ||
  fail "train --stop-after failed: $(tail -n 5 "$work/split1.txt")"
grep -q "continue with --resume" "$work/split1.txt" || fail "--stop-after did not say how to continue"
"$atari" train --resume "$work/split" >"$work/split2.txt" 2>&1 || fail "train --resume failed: $(tail -n 5 "$work/split2.txt")"
grep -q "resumed from .*step_000000000150 at step 150" "$work/split2.txt" || fail "resume did not start at step 150: $(head -n 3 "$work/split2.txt")"
cmp -s "$work/run/weights.safetensors" "$work/split/weights.safetensors" ||
  fail "straight and stopped+resumed runs ended with different weights"
cmp -s "$work/run/episodes.csv" "$work/split/episodes.csv" 2>/dev/null || [ ! -s "$work/run/episodes.csv" ] ||
  fail "episodes.csv differs between the straight and the resumed run"
expect_error "no such run or checkpoint directory" train --resume "$work/nowhere"

# The same with two envs stepped together, and with the Rainbow parts that
# carry state (Rainbow: n-step windows, priorities, noise streams; two updates
# per round, Polyak averaging): stopped and resumed, the same weights.
parts=(--algorithm rainbow --envs 2 --gradient-steps 2 --tau 0.5 --target-update 8)
"$atari" train "${train_args[@]}" "${parts[@]}" --run-dir "$work/run2x" >"$work/run2x.txt" 2>&1 ||
  fail "train ${parts[*]} failed: $(tail -n 5 "$work/run2x.txt")"
"$atari" train "${train_args[@]}" "${parts[@]}" --run-dir "$work/split2x" --stop-after 150 >"$work/split2x1.txt" 2>&1 ||
  fail "train ${parts[*]} --stop-after failed: $(tail -n 5 "$work/split2x1.txt")"
"$atari" train --resume "$work/split2x" >"$work/split2x2.txt" 2>&1 ||
  fail "train --resume (2 envs) failed: $(tail -n 5 "$work/split2x2.txt")"
cmp -s "$work/run2x/weights.safetensors" "$work/split2x/weights.safetensors" ||
  fail "with ${parts[*]}: straight and stopped+resumed runs ended with different weights"
cmp -s "$work/run/weights.safetensors" "$work/run2x/weights.safetensors" &&
  fail "${parts[*]} trained the same weights as the plain run"
expect_error "n_step: 3 in the checkpoint, 1 in this run" train --resume "$work/split2x" --n-step 1

"$atari" --help >"$work/help.txt" 2>&1 && "$atari" train --help >>"$work/help.txt" 2>&1 || fail "--help failed"
for flag in --resume --config --checkpoint-interval --keep-checkpoints --keep-weights --stop-after --record train eval play plot; do
  grep -q -- "$flag" "$work/help.txt" || fail "--help does not mention $flag"
done

"$atari" play --game pong --policy random --episodes 1 --max-episode-steps 60 --gif "$work/play.gif" >"$work/play.txt" ||
  fail "play --gif failed: $(cat "$work/play.txt")"
# 60 steps at frame skip 4 keep every step (about 15 pictures a second of a
# 60 fps game), plus the first screen.
[ "$(gif_shape "$work/play.gif")" = "160 210 61" ] ||
  fail "play.gif is not a 160x210 GIF of 61 frames: $(gif_shape "$work/play.gif" 2>&1)"
"$atari" plot "$work/run" >"$work/plot.txt" || fail "plot failed"
grep -q "<svg" "$work/run/scores.svg" || fail "plot wrote no scores.svg"

cli_end atari
