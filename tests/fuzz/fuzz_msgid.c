/*
 * libFuzzer target: message id verification (msgid.c). Any stanza id an XMPP user sends
 * must be refused without reading out of bounds, unless it is one the gateway signed; and
 * every id the gateway signs must verify for exactly its sender and origin-id.
 */
#include "msgid.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gw_msgid_key_t key;
static int have_key;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char sid[GW_MSGID_STANZA_MAX];
    uint64_t id = 0;

    if (!have_key) {
        gw_msgid_key_derive(&key, "fuzz-secret", 11);
        have_key = 1;
    }
    /* As an outsider's stanza id: refused (a 96-bit tag is not found by chance). */
    if (gw_msgid_verify(&key, (const char *)data, size, "alice@shop.test", NULL) != 0)
        abort();
    /* The first 8 bytes as an id the gateway signs: it must verify, and only as signed. */
    if (size >= 8)
        memcpy(&id, data, 8);
    id &= (uint64_t)INT64_MAX;
    if (id != 0) {
        if (gw_msgid_sign(&key, id, "alice@shop.test", "c1", sid, sizeof(sid)) != 0)
            abort();
        if (gw_msgid_verify(&key, sid, strlen(sid), "alice@shop.test", "c1") != id ||
            gw_msgid_verify(&key, sid, strlen(sid), "alice@shop.tesT", "c1") != 0 ||
            gw_msgid_verify(&key, sid, strlen(sid), "alice@shop.test", "c2") != 0)
            abort();
        if (gw_msgid_ts(id) < GW_MSGID_EPOCH_MS)
            abort();
    }
    return 0;
}
