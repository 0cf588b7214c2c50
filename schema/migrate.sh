#!/bin/sh
# Apply imgw's schema migrations (schema/NNN_*.sql) in order.
#
#   schema/migrate.sh 'host=db1 dbname=imgw user=imgw'
#   schema/migrate.sh postgresql://imgw@db1/imgw
#
# One psql session holds pg_advisory_lock(hashtext('imgw.migrate')) for the
# whole run, the same lock `imgw migrate` takes, so migrators started at the
# same time take turns. Each migration runs in its own transaction together
# with its row in schema_migrations: it is applied completely or not at all,
# and a second run skips it. Exit status 0 on success, non-zero (with psql's
# error on stderr) when a migration fails; later migrations are not tried.
#
# Environment: PSQL (default psql), MIGRATIONS_DIR (default: this script's dir).
set -eu

if [ $# -ne 1 ]; then
  echo "usage: $0 CONNSTRING" >&2
  exit 2
fi
conn=$1
dir=${MIGRATIONS_DIR:-$(cd "$(dirname "$0")" && pwd)}
psql_bin=${PSQL:-psql}

# printf, not echo: dash's echo turns \e in \else into an escape.
line() { printf '%s\n' "$1"; }

script=$(mktemp)
trap 'rm -f "$script"' EXIT INT TERM

{
  line "SET client_min_messages = warning;"
  line "SELECT pg_advisory_lock(hashtext('imgw.migrate'));"
  line "CREATE TABLE IF NOT EXISTS schema_migrations ("
  line "  version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
  found=0
  for f in "$dir"/[0-9][0-9][0-9]_*.sql; do
    [ -e "$f" ] || continue
    found=1
    base=$(basename "$f")
    # 007_name.sql -> 7 (strip leading zeros so the shell does not read octal).
    version=$(line "$base" | sed -e 's/_.*//' -e 's/^0*//')
    [ -n "$version" ] || version=0
    case $f in *"'"*) echo "migrate.sh: quote in path $f" >&2; exit 2 ;; esac
    line "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $version) AS imgw_done \gset"
    line "\if :imgw_done"
    line "\else"
    line "\warn applying $base"
    line "BEGIN;"
    line "\i '$f'"
    line "INSERT INTO schema_migrations (version) VALUES ($version);"
    line "COMMIT;"
    line "\endif"
  done
  if [ $found -eq 0 ]; then
    echo "migrate.sh: no migrations in $dir" >&2
    exit 2
  fi
  line "SELECT pg_advisory_unlock(hashtext('imgw.migrate'));"
} >"$script"

exec_status=0
"$psql_bin" -X -q -t -A -v ON_ERROR_STOP=1 -d "$conn" -f "$script" >/dev/null || exec_status=$?
exit $exec_status
