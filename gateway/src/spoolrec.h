/*
 * spoolrec.h - the spool's record format: one message per line, as JSON.
 *
 *   {"id":"<decimal>","ts":<ms>,"s":"<sender>","r":"<recipient>","b":"<body>",
 *    "k":"text|image","c":"<client id>","st":"<stanza id>"}
 *
 * ("c" only when there is a client id.) The spool lives on the gateway's own
 * disk, but a line can still be torn by a crash, cut by a full disk or
 * edited by hand, so the reader trusts nothing: exact JSON, strings read with
 * their length and refused when they hold a NUL, every field type checked.
 * It does not judge the values (an id too large for PostgreSQL, a sender the
 * schema refuses): that is the database's call, and such a row ends in the
 * dead-letter table instead of blocking the replay. Pure: no I/O.
 */
#ifndef GW_SPOOLREC_H
#define GW_SPOOLREC_H

#include "payload.h"
#include "store.h"

#include <stddef.h>

/* A parsed line: m's strings point into the record until gw_spoolrec_free(). */
typedef struct gw_spoolrec {
    gw_store_msg_t m;
    void *root_; /* owned JSON tree */
} gw_spoolrec_t;

/*
 * Appends the record of m (no newline) to b. m's strings are NUL-terminated
 * (cid may be NULL). Check b->overflow afterwards.
 */
void gw_spoolrec_encode(gw_sbuf_t *b, const gw_store_msg_t *m);

/*
 * Parses line[0..len) (no newline). Returns 0 and fills rec (release with
 * gw_spoolrec_free), or GW_EINVAL and sets *why to a static reason; rec then
 * needs no release.
 */
int gw_spoolrec_parse(const char *line, size_t len, gw_spoolrec_t *rec, const char **why);

void gw_spoolrec_free(gw_spoolrec_t *rec);

#endif
