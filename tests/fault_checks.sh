#!/usr/bin/env bash
# Faults a run meets, tried on examples/flappy (issue 26; the table in
# docs/runs.md, "Faults"): stop signals, special and oversized input files,
# config typos, out-of-range integers, a full disk, damaged weights, stale
# checkpoint temporaries. Each must give one clear line, the documented exit
# status and no lost work.
#   tests/fault_checks.sh path/to/flappy scratch-dir
set -u
source "$(dirname "$0")/cli_lib.sh"
cli_begin "$1" "$2"
flappy=$program
tiny=(--network tutorial --hidden 16 --batch-size 8 --buffer-size 1000 --learning-starts 100)

# Runs `flappy train ARGS` in the background until RUN_DIR/progress.csv has
# ROWS data rows, then sends SIGNAL; sets $status to train's exit status.
signal_run() {
  local signal=$1 rows=$2 run_dir=$3; shift 3
  "$flappy" train "$@" --run-dir "$run_dir" >"$run_dir.txt" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do
    [ -f "$run_dir/progress.csv" ] && [ "$(wc -l <"$run_dir/progress.csv")" -gt "$rows" ] && break
    sleep 0.1
  done
  kill "-$signal" "$pid"
  wait "$pid"
  status=$?
}

# --- Stop signals: SIGTERM and SIGHUP save like Ctrl-C, then exit 128 + N.
# The run stopped by SIGTERM and resumed ends exactly where one straight run
# does (Flappy Bird resumes bit for bit).
exact=(--steps 5000 "${tiny[@]}" --record off --progress-interval 50 --checkpoint-interval 5000 --epsilon-start 1 --epsilon-end 0.3
       --seed 7)
"$flappy" train "${exact[@]}" --run-dir "$work/straight" >"$work/straight.txt" 2>&1 ||
  fail "straight run failed: $(tail -n 3 "$work/straight.txt")"
signal_run TERM 4 "$work/term" "${exact[@]}"
[ "$status" -eq 143 ] || fail "train exited $status after SIGTERM, not 143: $(tail -n 3 "$work/term.txt")"
grep -q "stopped by SIGTERM at step" "$work/term.txt" || fail "SIGTERM did not report where it stopped: $(tail -n 3 "$work/term.txt")"
stopped=$(ls -d "$work"/term/checkpoints/step_* 2>/dev/null | tail -n 1)
[ -n "$stopped" ] || fail "SIGTERM left no checkpoint"
[ "$(basename "$stopped")" != step_000000005000 ] || fail "SIGTERM came after the run had ended; the test did not interrupt it"
"$flappy" train --resume "$work/term" >"$work/term2.txt" 2>&1 || fail "resume after SIGTERM failed: $(tail -n 3 "$work/term2.txt")"
for f in model.safetensors training.safetensors; do
  cmp -s "$work/straight/checkpoints/step_000000005000/$f" "$work/term/checkpoints/step_000000005000/$f" ||
    fail "the run stopped by SIGTERM and resumed differs from the straight run in $f"
done
signal_run HUP 2 "$work/hup" --steps 100000 "${tiny[@]}" --record off --progress-interval 50
[ "$status" -eq 129 ] || fail "train exited $status after SIGHUP, not 129: $(tail -n 3 "$work/hup.txt")"
ls -d "$work"/hup/checkpoints/step_* >/dev/null 2>&1 || fail "SIGHUP left no checkpoint"

# --- Input files: special files and directories are refused at once.
mkfifo "$work/fifo"
expect_exit 1 "is a character device, not a regular file" eval --weights /dev/zero --episodes 1
expect_exit 1 "is a FIFO (named pipe), not a regular file" eval --weights "$work/fifo" --episodes 1
expect_exit 1 "is a directory, not a regular file" eval --weights "$work" --episodes 1
truncate -s 5G "$work/huge.safetensors"
expect_exit 1 "more than the 4.0 GiB a weights file (safetensors) may have" eval --weights "$work/huge.safetensors" --episodes 1
rm -f "$work/huge.safetensors"
expect_exit 2 "is a character device, not a regular file" train --config /dev/zero
expect_exit 2 "is a FIFO (named pipe), not a regular file" train --config "$work/fifo"
expect_exit 2 "is a directory, not a regular file" train --config "$work"
truncate -s 5M "$work/big.toml"
expect_exit 2 "more than the 4.0 MiB a config file (TOML) may have" train --config "$work/big.toml"

# --- Config files: every key names an option, every value has its type.
printf 'train.stepz=3000\n' >"$work/typo.toml"
expect_exit 2 "typo.toml:1: unknown key 'train.stepz': 'train' has no option --stepz (did you mean 'steps'?)" \
  train --config "$work/typo.toml"
printf '# a comment\nsteps = 3000\n' >"$work/no-section.toml"
expect_exit 2 "no-section.toml:2: 'steps' is not an option of the program itself; write it as train.steps" \
  train --config "$work/no-section.toml"
head -c 3000 /dev/urandom >"$work/garbage.toml"
printf '\x00\x01\x02' >>"$work/garbage.toml"
expect_exit 2 "garbage.toml:[0-9]*: not valid TOML" train --config "$work/garbage.toml"
printf '[train]\nsteps = "many"\n' >"$work/type.toml"
expect_exit 2 "type.toml:2: 'train.steps' must be an integer, not a string" train --config "$work/type.toml"
printf 'train.steps = [1, 2]\n' >"$work/array.toml"
expect_exit 2 "array.toml:1: 'train.steps' takes one value, not an array" train --config "$work/array.toml"
printf 'train.lr = "fast"\n' >"$work/lr.toml"
expect_exit 2 "lr.toml:1: 'train.lr' must be a number, not a string" train --config "$work/lr.toml"
printf '[trian]\nsteps = 10\n' >"$work/section.toml"
expect_exit 2 "section.toml:[0-9]*: unknown section 'trian' (the sections are the subcommands: " train --config "$work/section.toml"
printf 'train.resume = "runs/x"\n' >"$work/resume.toml"
expect_exit 2 "'train.resume' cannot be set in a config file; give --resume on the command line" \
  train --config "$work/resume.toml"
# A valid file still works, and its values reach the run.
printf '[train]\nsteps = 150\nprogress-interval = 150\ncheckpoint-interval = 150\n' >"$work/good.toml"
"$flappy" train --config "$work/good.toml" "${tiny[@]}" --record off --run-dir "$work/good" >"$work/good.txt" 2>&1 ||
  fail "a valid config failed: $(tail -n 3 "$work/good.txt")"
[ -d "$work/good/checkpoints/step_000000000150" ] || fail "the config's steps = 150 did not reach the run"

# --- Integers: out of range or not whole is an error, never clamped or wrapped.
expect_exit 2 "'99999999999999999999' is too large for this option" train --steps 99999999999999999999
expect_exit 2 "'-1' is negative" eval --seed -1
expect_exit 2 "'1e5' is not a whole number" train --steps 1e5
expect_exit 2 "'0' must be greater than 0" train --steps 0
expect_exit 2 "not expected" train --bogus-flag
expect_exit 1 "no such file" eval --weights "$work/missing.safetensors"

# --- A stale temporary of an interrupted first save goes even when --resume refuses.
mkdir -p "$work/stale/checkpoints/step_000000000100.tmp-999999999"
expect_exit 1 "no checkpoints in .*removed 1 unfinished one" train --resume "$work/stale"
[ -e "$work/stale/checkpoints/step_000000000100.tmp-999999999" ] && fail "--resume left the stale temporary"

# --- Damaged weights: qrl writes a CRC-32C per tensor (the shipped models
# carry them too), so a flipped byte is refused; the flip must be in the
# tensor data, past the header. Undamaged, the same file plays.
cp "$(dirname "$0")/../models/flappy.safetensors" "$work/flipped.safetensors"
header=$(python3 -c 'import struct,sys; print(struct.unpack("<Q", open(sys.argv[1],"rb").read(8))[0])' "$work/flipped.safetensors")
python3 - "$work/flipped.safetensors" $((8 + header + 100)) <<'PY'
import sys
path, at = sys.argv[1], int(sys.argv[2])
data = bytearray(open(path, "rb").read())
data[at] ^= 0x10
open(path, "wb").write(bytes(data))
PY
expect_exit 1 "flipped.safetensors: the data of tensor '[0-9a-z.]*' fails its CRC-32C .*the file is damaged" \
  eval --weights "$work/flipped.safetensors" --episodes 1
"$flappy" eval --weights "$(dirname "$0")/../models/flappy.safetensors" --episodes 1 --max-pipes 1 >/dev/null 2>&1 ||
  fail "the undamaged shipped weights do not load"

# --- A full disk: a small tmpfs for the run directory (needs root: mount).
# full_disk NAME CHECKPOINT_INTERVAL WAIT_FOR: trains on a fresh 48 MiB
# tmpfs until WAIT_FOR exists in the run directory, fills the disk, and
# checks that the run stops with one clear line and nothing broken left.
full_disk() {
  local name=$1 interval=$2 wait_for=$3 mnt="$work/tmpfs-$1"
  mkdir -p "$mnt" && mount -t tmpfs -o size=48m "qrl-$name" "$mnt" || { fail "cannot mount a tmpfs at $mnt"; return; }
  "$flappy" train --steps 100000 "${tiny[@]}" --progress-interval 20 --checkpoint-interval "$interval" --record every:1 \
    --run-dir "$mnt/run" >"$work/$name.txt" 2>"$work/$name.err" &
  local pid=$!
  for _ in $(seq 600); do
    [ -e "$mnt/run/$wait_for" ] && break
    sleep 0.1
  done
  [ -e "$mnt/run/$wait_for" ] || fail "$name: no $wait_for on the tmpfs"
  dd if=/dev/zero of="$mnt/filler" bs=1M status=none 2>/dev/null
  wait "$pid"
  status=$?
  [ "$status" -eq 1 ] || fail "$name: train on a full disk exited $status, not 1: $(tail -n 3 "$work/$name.err")"
  [ "$(grep -c "error:" "$work/$name.err")" -eq 1 ] || fail "$name: not one error line: $(cat "$work/$name.err")"
  ls "$mnt"/run/videos/*.partial >/dev/null 2>&1 && fail "$name: a partial GIF was left behind"
  for gif in "$mnt"/run/videos/*.gif; do
    [ -e "$gif" ] || continue
    gif_shape "$gif" >/dev/null 2>&1 || fail "$name: a broken GIF was left behind: $gif"
  done
  ls -d "$mnt"/run/checkpoints/*.tmp-* >/dev/null 2>&1 && fail "$name: a failed save left its temporary directory"
  rm -f "$mnt/filler"
}
if [ "$(id -u)" -eq 0 ]; then
  # Logs only (no checkpoint is due): the first failed log write stops the run.
  full_disk logs 100000 progress.csv
  grep -q "error: training stopped at step [0-9]*: cannot write .*: No space left on device; no checkpoint could be saved" \
    "$work/logs.err" || fail "a full disk did not stop the run at a log write: $(tail -n 3 "$work/logs.err")"
  umount "$work/tmpfs-logs"
  # With a checkpoint on disk: whichever write fails first (a log, or the next
  # checkpoint's space check), the newest checkpoint is intact and resumes.
  full_disk checkpoint 300 checkpoints/step_000000000300/COMPLETE
  grep -qE "error: training stopped at step [0-9]+: .*(No space left on device|not enough disk space for the checkpoint of step [0-9]+ .*: it needs about .* are free).*the newest one, .*step_[0-9]+, is intact" \
    "$work/checkpoint.err" || fail "a full disk did not stop the run with one clear line: $(tail -n 3 "$work/checkpoint.err")"
  "$flappy" train --resume "$work/tmpfs-checkpoint/run" --steps 400 >"$work/checkpoint2.txt" 2>&1 ||
    fail "the run did not resume after the disk was freed: $(tail -n 3 "$work/checkpoint2.txt")"
  grep -q "resumed from .*step_" "$work/checkpoint2.txt" || fail "the resume after a full disk did not load a checkpoint"
  umount "$work/tmpfs-checkpoint"
else
  echo "SKIP: the full-disk checks need root to mount a tmpfs"
fi

cli_end faults
