#!/bin/sh
# Builds imgw with warnings as errors and runs every test: C unit tests, fuzz corpora,
# the Openfire plugin's offline build and JUnit tests, and the end-to-end tests that
# start real Prosody, PostgreSQL, Redis, the gateway, WebSocket clients and Chromium
# on private loopback ports. Then the gateway's own tests again with the daemon built
# under AddressSanitizer and UndefinedBehaviorSanitizer (SANITIZE=0 skips that pass).
# Installs what is missing first (scripts/install-deps.sh; IMGW_SKIP_DEPS=1 skips that).
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${BUILD_DIR:-build}
[ "${IMGW_SKIP_DEPS:-0}" = 1 ] || sh scripts/install-deps.sh

# Formatting is part of the build: every C file as .clang-format says.
if command -v clang-format >/dev/null 2>&1; then
    clang-format --dry-run -Werror gateway/src/*.[ch] tests/unit/*.[ch] tests/fuzz/*.c bench/*.c
fi
cmake -S . -B "$BUILD" -DGW_WERROR=ON ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
(cd "$BUILD" && ctest --output-on-failure --timeout 600 -j2 "$@")

if [ "${SANITIZE:-1}" != 0 ]; then
    echo "==> sanitizer pass (ASan + UBSan)"
    cmake -S . -B "$BUILD-asan" -DGW_WERROR=ON -DGW_ASAN=ON -DGW_UBSAN=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
    cmake --build "$BUILD-asan" -j"$(nproc)"
    cd "$BUILD-asan"
    LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp" \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --output-on-failure --timeout 600 -j2 -R 'unit_|fuzz_corpus|e2e_gateway|e2e_history|e2e_http'
fi
