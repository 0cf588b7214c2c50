/*
 * ticket.h - browser session tickets signed by the site's backend.
 *
 * A ticket is "USER:EXPIRY:MAC": USER a user id, EXPIRY a Unix time in
 * seconds, MAC the lower-case hex HMAC-SHA256 of "USER:EXPIRY" under the
 * shared ticket secret.
 *
 * This module is also the gateway's one adapter to OpenSSL: the HMAC and
 * constant-time comparison that message ids (msgid.c) and relay envelopes
 * (relay.c) are signed with live here. Only this module includes OpenSSL.
 */
#ifndef GW_TICKET_H
#define GW_TICKET_H

#include <stddef.h>
#include <stdint.h>

/*
 * Checks ticket against secret at time now (seconds). On success returns 0
 * and copies the user id into user (size userlen >= 65). Returns GW_EINVAL
 * for a malformed ticket, GW_EAUTH for a MAC mismatch (compared in constant
 * time), GW_EEXPIRED when EXPIRY < now.
 */
int gw_ticket_verify(const char *ticket, const char *secret, uint64_t now, char *user,
                     size_t userlen);

struct gw_config;

/*
 * Checks ticket as gw_ticket_verify() does, against cfg->ticket_secret and,
 * after a reload that rotated the secret, against the previous one while now
 * is before cfg->ticket_secret_prev_until (the overlap window). The call the
 * router makes for every hello with a ticket. Same returns.
 */
int gw_ticket_verify_cfg(const struct gw_config *cfg, const char *ticket, uint64_t now, char *user,
                         size_t userlen);

/*
 * Writes a ticket for user valid until expiry into out (size outlen >= 160).
 * Used by tests and by `imgw ticket`. Returns 0, or GW_EINVAL (also for a
 * user id that is not in canonical, lower-case form: the gateway refuses it).
 */
int gw_ticket_make(const char *user, uint64_t expiry, const char *secret, char *out, size_t outlen);

/*
 * HMAC-SHA256 of msg[0..len) under key[0..keylen) into out (32 bytes).
 * Returns 0, or GW_EINVAL when OpenSSL fails (never for valid arguments).
 */
int gw_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t len,
                   unsigned char out[32]);

/*
 * SHA-1 of a[0..alen) followed by b[0..blen), as 40 lower-case hex digits and a
 * NUL in out: the XEP-0114 handshake digest (stream id, then secret). Returns
 * 0, or GW_EINVAL when OpenSSL fails.
 */
int gw_sha1_hex2(const void *a, size_t alen, const void *b, size_t blen, char out[41]);

/* 1 when a[0..n) equals b[0..n), compared in time independent of the contents. */
int gw_ct_equal(const void *a, const void *b, size_t n);

#endif
