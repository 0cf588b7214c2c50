#!/bin/sh
# CI check of the Debian package (ctest packaging_deb):
#
#   sh packaging/check-deb.sh WORKDIR IMGW_BINARY
#
# Builds imgw_<version>_amd64.deb with CPack from IMGW_BINARY, checks its control data
# (name, version, architecture, every Depends name known to apt, conffiles), its files,
# maintainer scripts and man page, unpacks it into a throwaway root (dpkg -x), verifies
# the systemd unit there (systemd-analyze verify and an offline security score), and runs
# the unit's own ExecStart and ExecReload command lines against the installed config:
# --check-config first, then a real start that answers /health, reloads on SIGHUP and
# exits 0 on SIGTERM. Everything it writes is under WORKDIR/packaging-check.
set -eu

[ $# -eq 2 ] || { echo "usage: $0 WORKDIR IMGW_BINARY" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=$1/packaging-check
BIN=$2
PID=

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -KILL "$PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

rm -rf "$OUT"
mkdir -p "$OUT"
VERSION=$(sed -n 's/^project(imgw VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
[ -n "$VERSION" ] || fail "no version in CMakeLists.txt"

echo "== build the package with cpack"
cmake -S "$SRC/packaging" -B "$OUT/build" -DIMGW_BINARY="$BIN" >"$OUT/cmake.log" 2>&1 ||
    { cat "$OUT/cmake.log"; fail "cmake (packaging) failed"; }
(cd "$OUT/build" && cpack -G DEB >"$OUT/cpack.log" 2>&1) || { cat "$OUT/cpack.log"; fail "cpack failed"; }
DEB=$OUT/build/imgw_${VERSION}_amd64.deb
[ -f "$DEB" ] || fail "expected $DEB; got: $(ls "$OUT/build"/*.deb 2>/dev/null)"
echo "ok: $(basename "$DEB") ($(wc -c <"$DEB") bytes)"

echo "== control data"
[ "$(dpkg-deb -f "$DEB" Package)" = imgw ] || fail "Package is not imgw"
[ "$(dpkg-deb -f "$DEB" Version)" = "$VERSION" ] || fail "Version is not $VERSION"
[ "$(dpkg-deb -f "$DEB" Architecture)" = amd64 ] || fail "Architecture is not amd64"
DEPENDS=$(dpkg-deb -f "$DEB" Depends)
echo "Depends: $DEPENDS"
# The libraries the binary links, the libuv event library libwebsockets loads at run
# time (invisible to dpkg-shlibdeps), and adduser for postinst.
for need in libwebsockets17 libwebsockets-evlib-uv libexpat1 libpq5 libhiredis0.14 libjson-c5 \
    libuv1 libssl3 libc6 adduser; do
    echo "$DEPENDS" | tr ',|' '\n\n' | sed 's/(.*//; s/ //g' | grep -qx "$need" ||
        fail "Depends lacks $need"
done
# Every package named in Depends, Recommends and Suggests must exist in Debian 12.
for name in $(dpkg-deb -f "$DEB" Depends Recommends Suggests | sed 's/^[A-Za-z]*://' |
    tr ',|' '\n\n' | sed 's/(.*//; s/ //g' | grep -v '^$' | sort -u); do
    apt-cache show "$name" >/dev/null 2>&1 || fail "package '$name' (control field) is unknown to apt"
done
dpkg-deb -e "$DEB" "$OUT/control"
grep -qx /etc/imgw/imgw.conf "$OUT/control/conffiles" || fail "/etc/imgw/imgw.conf is not a conffile"
for s in postinst prerm postrm; do
    [ -x "$OUT/control/$s" ] || fail "$s missing or not executable"
    sh -n "$OUT/control/$s" || fail "$s: syntax error"
done
echo "ok"

echo "== files"
ROOT=$OUT/root
dpkg -x "$DEB" "$ROOT"
for f in usr/bin/imgw etc/imgw/imgw.conf lib/systemd/system/imgw.service \
    usr/share/man/man8/imgw.8.gz usr/share/imgw/schema/001_init.sql usr/share/doc/imgw/copyright \
    usr/share/doc/imgw/imgw.conf.example usr/share/doc/imgw/operations.md \
    usr/share/doc/imgw/monitoring/grafana-dashboard.json \
    usr/share/doc/imgw/monitoring/prometheus-alerts.yml usr/share/imgw/web/imgw.js; do
    [ -e "$ROOT/$f" ] || fail "/$f is not in the package"
done
for f in "$SRC"/schema/*.sql; do
    cmp -s "$f" "$ROOT/usr/share/imgw/schema/$(basename "$f")" || fail "schema $(basename "$f") differs"
done
[ "$(stat -c %a "$ROOT/etc/imgw/imgw.conf")" = 640 ] || fail "/etc/imgw/imgw.conf is not 0640"
"$ROOT/usr/bin/imgw" --version | grep -qx "imgw $VERSION" || fail "imgw --version is not $VERSION"
echo "ok"

echo "== man page"
zcat "$ROOT/usr/share/man/man8/imgw.8.gz" >"$OUT/imgw.8"
WARN=$(groff -man -ww -z "$OUT/imgw.8" 2>&1) || fail "groff failed"
[ -z "$WARN" ] || fail "groff warnings: $WARN"
MANWIDTH=80 man -l "$OUT/imgw.8" 2>/dev/null | grep -q "SIGHUP" || fail "man page does not render"
# Every key the man page says SIGHUP reloads must be reloadable in the code, and back.
# (imgw --check-config lists every key; the man page's list is between "Otherwise" and "Any other".)
sed -n '/^Otherwise these keys/,/^Any other changed key/p' "$OUT/imgw.8" |
    sed -n 's/^\.BR \([a-z_]*\).*/\1/p' | sort >"$OUT/man-keys"
grep -o '{"[a-z_]*", T_[A-Z]*, O([a-z_]*), [^}]*, 1},' "$SRC/gateway/src/config.c" |
    sed 's/{"\([a-z_]*\)".*/\1/' | sort >"$OUT/code-keys"
cmp -s "$OUT/man-keys" "$OUT/code-keys" ||
    fail "reloadable keys differ between imgw.8 and config.c: $(diff "$OUT/man-keys" "$OUT/code-keys" | tr '\n' ' ')"
grep '^# \[reload\] ' "$SRC/imgw.conf.example" | sed 's/^# \[reload\] //' | sort >"$OUT/example-keys"
cmp -s "$OUT/example-keys" "$OUT/code-keys" ||
    fail "reloadable keys differ between imgw.conf.example and config.c: $(diff "$OUT/example-keys" "$OUT/code-keys" | tr '\n' ' ')"
echo "ok ($(wc -l <"$OUT/man-keys") reloadable keys, the same in imgw(8), imgw.conf.example and config.c)"

echo "== systemd unit"
UNIT=$ROOT/lib/systemd/system/imgw.service
for want in '^User=imgw$' '^ExecReload=' '^ProtectSystem=strict$' '^NoNewPrivileges=yes$' \
    '^Restart=on-failure$' '^LimitNOFILE=' '^StateDirectory=imgw$' '^KillSignal=SIGTERM$'; do
    grep -q "$want" "$UNIT" || fail "unit lacks $want"
done
# systemd-analyze verify resolves units and commands inside --root: give that root the
# host's targets and slices and a kill, as an installed system has.
mkdir -p "$ROOT/bin"
cp /bin/kill "$ROOT/bin/kill"
cp -a /lib/systemd/system/*.target /lib/systemd/system/*.slice "$ROOT/lib/systemd/system/" 2>/dev/null || true
VERIFY=$(systemd-analyze verify --man=no --root="$ROOT" "$UNIT" 2>&1) || fail "systemd-analyze verify: $VERIFY"
# It reports unknown keys and bad values as warnings with status 0: any output fails.
[ -z "$VERIFY" ] || fail "systemd-analyze verify: $VERIFY"
systemd-analyze security --offline=yes --root="$ROOT" --threshold=20 imgw.service >"$OUT/security.txt" 2>&1 ||
    { tail -5 "$OUT/security.txt"; fail "systemd-analyze security: exposure above 2.0"; }
echo "ok: $(grep -o 'Overall exposure level.*' "$OUT/security.txt")"

echo "== the unit's command lines against the installed config"
EXEC=$(sed -n 's/^ExecStart=//p' "$UNIT")
RELOAD=$(sed -n 's/^ExecReload=//p' "$UNIT")
CONF=$OUT/imgw.conf
# A path in the unit is a path in the package root; the config is the test's copy.
rooted() { echo "$1" | sed "s#/etc/imgw/imgw.conf#$CONF#g; s#^/usr/bin/imgw#$ROOT/usr/bin/imgw#"; }
run_line() { # LINE: runs the unit's command line, rooted
    # shellcheck disable=SC2046
    set -- $(rooted "$1")
    "$@"
}
# The package's own config refuses to start until the secrets are set, naming the key.
cp "$ROOT/etc/imgw/imgw.conf" "$CONF"
set +e
run_line "$(echo "$EXEC" | sed 's/--config/--check-config/')" >"$OUT/check0.log" 2>&1
rc=$?
set -e
[ $rc -eq 2 ] && grep -q component_secret "$OUT/check0.log" ||
    { cat "$OUT/check0.log"; fail "unconfigured package config: expected exit 2 naming component_secret, got $rc"; }
# Configured as an operator would (secrets set), on loopback, with an ephemeral port and
# an XMPP port nobody listens on (the link stays down: /health says degraded, still 200).
cat >>"$CONF" <<CONF
component_secret = check-deb-component-secret
ticket_secret = check-deb-ticket-secret-0123456789
listen_port = 0
xmpp_port = 9
schema_dir = $ROOT/usr/share/imgw/schema
spool_dir = $OUT/spool
CONF
run_line "$(echo "$EXEC" | sed 's/--config/--check-config/')" >"$OUT/check1.log" 2>&1 ||
    { cat "$OUT/check1.log"; fail "--check-config on the configured file failed"; }
grep -q '^component_secret = \*\*\*\*\*\*\*\*$' "$OUT/check1.log" || fail "--check-config shows a secret"
echo "ok: --check-config"

LOG=$OUT/imgw.log
# shellcheck disable=SC2046
set -- $(rooted "$EXEC")
"$@" >"$LOG" 2>&1 &
PID=$!
PORT=
i=0
while [ $i -lt 100 ]; do
    PORT=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$LOG" | head -1)
    [ -n "$PORT" ] && curl -fsS -m 2 "http://127.0.0.1:$PORT/health" >"$OUT/health.json" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || { cat "$LOG"; fail "imgw exited at start"; }
    sleep 0.1
    i=$((i + 1))
done
grep -q "\"version\":\"$VERSION\"" "$OUT/health.json" 2>/dev/null || { cat "$LOG"; fail "no /health answer"; }
echo "ok: /health on port $PORT: $(cat "$OUT/health.json")"

echo "log_level = debug" >>"$CONF"
MAINPID=$PID
# ExecReload as systemd runs it, with $MAINPID.
# shellcheck disable=SC2086
eval "set -- $(echo "$RELOAD" | sed 's/\$MAINPID/$MAINPID/')"
"$@"
i=0
until grep -q "reload done" "$LOG"; do
    [ $i -lt 100 ] || { cat "$LOG"; fail "no 'reload done' after ExecReload"; }
    sleep 0.1
    i=$((i + 1))
done
grep -q "'log_level' info -> debug" "$LOG" || { cat "$LOG"; fail "reload did not apply log_level"; }
echo "ok: ExecReload ($RELOAD)"

kill -TERM "$PID"
i=0
while kill -0 "$PID" 2>/dev/null; do
    [ $i -lt 150 ] || fail "imgw did not stop within 15 s of SIGTERM"
    sleep 0.1
    i=$((i + 1))
done
set +e
wait "$PID"
rc=$?
set -e
PID=
[ $rc -eq 0 ] || { cat "$LOG"; fail "imgw exited $rc after SIGTERM"; }
grep -q stopped "$LOG" || fail "no 'stopped' line"
echo "ok: SIGTERM, exit 0"
echo "packaging_deb: all checks passed"
