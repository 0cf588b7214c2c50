#!/bin/sh
# Runs once, when the PostgreSQL volume is new (docker-entrypoint-initdb.d): a role and a
# database for Openfire next to imgw's. The password comes from the environment.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v pw="$OPENFIRE_DB_PASSWORD" <<'SQL'
CREATE ROLE openfire LOGIN PASSWORD :'pw';
CREATE DATABASE openfire OWNER openfire;
SQL
