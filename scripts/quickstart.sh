#!/bin/sh
# One command for a newcomer: installs the dependencies (Debian + npm), builds imgw,
# starts a private Prosody (with the companion module), PostgreSQL and Redis on
# loopback, and the gateway with its demo chat page. Ctrl-C stops everything.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)"
exec node scripts/demo.mjs "$@"
