#!/bin/bash
# Entry point of the openfire service in compose.yaml: on a new data volume, writes
# conf/openfire.xml from the autosetup template with the domain and passwords from the
# environment, then hands over to the Openfire image's own entrypoint (which copies
# /opt/plugins/*.jar into plugins/ and starts Openfire as its own user).
set -euo pipefail
DATA=${OPENFIRE_DATA_DIR:-/var/lib/openfire}
if [[ ! -f "$DATA/conf/openfire.xml" ]]; then
    # The image copies conf_org into the volume when conf/ is missing; do it first so
    # the rendered file is the one Openfire reads.
    mkdir -p "$DATA"
    cp -a "${OPENFIRE_DIR:-/usr/local/openfire}/conf_org" "$DATA/conf"
    esc() { printf '%s' "$1" | sed -e 's/[&/\]/\\&/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }
    sed -e "s/@XMPP_DOMAIN@/$(esc "$XMPP_DOMAIN")/g" \
        -e "s/@OPENFIRE_DB_PASSWORD@/$(esc "$OPENFIRE_DB_PASSWORD")/g" \
        -e "s/@OPENFIRE_ADMIN_PASSWORD@/$(esc "$OPENFIRE_ADMIN_PASSWORD")/g" \
        /imgw/openfire.xml.in >"$DATA/conf/openfire.xml"
    chmod 0640 "$DATA/conf/openfire.xml"
fi
exec /sbin/entrypoint.sh "$@"
