/*
 * msgid.c - message ids and signed stanza ids (see msgid.h for the why).
 */
#include "msgid.h"
#include "gw.h"
#include "ticket.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define TAG_BYTES 12 /* 96 bits: far beyond guessing, short enough for a stanza id */
#define ID_DIGITS 19

uint64_t gw_msgid_next(gw_msgid_gen_t *g, uint64_t now_ms)
{
    uint64_t now = now_ms < GW_MSGID_EPOCH_MS ? GW_MSGID_EPOCH_MS : now_ms;

    if (now <= g->last_ms) {
        now = g->last_ms;
        if (++g->seq >= 4096) {
            /* 4096 ids in one millisecond: borrow the next millisecond. */
            now++;
            g->seq = 0;
        }
    } else {
        g->seq = 0;
    }
    g->last_ms = now;
    return ((now - GW_MSGID_EPOCH_MS) << 22) | ((uint64_t)(g->node & 1023u) << 12) | g->seq;
}

uint64_t gw_msgid_ts(uint64_t id)
{
    return (id >> 22) + GW_MSGID_EPOCH_MS;
}

int gw_msgid_key_derive(gw_msgid_key_t *key, const char *secret, size_t len)
{
    static const char label[] = "imgw message id key v1";

    /* A key of its own, so a tag never doubles as anything else signed with the secret. */
    return gw_hmac_sha256(secret, len, label, sizeof(label) - 1, key->k);
}

/* The tag of (id, jid, origin_id) as 24 hex digits plus NUL. */
static int tag_hex(const gw_msgid_key_t *key, const char *idtext, size_t idlen, const char *jid,
                   const char *origin_id, char hex[2 * TAG_BYTES + 1])
{
    static const char digits[] = "0123456789abcdef";
    static const char label[] = "imgw-msgid-1";
    unsigned char msg[sizeof(label) + ID_DIGITS + 1 + 3072 + 1 + 256];
    unsigned char mac[32];
    size_t jlen = strlen(jid), olen = origin_id ? strlen(origin_id) : 0, n = 0;

    /* NUL separators: none of the parts can hold a NUL, so the encoding is unambiguous. */
    if (jlen > 3072 || olen > 256)
        return GW_ERANGE;
    memcpy(msg, label, sizeof(label)); /* with its NUL */
    n += sizeof(label);
    memcpy(msg + n, idtext, idlen);
    n += idlen;
    msg[n++] = '\0';
    memcpy(msg + n, jid, jlen);
    n += jlen;
    msg[n++] = '\0';
    if (olen)
        memcpy(msg + n, origin_id, olen);
    n += olen;
    if (gw_hmac_sha256(key->k, sizeof(key->k), msg, n, mac) != 0)
        return GW_EINVAL;
    for (unsigned i = 0; i < TAG_BYTES; i++) {
        hex[2 * i] = digits[mac[i] >> 4];
        hex[2 * i + 1] = digits[mac[i] & 15];
    }
    hex[2 * TAG_BYTES] = '\0';
    return 0;
}

int gw_msgid_sign(const gw_msgid_key_t *key, uint64_t id, const char *jid, const char *origin_id,
                  char *out, size_t outlen)
{
    char idtext[24], hex[2 * TAG_BYTES + 1];
    int n, rc;

    if (id == 0 || id > (uint64_t)INT64_MAX)
        return GW_EINVAL;
    n = snprintf(idtext, sizeof(idtext), "%" PRIu64, id);
    if ((rc = tag_hex(key, idtext, (size_t)n, jid, origin_id, hex)) != 0)
        return rc;
    if ((size_t)n + 1 + 2 * TAG_BYTES + 1 > outlen)
        return GW_ERANGE;
    snprintf(out, outlen, "%s.%s", idtext, hex);
    return 0;
}

uint64_t gw_msgid_verify(const gw_msgid_key_t *key, const char *stanza_id, size_t len,
                         const char *jid, const char *origin_id)
{
    const char *dot;
    char hex[2 * TAG_BYTES + 1];
    size_t idlen;
    uint64_t v = 0;

    if (stanza_id == NULL || jid == NULL)
        return 0;
    dot = memchr(stanza_id, '.', len);
    if (dot == NULL)
        return 0;
    idlen = (size_t)(dot - stanza_id);
    if (idlen == 0 || idlen > ID_DIGITS || len - idlen - 1 != 2 * TAG_BYTES || stanza_id[0] == '0')
        return 0;
    for (size_t i = 0; i < idlen; i++) {
        if (stanza_id[i] < '0' || stanza_id[i] > '9')
            return 0;
        v = v * 10u + (uint64_t)(stanza_id[i] - '0');
    }
    /* 19 digits cannot overflow 64 bits; ids above 2^63-1 are never ours. */
    if (v > (uint64_t)INT64_MAX)
        return 0;
    if (tag_hex(key, stanza_id, idlen, jid, origin_id, hex) != 0)
        return 0;
    return gw_ct_equal(hex, dot + 1, 2 * TAG_BYTES) ? v : 0;
}
