#!/bin/sh
# compose.yaml service openfire-setup: after Openfire's first start (its autosetup created
# its tables in the openfire database), writes the system properties the gateway needs.
# Openfire reads them at start: restart it afterwards (`docker compose restart openfire`).
# Safe to run again. The same properties can be set by hand in the admin console
# (Server > Server Manager > System Properties).
set -eu
echo "openfire-setup: waiting for Openfire's tables in database $PGDATABASE"
i=0
until psql -qtA -c "SELECT 1 FROM ofProperty LIMIT 1" >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -lt 120 ] || { echo "openfire-setup: no ofProperty table after 10 minutes" >&2; exit 1; }
    sleep 5
done
# Values go in as psql variables (quoted by psql), never spliced into SQL text.
psql -v ON_ERROR_STOP=1 -v secret="$COMPONENT_SECRET" -v gwdomain="gw.$XMPP_DOMAIN" <<'SQL'
INSERT INTO ofProperty (name, propValue) VALUES
  ('xmpp.component.socket.active', 'true'),
  ('xmpp.component.socket.port', '5275'),
  ('xmpp.component.defaultSecret', :'secret'),
  ('xmpp.socket.tcp-nodelay', 'true'),
  ('plugin.imgw.gateway.domain', :'gwdomain')
ON CONFLICT (name) DO UPDATE SET propValue = EXCLUDED.propValue;
SQL
echo "openfire-setup: done; now run: docker compose restart openfire"
