#!/bin/sh
# Builds imgw with warnings as errors and runs every test: C unit tests, fuzz corpora,
# the Openfire plugin's offline build and JUnit tests, and the end-to-end tests that
# start real Prosody, PostgreSQL, Redis, the gateway, WebSocket clients and Chromium
# on private loopback ports. Then the gateway's own tests again with the daemon built
# under AddressSanitizer and UndefinedBehaviorSanitizer (SANITIZE=0 skips that pass).
# Installs what is missing first (scripts/install-deps.sh; IMGW_SKIP_DEPS=1 skips that).
#
# Every test file runs under tests/lib/run-file.mjs (a bound per test and per file, its
# own process group, nothing left running). At the end this script looks for any process
# that still carries this run's IMGW_TEST_TAG and fails if it finds one.
#
# STRESS=1 keeps every core busy with a spin loop for the whole run and stretches the
# tests' time bounds (IMGW_TIME_SCALE=3 unless set): the suite must pass on a loaded
# machine too. Extra arguments go to ctest (e.g. -R e2e_http).
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${BUILD_DIR:-build}
[ "${IMGW_SKIP_DEPS:-0}" = 1 ] || sh scripts/install-deps.sh

STRESS_PIDS=
stop_stress() {
    for p in $STRESS_PIDS; do kill "$p" 2>/dev/null || true; done
    STRESS_PIDS=
}
trap 'stop_stress' EXIT
trap 'stop_stress; exit 130' INT
trap 'stop_stress; exit 143' TERM
if [ "${STRESS:-0}" = 1 ]; then
    n=$(nproc)
    echo "==> STRESS=1: $n busy loops for the whole run"
    i=0
    while [ "$i" -lt "$n" ]; do
        sh -c 'while :; do :; done' &
        STRESS_PIDS="$STRESS_PIDS $!"
        i=$((i + 1))
    done
    : "${IMGW_TIME_SCALE:=3}"
    export IMGW_TIME_SCALE
fi

# Marks every process the tests start (started after the spin loops, which it must not mark).
IMGW_TEST_TAG="$$-$(date +%s)"
export IMGW_TEST_TAG

status=0
# Formatting is part of the build: every C file as .clang-format says.
if command -v clang-format >/dev/null 2>&1; then
    clang-format --dry-run -Werror gateway/src/*.[ch] tests/unit/*.[ch] tests/fuzz/*.c bench/*.c
fi
cmake -S . -B "$BUILD" -DGW_WERROR=ON ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
(cd "$BUILD" && ctest --output-on-failure -j2 "$@") || status=1

if [ "${SANITIZE:-1}" != 0 ]; then
    echo "==> sanitizer pass (ASan + UBSan)"
    cmake -S . -B "$BUILD-asan" -DGW_WERROR=ON -DGW_ASAN=ON -DGW_UBSAN=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
    cmake --build "$BUILD-asan" -j"$(nproc)"
    (cd "$BUILD-asan" &&
        LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp" \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --output-on-failure -j2 -R 'unit_|fuzz_corpus|e2e_gateway|e2e_history|e2e_http|e2e_security' "$@") || status=1
fi

stop_stress
echo "==> checking that no process started by the tests is still running"
node tests/lib/sweep.mjs "IMGW_TEST_TAG=$IMGW_TEST_TAG" || status=1
[ "$status" = 0 ] && echo "==> all tests passed" || echo "==> FAILED (see above)"
exit "$status"
