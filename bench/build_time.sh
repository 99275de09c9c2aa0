#!/usr/bin/env bash
# Clean-build time of two revisions, one after the other on the same machine
# in the same minutes, with the options scripts/test.sh uses (tests, examples,
# benchmarks; CUDA and Atari when found), each translation unit timed by a
# compiler launcher. Prints one JSON line per figure and the ratio, and keeps
# the per-TU times in OUT_DIR/<label>_tu.tsv.
#   bench/build_time.sh BASE_REV [NEW_REV] [OUT_DIR]
#     NEW_REV: default HEAD; "worktree" builds the working tree as it is.
#     ALE (scripts/build_ale.sh) is taken from this checkout's .deps/ale.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/build_time.sh BASE_REV [NEW_REV|worktree] [OUT_DIR]" >&2; exit 2; }
base=$1
new=${2:-HEAD}
out=${3:-$(mktemp -d /tmp/qrl_build_time.XXXXXX)}
mkdir -p "$out"
repo=$(pwd)
jobs=$(nproc)

launcher="$out/time_tu.sh"
cat >"$launcher" <<'EOF'
#!/usr/bin/env bash
start=$(date +%s%N)
"$@"
rc=$?
out=""; prev=""
for a in "$@"; do [ "$prev" = "-o" ] && out=$a; prev=$a; done
printf '%s\t%s\n' "$(( ($(date +%s%N) - start) / 1000000 ))" "$out" >>"$QRL_TU_LOG"
exit $rc
EOF
chmod +x "$launcher"

ale_args=()
[ -d "$repo/.deps/ale/lib/cmake/ale" ] && ale_args=(-Dale_DIR="$repo/.deps/ale/lib/cmake/ale")

build() {  # label rev
  local label=$1 rev=$2 src
  if [ "$rev" = worktree ]; then
    src=$repo
  else
    src="$out/src_$label"
    rm -rf "$src"
    git -C "$repo" worktree add -q --detach "$src" "$rev"
  fi
  local dir="$out/build_$label"
  rm -rf "$dir"
  cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DQRL_BUILD_TESTS=ON -DQRL_BUILD_EXAMPLES=ON \
    -DQRL_BUILD_BENCH=ON "${ale_args[@]}" -DCMAKE_CXX_COMPILER_LAUNCHER="$launcher" \
    -DCMAKE_CUDA_COMPILER_LAUNCHER="$launcher" >"$out/${label}_configure.log"
  : >"$out/${label}_tu.tsv"
  local start end
  start=$(date +%s%N)
  QRL_TU_LOG="$out/${label}_tu.tsv" /usr/bin/time -f "%U %S" -o "$out/${label}_cpu.txt" \
    cmake --build "$dir" -j "$jobs" >"$out/${label}_build.log"
  end=$(date +%s%N)
  local wall_ms=$(( (end - start) / 1000000 ))
  read -r user sys <"$out/${label}_cpu.txt"
  local tus tu_sum
  tus=$(wc -l <"$out/${label}_tu.tsv")
  tu_sum=$(awk -F'\t' '{s += $1} END {printf "%.1f", s / 1000}' "$out/${label}_tu.tsv")
  local sha
  sha=$(git -C "$src" rev-parse --short HEAD)
  [ "$rev" = worktree ] && sha="$sha+worktree"
  printf '{"figure": "clean_build", "label": "%s", "rev": "%s", "wall_s": %.1f, "user_s": %s, "sys_s": %s, "translation_units": %d, "tu_sum_s": %s, "jobs": %d}\n' \
    "$label" "$sha" "$(echo "$wall_ms / 1000" | bc -l)" "$user" "$sys" "$tus" "$tu_sum" "$jobs"
  echo "$wall_ms" >"$out/${label}_wall_ms.txt"
  [ "$rev" = worktree ] || git -C "$repo" worktree remove --force "$src"
  rm -rf "$dir"
}

build base "$base"
build new "$new"
base_ms=$(cat "$out/base_wall_ms.txt")
new_ms=$(cat "$out/new_wall_ms.txt")
printf '{"figure": "clean_build_wall_ratio", "new_over_base": %.3f, "faster_by_percent": %.1f, "cpu": "%s"}\n' \
  "$(echo "$new_ms / $base_ms" | bc -l)" "$(echo "100 * (1 - $new_ms / $base_ms)" | bc -l)" \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "per-TU times: $out/base_tu.tsv $out/new_tu.tsv" >&2
