/*
 * msgid.h - message ids: generation, the timestamp inside them, and the
 * signed stanza ids that let the gateway recognise its own messages.
 *
 * A message id is a positive 63-bit number (decimal on the wire): the
 * milliseconds since 2024-01-01 UTC shifted left by 22 bits, then 10 bits of
 * node id and 12 bits of sequence (ids stay below 2^63 until 2093).
 * Ids grow with time on one gateway, never collide between gateways with
 * distinct node ids, and carry the message's timestamp (gw_msgid_ts), so the
 * sender's ack, the recipient's msg and history all show one ts.
 *
 * Ids that arrive from outside are never trusted as keys. A message the
 * gateway sends to XMPP carries the stanza id "<id>.<tag>", where tag is 24
 * lower-case hex digits: the first 96 bits of HMAC-SHA256 under a key derived
 * from component_secret (which every gateway of a domain shares) over the id,
 * the sender's bare JID and the origin-id. When the message comes back (a
 * companion copy, or web to web through the server), gw_msgid_verify() gives
 * the id back only if the tag matches those three; anything else gets a fresh
 * id. An XMPP user can therefore neither choose the id of a message nor reuse
 * one of the gateway's ids under another sender or another origin-id (the
 * origin-id is the de-duplication key's second half, so a verified id always
 * comes with the key it was stored under).
 *
 * Pure functions: no I/O, no clock (callers pass the time), no allocation.
 */
#ifndef GW_MSGID_H
#define GW_MSGID_H

#include <stddef.h>
#include <stdint.h>

/* 2024-01-01T00:00:00Z in ms since the Unix epoch: ids count from here. */
#define GW_MSGID_EPOCH_MS 1704067200000ull

/* Longest signed stanza id, NUL included: 19 digits, '.', 24 hex digits. */
#define GW_MSGID_STANZA_MAX 45

/* Generator state for one gateway (node_id 0..1023). Zero it, then set node. */
typedef struct gw_msgid_gen {
    uint64_t last_ms;
    unsigned seq;
    unsigned node;
} gw_msgid_gen_t;

/* The signing key; derived once at start-up. */
typedef struct gw_msgid_key {
    unsigned char k[32];
} gw_msgid_key_t;

/*
 * Returns a new id for time now_ms (ms since the Unix epoch, >= the epoch
 * above). More than 4096 ids in one millisecond borrow the next millisecond,
 * and a clock that steps back keeps counting from the last millisecond used,
 * so ids never repeat or go backwards on one generator.
 */
uint64_t gw_msgid_next(gw_msgid_gen_t *g, uint64_t now_ms);

/* The timestamp (ms since the Unix epoch) encoded in id. */
uint64_t gw_msgid_ts(uint64_t id);

/* Derives the signing key from secret[0..len). Returns 0 or GW_EINVAL. */
int gw_msgid_key_derive(gw_msgid_key_t *key, const char *secret, size_t len);

/*
 * Writes the stanza id "<id>.<tag>" for a message from jid (bare, as it will
 * come back: lower-case) with origin_id (NULL for none) into out (outlen >=
 * GW_MSGID_STANZA_MAX). Returns 0, or GW_EINVAL for id 0 or > INT64_MAX, or
 * GW_ERANGE when out is too small.
 */
int gw_msgid_sign(const gw_msgid_key_t *key, uint64_t id, const char *jid, const char *origin_id,
                  char *out, size_t outlen);

/*
 * Checks a stanza id (len bytes, need not be NUL-terminated) that arrived
 * from jid (bare, lower-case) with origin_id (NULL when absent). Returns the
 * message id when it is "<id>.<tag>" with a valid id and the tag matches
 * (compared in constant time), else 0.
 */
uint64_t gw_msgid_verify(const gw_msgid_key_t *key, const char *stanza_id, size_t len,
                         const char *jid, const char *origin_id);

#endif
