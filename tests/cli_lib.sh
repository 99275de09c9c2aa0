# Shared by the examples' CLI check scripts (sourced, not run):
#   source "$(dirname "$0")/cli_lib.sh"; cli_begin path/to/program scratch-dir
# then fail / expect_error, and `cli_end NAME` last.
cli_begin() {
  program=$1
  work=$2
  rm -rf "$work" && mkdir -p "$work"
  failures=0
}

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect_error "substring" args...: the program must exit non-zero with one
# error line on stderr that contains the substring.
expect_error() {
  local want=$1; shift
  if "$program" "$@" >"$work/out" 2>"$work/err"; then fail "'$*' exited 0"; return; fi
  grep -q -- "$want" "$work/err" || fail "'$*' stderr lacks '$want': $(cat "$work/err")"
  [ "$(wc -l <"$work/err")" -eq 1 ] || fail "'$*' printed more than one error line: $(cat "$work/err")"
}

# expect_exit STATUS "substring" args...: as expect_error, and the exit
# status must be STATUS (docs/runs.md, "Exit statuses"); it must also come
# within 5 seconds (a special file or a bad config must not hang).
expect_exit() {
  local want_status=$1 want=$2; shift 2
  local start=$SECONDS
  timeout 30 "$program" "$@" >"$work/out" 2>"$work/err"
  local status=$?
  [ "$status" -eq "$want_status" ] || fail "'$*' exited $status, not $want_status: $(cat "$work/err")"
  [ $((SECONDS - start)) -le 5 ] || fail "'$*' took $((SECONDS - start)) s to fail"
  grep -q -- "$want" "$work/err" || fail "'$*' stderr lacks '$want': $(cat "$work/err")"
  [ "$(wc -l <"$work/err")" -eq 1 ] || fail "'$*' printed more than one error line: $(cat "$work/err")"
}

# check_cuda_backend args...: `program args... --backend cuda` must work on a
# machine with an NVIDIA GPU, and elsewhere (no device, or a build without
# CUDA) stop with one error line that says so.
check_cuda_backend() {
  if nvidia-smi -L >/dev/null 2>&1; then
    "$program" "$@" --backend cuda >"$work/cuda.txt" 2>&1 ||
      fail "'$* --backend cuda' failed on a GPU machine: $(tail -n 5 "$work/cuda.txt")"
  else
    expect_error "--backend cuda: .*no CUDA \\(backend\\|device\\)" "$@" --backend cuda
  fi
}

# gif_shape FILE: prints "WIDTH HEIGHT FRAMES" of a GIF, read block by block
# (independently of giflib, which wrote it); fails on a malformed file.
gif_shape() {
  python3 - "$1" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:6] == b"GIF89a", data[:6]
width, height = struct.unpack("<HH", data[6:10])
pos, frames = 13 + ((3 << ((data[10] & 7) + 1)) if data[10] & 0x80 else 0), 0
def skip_sub_blocks(pos):
    while data[pos]:
        pos += data[pos] + 1
    return pos + 1
while data[pos] != 0x3B:
    if data[pos] == 0x21:
        pos = skip_sub_blocks(pos + 2)
    else:
        assert data[pos] == 0x2C, hex(data[pos])
        flags = data[pos + 9]
        pos += 10 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
        pos = skip_sub_blocks(pos + 1)
        frames += 1
print(width, height, frames)
PY
}

cli_end() {
  if [ "$failures" -eq 0 ]; then echo "all $1 CLI checks passed"; else echo "$failures $1 CLI check(s) failed"; fi
  [ "$failures" -eq 0 ]
}
