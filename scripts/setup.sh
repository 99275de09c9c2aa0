#!/usr/bin/env bash
# Installs the Debian packages qrl needs to build and test, skipping those
# already present. Uses sudo when not root. Debian 12 (bookworm) or newer.
#   scripts/setup.sh          what the build and the tests need
#   scripts/setup.sh --bench  also what bench/ compares qrl with: OpenBLAS,
#                             BLIS, Eigen (bench_cpu_kernels), Debian's PyTorch, perf
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libdnnl-dev              # oneDNN: the CPU backend's convolutions and SGEMM
  nlohmann-json3-dev       # safetensors headers, JSON output
  libcli11-dev             # example command lines
  doctest-dev              # tests
  clang libclang-rt-14-dev # the libFuzzer run of the safetensors reader (tests/fuzz)
  libgif-dev               # GIF recordings (giflib)
  python3                  # test helpers
  chromium                 # Dino and other browser games (envs/dino)
  libboost1.81-dev         # Boost.Beast WebSocket for the DevTools Protocol
  libtomlplusplus-dev      # browser game configs (--game-config)
  libstb-dev               # stb_image: PNG screenshots
  nodejs                   # node --check of the page runtime (envs/dino/qrl/envs/page_runtime.js)
  python3-pip zlib1g-dev   # scripts/build_ale.sh: fetches ale-py's sources, ALE links zlib
)
if [ "${1:-}" = "--bench" ]; then
  packages+=(libopenblas-openmp-dev libblis-openmp-dev libeigen3-dev python3-torch linux-perf)
elif [ $# -gt 0 ]; then
  echo "setup: unknown option '$1' (use --bench or nothing)" >&2
  exit 2
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "setup: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
