#!/bin/sh
# CI check of the container and monitoring files (ctest packaging_docker), as far as a
# machine without a container engine or an image registry allows:
#
#   sh docker/check.sh WORKDIR
#
# - docker/compose.yaml parses and resolves (`docker-compose config`, Debian's
#   docker-compose, which needs no daemon) with docker/env.example, and has the services
#   the stack needs; every variable it requires is in env.example;
# - every Debian package docker/Dockerfile installs exists (apt-cache show), and every
#   path it COPYs exists;
# - docker/nginx.conf passes `nginx -t` (gateway hosts pointed at loopback, a throwaway
#   self-signed certificate);
# - monitoring/: promtool checks the Prometheus config and the alert rules and runs their
#   unit tests; the dashboard is valid JSON; every imgw_* metric the dashboard and the
#   alerts use is one the gateway exports (gateway/src);
# - the shell scripts parse.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 WORKDIR" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=$1
rm -rf "$OUT"
mkdir -p "$OUT"
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

echo "== compose.yaml"
docker-compose -f "$SRC/docker/compose.yaml" --env-file "$SRC/docker/env.example" config >"$OUT/compose.resolved.yaml" 2>"$OUT/compose.err" ||
    { cat "$OUT/compose.err"; fail "docker-compose config"; }
# docker-compose prints warnings for problems it tolerates: none allowed.
[ ! -s "$OUT/compose.err" ] || { cat "$OUT/compose.err"; fail "docker-compose config warned"; }
services=$(docker-compose -f "$SRC/docker/compose.yaml" --env-file "$SRC/docker/env.example" --profile setup config --services | sort | tr '\n' ' ')
for s in postgres redis openfire openfire-setup imgw1 imgw2 proxy prometheus grafana; do
    echo " $services" | grep -q " $s " || fail "compose.yaml has no service $s (has: $services)"
done
ids=$(grep -o "IMGW_NODE_ID: ['\"]*[0-9]*" "$OUT/compose.resolved.yaml" | tr -dc '0-9\n' | sort -u | wc -l)
[ "$ids" -eq 2 ] || fail "imgw1 and imgw2 need distinct node ids (found $ids distinct)"
grep -q '^allow_multiple = yes' "$SRC/docker/imgw.conf" || fail "the image's config does not set allow_multiple"
for v in $(grep -o '\${[A-Z_]*:?' "$SRC/docker/compose.yaml" | sed 's/[${:?]//g' | sort -u); do
    grep -q "^$v=" "$SRC/docker/env.example" || fail "compose.yaml requires $v, env.example lacks it"
done
echo "ok: $services"

echo "== Dockerfile"
DF=$SRC/docker/Dockerfile
# Every word after 'apt-get install' up to the end of that RUN step, minus options,
# paths (the .deb) and shell words.
pkgs=$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$DF" | grep 'apt-get install' |
    sed 's/.*apt-get install//; s/&&.*//' | tr ' ' '\n' | grep -v '^-' | grep -v '/' | grep -v '^$' | sort -u)
[ -n "$pkgs" ] || fail "no apt-get install in the Dockerfile"
for p in $pkgs; do
    apt-cache show "$p" >/dev/null 2>&1 || fail "Dockerfile installs '$p', which apt does not know"
done
echo "ok: packages $(echo $pkgs)"
for p in $(grep '^COPY ' "$DF" | grep -v -- '--from=' | sed 's/^COPY //; s/--[a-z]*=[^ ]* //g' | awk '{ $NF=""; print }'); do
    [ -e "$SRC/$p" ] || fail "Dockerfile copies $p, which does not exist"
done
grep -q '^USER imgw' "$DF" || fail "the image does not run as imgw"
grep -A1 '^HEALTHCHECK' "$DF" | grep -q '/health' || fail "no HEALTHCHECK on /health"
echo "ok: COPY sources, USER, HEALTHCHECK"

echo "== nginx.conf"
mkdir -p "$OUT/nginx/certs" "$OUT/nginx/logs"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -keyout "$OUT/nginx/certs/privkey.pem" -out "$OUT/nginx/certs/fullchain.pem" >/dev/null 2>&1 ||
    fail "openssl could not make a test certificate"
sed -e 's/imgw[12]:8480/127.0.0.1:8480/' -e "s#/etc/nginx/certs#$OUT/nginx/certs#" \
    -e "s#pid /tmp/nginx.pid#pid $OUT/nginx/nginx.pid#" "$SRC/docker/nginx.conf" >"$OUT/nginx/nginx.conf"
# The same server twice in one upstream is refused: make the second one distinct.
sed -i '0,/127.0.0.1:8480/! s/127.0.0.1:8480/127.0.0.2:8480/' "$OUT/nginx/nginx.conf"
nginx -t -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -e "$OUT/nginx/logs/error.log" >"$OUT/nginx.log" 2>&1 ||
    { cat "$OUT/nginx.log"; fail "nginx -t"; }
echo "ok"

echo "== monitoring"
M=$SRC/monitoring
sed "s#/etc/prometheus/imgw-alerts.yml#$M/prometheus-alerts.yml#" "$M/prometheus.yml" >"$OUT/prometheus.yml"
promtool check config "$OUT/prometheus.yml" >"$OUT/promtool.log" 2>&1 || { cat "$OUT/promtool.log"; fail "promtool check config"; }
promtool check rules "$M/prometheus-alerts.yml" >>"$OUT/promtool.log" 2>&1 || { cat "$OUT/promtool.log"; fail "promtool check rules"; }
(cd "$M" && promtool test rules alerts.test.yml) >>"$OUT/promtool.log" 2>&1 || { cat "$OUT/promtool.log"; fail "promtool test rules"; }
node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$M/grafana-dashboard.json" ||
    fail "grafana-dashboard.json is not JSON"
# Metric names the gateway exports: every imgw_* word in a string of router.c and metrics.c
# (histograms add _bucket, _sum and _count).
grep -oh '"[^"]*"' "$SRC/gateway/src/router.c" "$SRC/gateway/src/metrics.c" | grep -o 'imgw_[a-z_]*' |
    sort -u >"$OUT/exported"
grep -o 'imgw_[a-z_]*' "$M/grafana-dashboard.json" "$M/prometheus-alerts.yml" | sed 's/.*://' |
    sed 's/_\(bucket\|sum\|count\)$//' | sort -u >"$OUT/used"
missing=$(comm -23 "$OUT/used" "$OUT/exported" | tr '\n' ' ')
[ -z "$missing" ] || fail "the dashboard or alerts use metrics the gateway does not export: $missing"
# And the other way: every exported metric family is on the dashboard or in an alert.
unused=$(grep -o 'imgw_[a-z_]*' "$M/grafana-dashboard.json" "$M/prometheus-alerts.yml" | sed 's/.*://' | sort -u |
    comm -13 - "$OUT/exported" | grep -v -e '_seconds$' -e '^imgw_gateway$' | tr '\n' ' ')
echo "ok: $(wc -l <"$OUT/used") metric families used${unused:+; not shown anywhere: $unused}"

echo "== scripts"
for f in "$SRC"/docker/*.sh "$SRC"/packaging/*.sh "$SRC"/packaging/debian/*; do
    sh -n "$f" || fail "$f: syntax error"
done
bash -n "$SRC/docker/openfire/entrypoint.sh" || fail "openfire/entrypoint.sh: syntax error"
echo "ok"
echo "packaging_docker: all checks passed"
