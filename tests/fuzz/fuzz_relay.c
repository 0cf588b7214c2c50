/*
 * libFuzzer target: relay envelopes (relay.c). The input is an envelope as a Redis peer
 * could PUBLISH it, taken both as it is (nearly always refused for its signature) and
 * re-sealed with the right key, so the frame checks behind the signature are reached too.
 * An accepted envelope must give a message the router can encode.
 */
#include "relay.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gw_relay_key_t key;
static int have_key;
static const uint64_t now = 1764547200000ull;

static void check(const char *env, size_t len)
{
    gw_relay_env_t e;
    const char *why = NULL;

    if (gw_relay_open(&key, "shop.test", 0, now, env, len, &e, &why) != 0) {
        if (why == NULL)
            abort();
        return;
    }
    if (strlen(e.m.body) != e.m.body_len || e.m.id == 0 || strlen(e.user) == 0)
        abort();
    gw_payload_unref(gw_proto_msg(&e.m, e.m.from, 1));
    gw_relay_env_free(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_sbuf_t b;
    const char *nl;

    if (!have_key) {
        gw_relay_key_derive(&key, "fuzz-secret", 11);
        have_key = 1;
    }
    check((const char *)data, size);
    /* "user\nframe": seal the frame for that user, then open it. */
    nl = memchr(data, '\n', size);
    if (nl != NULL && (size_t)(nl - (const char *)data) < 80) {
        char user[80];
        size_t ulen = (size_t)(nl - (const char *)data);
        memcpy(user, data, ulen);
        user[ulen] = '\0';
        gw_sbuf_init(&b, 1u << 24);
        gw_relay_seal(&key, now, 1, 0, user, nl + 1, size - ulen - 1, &b);
        if (!b.overflow)
            check(b.data, b.len);
        gw_sbuf_free(&b);
    }
    return 0;
}
