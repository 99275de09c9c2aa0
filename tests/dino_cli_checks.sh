#!/usr/bin/env bash
# Checks of examples/dino as a user meets it: bad input gives one clear error
# line and a non-zero exit before any browser starts; eval --json ends with a
# parseable summary; a short train writes weights that eval loads; a run
# stopped with --stop-after continues with --resume (the interrupted game
# logged as truncated); play --gif writes the canvas; plot draws the charts.
#   tests/dino_cli_checks.sh path/to/dino scratch-dir
set -u
source "$(dirname "$0")/cli_lib.sh"
cli_begin "$1" "$2"
dino=$program

printf 'url = "chrome://dino"\nscroe = "1"\n' >"$work/typo.toml"
expect_error "unknown key 'scroe'" eval --policy noop --game-config "$work/typo.toml"
expect_error "cannot open the game config" eval --policy noop --game-config "$work/missing.toml"
expect_error "sudo apt-get install chromium" eval --policy noop --chromium "$work/no-chromium"
expect_error "cannot reach the DevTools endpoint" eval --policy noop --cdp http://127.0.0.1:9
expect_error "expected http://HOST:PORT or a ws://" eval --policy noop --cdp localhost:9222
QRL_MODELS_DIR="$work/no-models" expect_error "no shipped weights" eval --episodes 1
# --backend cuda: one clear line without a GPU (or CUDA in the build), a run with one.
check_cuda_backend eval --policy noop --episodes 1 --max-steps 50 --capture canvas --json
expect_error "capture" eval --policy noop --capture video

"$dino" eval --policy noop --episodes 2 --seed 3 --capture canvas --json >"$work/noop.txt" 2>"$work/noop.err" ||
  fail "noop eval failed: $(cat "$work/noop.err")"
tail -n 1 "$work/noop.txt" | python3 -c '
import json, sys
s = json.loads(sys.stdin.read())
assert s["episodes"] == 2 and len(s["scores"]) == 2, s
assert s["scores"][0] == s["scores"][1] > 0, s   # no-op: the first obstacle, same distance
assert s["mean_score"] == sum(s["scores"]) / 2 and s["max_score"] == max(s["scores"]), s
' || fail "eval --json summary is wrong: $(tail -n 1 "$work/noop.txt")"

# Episodes spread over 2 browsers: the same scores, in seed order, as with one.
for n in 1 2; do
  "$dino" eval --policy random --episodes 3 --seed 5 --max-steps 300 --capture canvas --browsers $n --json \
    >"$work/random$n.txt" 2>"$work/random$n.err" || fail "eval --browsers $n failed: $(cat "$work/random$n.err")"
done
tail -n 1 "$work/random1.txt" | python3 -c '
import json, sys
s = json.loads(sys.stdin.read())
assert len(set(s["scores"])) > 1, s   # seeds and actions tell the episodes apart (42, 42, 43 on Chromium 156)
' || fail "eval --browsers 1 scores do not depend on the seed: $(tail -n 1 "$work/random1.txt")"
[ "$(tail -n 1 "$work/random1.txt")" = "$(tail -n 1 "$work/random2.txt")" ] ||
  fail "eval --browsers 2 differs from --browsers 1: $(tail -n 1 "$work/random1.txt") vs $(tail -n 1 "$work/random2.txt")"

train_args=(--steps 300 --learning-starts 100 --buffer-size 1000 --progress-interval 150 --checkpoint-interval 150
            --capture canvas --actions 2 --record off)
"$dino" train "${train_args[@]}" --run-dir "$work/run" >"$work/train.txt" 2>&1 ||
  fail "train failed: $(tail -n 5 "$work/train.txt")"
grep -q "steps/s" "$work/train.txt" || fail "train printed no progress line"
[ -s "$work/run/weights.safetensors" ] || fail "train wrote no weights"
[ "$(wc -l <"$work/run/progress.csv")" -eq 3 ] || fail "progress.csv should hold a header and 2 rows"
[ -f "$work/run/checkpoints/step_000000000300/COMPLETE" ] || fail "no complete checkpoint at step 300"
grep -q '^train.actions=2$' "$work/run/config.toml" || fail "config.toml lacks train.actions=2: $(cat "$work/run/config.toml")"
"$dino" eval --weights "$work/run/weights.safetensors" --actions 2 --episodes 1 --max-steps 40 --capture canvas \
  --json >"$work/agent.txt" 2>/dev/null || fail "eval of trained weights failed: $(cat "$work/agent.txt")"
expect_error "shape" eval --weights "$work/run/weights.safetensors" --actions 3 --episodes 1
# --epsilon perturbs the agent only, with random steps from each episode's own
# stream: the scores do not depend on --browsers.
expect_error "drop --epsilon" eval --policy noop --epsilon 0.1
for n in 1 2; do
  "$dino" eval --weights "$work/run/weights.safetensors" --actions 2 --epsilon 0.5 --episodes 3 --seed 5 --max-steps 300 \
    --capture canvas --browsers $n --json >"$work/epsilon$n.txt" 2>"$work/epsilon$n.err" ||
    fail "eval --epsilon 0.5 --browsers $n failed: $(cat "$work/epsilon$n.err")"
done
[ "$(tail -n 1 "$work/epsilon1.txt")" = "$(tail -n 1 "$work/epsilon2.txt")" ] ||
  fail "eval --epsilon 0.5 scores depend on --browsers: $(tail -n 1 "$work/epsilon1.txt") vs $(tail -n 1 "$work/epsilon2.txt")"

# Resume through the command line: 150 steps, stop, resume from the run
# directory alone (config.toml supplies the settings). The learner continues
# exactly; the game in progress cannot, so its episode ends as truncated at
# step 150 and the run goes on to 300 in a fresh one.
"$dino" train "${train_args[@]}" --run-dir "$work/split" --stop-after 150 >"$work/split1.txt" 2>&1 ||
  fail "train --stop-after failed: $(tail -n 5 "$work/split1.txt")"
"$dino" train --resume "$work/split" >"$work/split2.txt" 2>&1 || fail "train --resume failed: $(tail -n 5 "$work/split2.txt")"
grep -q "resumed from .*step_000000000150 at step 150" "$work/split2.txt" || fail "resume did not start at step 150: $(head -n 3 "$work/split2.txt")"
[ -f "$work/split/checkpoints/step_000000000300/COMPLETE" ] || fail "the resumed run wrote no checkpoint at step 300"
python3 - "$work/split/episodes.csv" "$work/split2.txt" <<'PY' || fail "episodes.csv after resume is wrong: $(cat "$work/split/episodes.csv")"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
ends = [int(r["end_step"]) for r in rows]
assert ends == sorted(ends) and ends[-1] <= 300, ends
assert [int(r["episode"]) for r in rows] == list(range(len(rows))), rows
at150 = [r for r in rows if int(r["end_step"]) == 150]
if "ends here as truncated" in open(sys.argv[2]).read():   # the save fell mid-episode
    assert len(at150) == 1 and at150[0]["truncated"] in ("1", "true"), at150
PY
expect_error "no such run or checkpoint directory" train --resume "$work/nowhere"

"$dino" --help >"$work/help.txt" 2>&1 && "$dino" train --help >>"$work/help.txt" 2>&1 || fail "--help failed"
for flag in --resume --config --checkpoint-interval --keep-checkpoints --keep-weights --stop-after --record train eval play plot; do
  grep -q -- "$flag" "$work/help.txt" || fail "--help does not mention $flag"
done
"$dino" play --help | grep -q "computes the 80x80 observation" || fail "play --help does not say how --capture canvas reads the canvas"

"$dino" play --policy noop --episodes 1 --seed 3 --capture canvas --gif "$work/play.gif" >"$work/play.txt" 2>&1 ||
  fail "play --gif failed: $(cat "$work/play.txt")"
# Frame skip 4 at 60 fps keeps every step, plus the first screen; the width
# of Dino's canvas follows the window.
read -r gif_width gif_height gif_frames < <(gif_shape "$work/play.gif")
wrote=$(sed -n 's/^wrote .* (\([0-9]*\) frames)$/\1/p' "$work/play.txt")
[ "${gif_height:-0}" -eq 150 ] && [ "${gif_width:-0}" -ge 500 ] && [ "${gif_width:-0}" -le 600 ] &&
  [ "${gif_frames:-0}" = "${wrote:-none}" ] && [ "${gif_frames:-0}" -gt 45 ] ||
  fail "play.gif is wrong (${gif_width:-?}x${gif_height:-?}, ${gif_frames:-?} frames, wrote ${wrote:-?}): $(cat "$work/play.txt")"
"$dino" plot "$work/run" >"$work/plot.txt" || fail "plot failed"
grep -q "<svg" "$work/run/scores.svg" || fail "plot wrote no scores.svg"

cli_end dino
