#!/bin/sh
# Builds imgw with warnings as errors and runs every test: C unit tests, the
# Openfire plugin's offline build and JUnit tests, and the end-to-end tests that
# start real Prosody, PostgreSQL, Redis, the gateway, WebSocket clients and Chromium
# on private loopback ports. Run scripts/install-deps.sh once first.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build}
[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
cmake -S . -B "$BUILD" -DGW_WERROR=ON ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
cd "$BUILD"
ctest --output-on-failure --timeout 600 -j2 "$@"
