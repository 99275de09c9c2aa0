#!/usr/bin/env bash
# Checks of examples/atari as a user meets it: bad input gives one clear
# error line and a non-zero exit; eval --json on parallel envs ends with a
# parseable summary; train (one env and two) writes weights that eval loads.
#   tests/cli_atari.sh path/to/atari scratch-dir
set -u
atari=$1
work=$2
rm -rf "$work" && mkdir -p "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

expect_error() {  # expect_error "substring" args...
  local want=$1; shift
  if "$atari" "$@" >"$work/out" 2>"$work/err"; then fail "'$*' exited 0"; return; fi
  grep -q -- "$want" "$work/err" || fail "'$*' stderr lacks '$want': $(cat "$work/err")"
  [ "$(wc -l <"$work/err")" -eq 1 ] || fail "'$*' printed more than one error line: $(cat "$work/err")"
}

expect_error "unknown game 'pongg'; the games in" eval --game pongg --policy random
expect_error "space_invaders" eval --game pongg --policy random
expect_error "does not exist" eval --rom "$work/missing.bin" --policy random
expect_error "needs --weights" eval --game pong --episodes 1
expect_error "cannot hold 8 streams" train --game pong --envs 8 --buffer-size 64 --stack 16 --steps 10

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

"$atari" train --game pong --steps 300 --learning-starts 260 --buffer-size 1000 --batch-size 8 \
  --progress-interval 150 --save-interval 300 --run-dir "$work/run" >"$work/train.txt" 2>&1 ||
  fail "train failed: $(tail -n 5 "$work/train.txt")"
[ -s "$work/run/weights.safetensors" ] || fail "train wrote no weights"
[ "$(wc -l <"$work/run/progress.csv")" -eq 3 ] || fail "progress.csv should hold a header and 2 rows"
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

[ "$failures" -eq 0 ] && echo "all atari CLI checks passed"
exit "$failures"
