#!/usr/bin/env bash
# Checks of examples/flappy as a user meets it: bad input gives one clear
# error line and a non-zero exit; eval --json ends with a parseable summary;
# train writes weights that eval loads.
#   tests/cli_checks.sh path/to/flappy scratch-dir
set -u
flappy=$1
work=$2
rm -rf "$work" && mkdir -p "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

expect_error() {  # expect_error "substring" args...
  local want=$1; shift
  if "$flappy" "$@" >"$work/out" 2>"$work/err"; then fail "'$*' exited 0"; return; fi
  grep -q -- "$want" "$work/err" || fail "'$*' stderr lacks '$want': $(cat "$work/err")"
  [ "$(wc -l <"$work/err")" -eq 1 ] || fail "'$*' printed more than one error line: $(cat "$work/err")"
}

expect_error "not expected" train --bogus-flag
expect_error "no such file" eval --weights "$work/missing.safetensors"
expect_error "needs --weights" eval --episodes 1
expect_error "frame-size" eval --policy random --frame-size 81
# Without a GPU (or a build without CUDA) --backend cuda is one clear line;
# with one it must simply work.
if nvidia-smi -L >/dev/null 2>&1; then
  "$flappy" eval --policy random --backend cuda --episodes 1 --json >"$work/cuda.txt" 2>&1 ||
    fail "eval --backend cuda failed on a GPU machine: $(cat "$work/cuda.txt")"
else
  expect_error "no CUDA \\(backend\\|device\\)" eval --policy random --backend cuda --episodes 1
fi

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
[ -s "$work/run/weights.safetensors" ] || fail "train wrote no weights"
[ "$(wc -l <"$work/run/progress.csv")" -eq 3 ] || fail "progress.csv should hold a header and 2 rows"
"$flappy" eval --weights "$work/run/weights.safetensors" --episodes 2 --json >"$work/agent.txt" ||
  fail "eval of trained weights failed: $(cat "$work/agent.txt")"
expect_error "shape" eval --weights "$work/run/weights.safetensors" --hidden 128 --episodes 1
printf 'not a safetensors file' >"$work/garbage.safetensors"
expect_error "not a safetensors file" eval --weights "$work/garbage.safetensors" --episodes 1

[ "$failures" -eq 0 ] && echo "cli checks passed" || { echo "$failures cli check(s) failed"; exit 1; }
