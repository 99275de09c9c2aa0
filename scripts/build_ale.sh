#!/usr/bin/env bash
# Builds the Arcade Learning Environment's C++ library and unpacks its ROMs
# into a local prefix (default .deps/ale, git-ignored), from the pinned ale-py
# source distribution on PyPI. ALE is GPL-2.0: it is fetched and built here,
# never committed. A no-op when that version is already installed there.
#   scripts/build_ale.sh [prefix]
# CMake then finds it (cmake/qrlDependencies.cmake looks in .deps/ale), or
# pass -Dale_DIR=<prefix>/lib/cmake/ale for a prefix elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.12.1
# sha256 of ale_py-0.12.1.tar.gz as published on PyPI
sha256=c503d574c5983e1063b451201ccb779d935919c0f6bf116fb0f4f8aa4c86d249
prefix=$(realpath -m "${1:-.deps/ale}")
stamp="$prefix/qrl-ale-version"
# The stamp names the build flavour too, so a change here rebuilds.
flavour="$version no-lto"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$flavour" ]; then
  echo "build_ale: ALE $version already in $prefix"
  exit 0
fi

work=$(realpath -m .deps/ale-src)
mkdir -p "$work"
sdist="$work/ale_py-$version.tar.gz"
if [ ! -f "$sdist" ] || ! echo "$sha256  $sdist" | sha256sum -c --status; then
  rm -f "$sdist"
  echo "build_ale: downloading the ale-py $version source distribution"
  # --no-binary names ale-py alone: ':all:' would also refuse wheels for the
  # build requirements pip installs to read the sdist's metadata, and jaxlib
  # has no sdist. Only the ale-py sdist is kept.
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --no-binary ale-py "ale-py==$version" -d "$work"
fi
echo "$sha256  $sdist" | sha256sum -c --status || {
  echo "build_ale: $sdist does not have the pinned sha256 $sha256; delete it and rerun" >&2
  exit 1
}

src="$work/ale_py-$version"
rm -rf "$src" "$work/build"
tar -xzf "$sdist" -C "$work"

echo "build_ale: building ALE $version (C++ library only) into $prefix"
start=$(date +%s)
# -j2 keeps memory and the CI machine's two cores in check; only the library
# is built (no Python module, no SDL, no vector/OpenCV interface).
# ALE turns on LTO for Release builds, which leaves GCC's intermediate code in
# libale.a and recompiles all of ALE at every link of every qrl binary; its
# RelWithDebInfo type has no LTO, and these flags make it -O3 without -g.
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O3 -DNDEBUG" \
  -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib \
  -DBUILD_CPP_LIB=ON -DBUILD_PYTHON_LIB=OFF -DSDL_SUPPORT=OFF \
  -DBUILD_VECTOR_LIB=OFF -DBUILD_VECTOR_XLA_LIB=OFF >/dev/null
cmake --build "$work/build" -j "${ALE_BUILD_JOBS:-2}"
rm -rf "$prefix"
cmake --install "$work/build" >/dev/null

# The ROMs and their md5 list ship in the same archive (the Python package's
# data); qrl looks for them in <prefix>/share/ale/roms.
mkdir -p "$prefix/share/ale/roms"
cp "$src"/src/ale/python/roms/*.bin "$src"/src/ale/python/roms/md5.json "$prefix/share/ale/roms/"
cp "$src/LICENSE.md" "$prefix/share/ale/"
rm -rf "$src" "$work/build"
echo "$flavour" > "$stamp"
echo "build_ale: done in $(( $(date +%s) - start )) s; $(ls "$prefix"/share/ale/roms/*.bin | wc -l) ROMs in $prefix/share/ale/roms"
