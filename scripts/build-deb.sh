#!/bin/sh
# Builds the Debian package of the gateway for a release:
#
#   sh scripts/build-deb.sh [OUTDIR]        # default build-deb/; prints the .deb's path
#
# A release binary (CMAKE_BUILD_TYPE=Release, no tests) whose default schema_dir is
# /usr/share/imgw/schema, packed by the CPack project in packaging/. Needs the build
# dependencies of scripts/install-deps.sh (and dpkg-dev, part of build-essential).
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-build-deb}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cmake -S . -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DIMGW_SCHEMA_DIR=/usr/share/imgw/schema >/dev/null
cmake --build "$OUT/build" -j"$(nproc)" --target imgw
cmake -S packaging -B "$OUT/pkg" -DIMGW_BINARY="$OUT/build/gateway/imgw" >/dev/null
(cd "$OUT/pkg" && cpack -G DEB >/dev/null)
cp "$OUT"/pkg/imgw_*_amd64.deb "$OUT/"
ls "$OUT"/imgw_*_amd64.deb
