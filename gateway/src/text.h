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
 * 1 when s is a user id in canonical form: gw_user_id_ok and no upper-case
 * letter. XMPP folds case in JIDs (nodeprep), so "ALICE" and "alice" are one
 * account; an identity (a ticket's user, a dev-mode hello) must therefore be
 * given in this one form, never folded silently, or a site with distinct
 * users "Alice" and "alice" would have them share one chat account.
 */
int gw_user_id_canonical(const char *s);

/*
 * Resolves a browser's "to"/"with" value into a bare JID in out (size outlen):
 * "bob" becomes "bob@<users_domain>", "bob@example.com" stays as it is
 * (lower-cased domain). Returns 0, or GW_EINVAL for anything else (resources,
 * empty parts, characters a JID may not hold here, too long).
 */
int gw_jid_resolve(const char *in, const char *users_domain, char *out, size_t outlen);

/*
 * 1 when the domain d[0..n) is an IP address literal rather than a name: its
 * last label is all digits ("127.0.0.1", "10.1", "2130706433"; no top-level
 * domain is numeric) or it holds ':' or '[' (IPv6).
 */
int gw_domain_ip_literal(const char *d, size_t n);

/*
 * Checks a list of domains ("a.example, b.example" or blank-separated; "*"
 * means any domain name): every entry must be a domain name, not an IP
 * literal. Returns 0, or GW_EINVAL with a message naming allowed_domains in err.
 */
int gw_domain_list_check(const char *list, char *err, size_t errlen);

/*
 * 1 when domain is in list (case-insensitive, exact; "*" matches any name).
 * An IP literal never matches.
 */
int gw_domain_list_has(const char *list, const char *domain);

/*
 * 1 when s[0..n) is a bare JID: "domain" or "node@domain", the node 1..1023
 * bytes of UTF-8 without white space, control characters or any of
 * "&'/:<>@ (RFC 7622 forbids them), the domain a host name (no resource).
 */
int gw_jid_bare_ok(const char *s, size_t n);

/*
 * Splits a JID "node@domain/resource" into the bare JID (out) and reports
 * whether it has a node. Returns 0 or GW_EINVAL when it does not fit.
 */
int gw_jid_bare(const char *jid, char *out, size_t outlen);

#endif
