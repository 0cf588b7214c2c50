#!/bin/sh
# Installs everything imgw needs to build, test and run locally, from Debian's
# packages and the npm registry only. Safe to run again. Run as root (or with sudo).
set -eu
cd "$(dirname "$0")/.."

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive

# systemd (systemd-analyze), man-db, docker-compose (`config` parses without a daemon),
# nginx-light (`nginx -t`) and prometheus (promtool) are for the packaging checks
# (packaging/check-deb.sh, docker/check.sh).
PKGS="build-essential cmake pkg-config git ca-certificates curl
  libexpat1-dev libwebsockets-dev libhiredis-dev libjson-c-dev libpq-dev libuv1-dev libssl-dev
  postgresql redis-server prosody
  openjdk-17-jdk-headless junit4 libdom4j-java libslf4j-java libservlet-api-java libhsqldb-java
  chromium clang-format
  systemd man-db docker-compose nginx-light prometheus openssl"

# Node.js 18+ for the tests and benchmarks: Debian's, unless the machine already has one.
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"

missing=
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "==> apt-get install$missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

# The Debian packages start their own servers; tests and the quickstart run private
# instances on other ports, so the system ones are not needed.
for svc in postgresql redis-server prosody nginx prometheus; do
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
done

# npm packages for the tests, the benchmarks and the demo (skipped when up to date).
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "==> npm ci"
    npm ci --no-audit --no-fund --loglevel=error
fi
