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
# A browser killed during eval: the episode it cut short is played again in
# a new browser and, seeded and lock-step, scores as it would have. The
# shipped agent plays each episode to the 300-step cap (1,200 frames, 2-3 s),
# so the kill lands inside episode 2 whatever the machine's speed; a random
# policy's episodes (under 0.5 s on a fast CPU) end before it.
eval_args=(--episodes 3 --seed 5 --max-steps 300 --capture canvas)
"$dino" eval "${eval_args[@]}" >"$work/undisturbed.txt" 2>/dev/null || fail "undisturbed eval failed"
"$dino" eval "${eval_args[@]}" >"$work/disturbed.txt" 2>"$work/disturbed.err" &
pid=$!
for _ in $(seq 300); do grep -q "^episode 1/3" "$work/disturbed.txt" 2>/dev/null && break; sleep 0.05; done
sleep 0.8  # into episode 2, past its page load
guardian=$(pgrep -P "$pid" | head -n 1)
browser=$(pgrep -P "${guardian:-0}" | head -n 1)
[ -n "$browser" ] && kill -KILL "$browser" || fail "found no browser of the eval to kill"
wait "$pid" || fail "eval did not survive the browser's death: $(tail -n 3 "$work/disturbed.err")"
# (Killed between episodes, while the next one loads, nothing is cut short.)
grep -q "browser failure" "$work/disturbed.err" || fail "the browser's death went unnoticed: $(cat "$work/disturbed.err")"
[ "$(grep '^episode' "$work/disturbed.txt")" = "$(grep '^episode' "$work/undisturbed.txt")" ] ||
  fail "a browser failure changed eval's scores: $(grep '^episode' "$work/disturbed.txt") vs $(grep '^episode' "$work/undisturbed.txt")"

# A page that hangs in every episode (its score loops forever after 20
# frames): each hang relaunches the browser and truncates the episode, until
# the fourth in a row stops the run with a checkpoint and the cause.
sed 's/^score = .*/score = "(__qrl.frames > 20 ? (() => { for (;;) {} })() : 0)"/' \
  "$(dirname "$0")/../envs/dino/games/dino.toml" >"$work/hang.toml"
grep -q '^score = "(__qrl.frames' "$work/hang.toml" || fail "could not write hang.toml"
"$dino" train --game-config "$work/hang.toml" --cdp-timeout 1 --steps 1000 --learning-starts 10 --buffer-size 500 \
  --checkpoint-interval 1000 --capture canvas --record off --run-dir "$work/hang" >"$work/hang.txt" 2>"$work/hang.err"
status=$?
[ "$status" -eq 1 ] || fail "a page that always hangs: train exited $status, not 1: $(tail -n 2 "$work/hang.err")"
[ "$(grep -c "browser failure (CDP call Runtime.evaluate got no answer within 1000 ms" "$work/hang.err")" -eq 3 ] ||
  fail "not three relaunch warnings: $(cat "$work/hang.err")"
tail -n 1 "$work/hang.err" | grep -q "error: training stopped at step [0-9]*: dino: the browser failed 4 times in a row.*; a checkpoint of step [0-9]* was saved" ||
  fail "the run did not stop with the cause and a checkpoint: $(tail -n 1 "$work/hang.err")"
ls -d "$work"/hang/checkpoints/step_* >/dev/null 2>&1 || fail "no checkpoint after the browser gave up"
expect_exit 2 "Value 0.01 not in range" train --cdp-timeout 0.01
expect_exit 1 "is a directory, not a regular file" eval --policy noop --game-config /tmp
# A page the server does not have: the error gives the HTTP status.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work" >/dev/null 2>&1 &
server=$!
for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && break; sleep 0.1; done
printf 'url = "http://127.0.0.1:%s/no-such-game.html"\nready = "typeof game !== '"'"'undefined'"'"'"\n' "$port" >"$work/404.toml"
"$dino" eval --policy noop --episodes 1 --game-config "$work/404.toml" >/dev/null 2>"$work/404.err" &&
  fail "a game page the server does not have was played"
tail -n 1 "$work/404.err" | grep -q "error: .*no-such-game.html did not become ready: .* stayed false (the server answered HTTP 404)" ||
  fail "a 404 page is not reported as one: $(cat "$work/404.err")"
kill "$server"

"$dino" plot "$work/run" >"$work/plot.txt" || fail "plot failed"
grep -q "<svg" "$work/run/scores.svg" || fail "plot wrote no scores.svg"

cli_end dino
