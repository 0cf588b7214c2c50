/*
 * text.h - pure text helpers: UTF-8 validation, XML and JSON escaping, user
 * id and JID checks. No I/O and no allocation except into a gw_sbuf_t.
 */
#ifndef GW_TEXT_H
#define GW_TEXT_H

#include "payload.h"

#include <stddef.h>

/* 1 when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates), else 0. */
int gw_utf8_valid(const char *s, size_t n);

/*
 * 1 when s[0..n) is valid UTF-8 that XML 1.0 can carry: no NUL or other C0
 * control characters except tab, LF and CR, and no U+FFFE/U+FFFF.
 */
int gw_xml_text_ok(const char *s, size_t n);

/* Appends s[0..n) escaped for XML text and attribute values (&<>"'). */
void gw_xml_escape(gw_sbuf_t *b, const char *s, size_t n);

/* Appends s[0..n) as a JSON string literal, quotes included. */
void gw_json_escape(gw_sbuf_t *b, const char *s, size_t n);

/* 1 when s is a user id: [A-Za-z0-9_.-], 1..64 bytes. */
int gw_user_id_ok(const char *s);

/*
 * Resolves a browser's "to"/"with" value into a bare JID in out (size outlen):
 * "bob" becomes "bob@<users_domain>", "bob@example.com" stays as it is
 * (lower-cased domain). Returns 0, or GW_EINVAL for anything else (resources,
 * empty parts, characters a JID may not hold here, too long).
 */
int gw_jid_resolve(const char *in, const char *users_domain, char *out, size_t outlen);

/*
 * Splits a JID "node@domain/resource" into the bare JID (out) and reports
 * whether it has a node. Returns 0 or GW_EINVAL when it does not fit.
 */
int gw_jid_bare(const char *jid, char *out, size_t outlen);

#endif
