#!/usr/bin/env bash
# Checks of examples/dino as a user meets it: bad input gives one clear error
# line and a non-zero exit before any browser starts; eval --json ends with a
# parseable summary; a short train writes weights that eval loads.
#   tests/dino_cli_checks.sh path/to/dino scratch-dir
set -u
dino=$1
work=$2
rm -rf "$work" && mkdir -p "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

expect_error() {  # expect_error "substring" args...
  local want=$1; shift
  if "$dino" "$@" >"$work/out" 2>"$work/err"; then fail "'$*' exited 0"; return; fi
  grep -q -- "$want" "$work/err" || fail "'$*' stderr lacks '$want': $(cat "$work/err")"
  [ "$(wc -l <"$work/err")" -eq 1 ] || fail "'$*' printed more than one error line: $(cat "$work/err")"
}

printf 'url = "chrome://dino"\nscroe = "1"\n' >"$work/typo.toml"
expect_error "unknown key 'scroe'" eval --policy noop --game-config "$work/typo.toml"
expect_error "cannot open the game config" eval --policy noop --game-config "$work/missing.toml"
expect_error "sudo apt-get install chromium" eval --policy noop --chromium "$work/no-chromium"
expect_error "cannot reach the DevTools endpoint" eval --policy noop --cdp http://127.0.0.1:9
expect_error "expected http://HOST:PORT or a ws://" eval --policy noop --cdp localhost:9222
expect_error "needs --weights" eval --episodes 1
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

"$dino" train --steps 300 --learning-starts 100 --buffer-size 1000 --progress-interval 150 --capture canvas \
  --actions 2 --run-dir "$work/run" >"$work/train.txt" 2>&1 || fail "train failed: $(tail -n 5 "$work/train.txt")"
grep -q "steps/s" "$work/train.txt" || fail "train printed no progress line"
[ -s "$work/run/weights.safetensors" ] || fail "train wrote no weights"
[ "$(wc -l <"$work/run/progress.csv")" -eq 3 ] || fail "progress.csv should hold a header and 2 rows"
"$dino" eval --weights "$work/run/weights.safetensors" --actions 2 --episodes 1 --max-steps 40 --capture canvas \
  --json >"$work/agent.txt" 2>/dev/null || fail "eval of trained weights failed: $(cat "$work/agent.txt")"
expect_error "shape" eval --weights "$work/run/weights.safetensors" --actions 3 --episodes 1

[ "$failures" -eq 0 ] && echo "dino cli checks passed" || { echo "$failures dino cli check(s) failed"; exit 1; }
