/*
 * outbox.h - browser sends between acceptance and "routed by the XMPP server".
 *
 * Every send a browser has been told is accepted stays here until the link
 * reports it routed (docs/companion-protocol.md section 10). The outbox writes
 * the sends that are ready (durable in the store) in the order they became
 * ready, whenever the link is up; after a lost connection it writes again
 * what was written and not confirmed. With a directory it also keeps an
 * append-only journal, so that the next start sends what a crash or a
 * shutdown left unconfirmed (see gw_outbox_replay).
 *
 * The journal is a series of segment files <dir>/outbox/<16 hex>.jsonl, one
 * JSON object per line: {"a":{...}} adds a send, {"d":"<id>"} says it was
 * routed (so that a crash soon after does not write it again; if that record
 * is lost, the companion drops the repeated send-as). A segment is deleted once
 * every send in it is confirmed or cancelled; the current one is truncated
 * when it holds none. Refusals are not journalled: a crash right after one
 * writes that send after all (stored first). Without `sync` the journal is
 * written but not fsync'd: it must survive a killed process (the page cache
 * does), and the message itself is durable in the store.
 *
 * No I/O other than the journal; the link is reached through the write hook.
 */
#ifndef GW_OUTBOX_H
#define GW_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_outbox gw_outbox_t;

/* A send. Strings are NUL-terminated and owned by the outbox. */
typedef struct gw_outbox_msg {
    uint64_t id, ts;
    char *user, *to, *cid, *kind, *body;
    size_t body_len;
} gw_outbox_msg_t;

typedef struct gw_outbox_entry gw_outbox_entry_t;

/*
 * Writes m to the XMPP server. Returns 0 and *mark (the link's number for the
 * write) when written, or a negative code when it cannot be written now (the
 * link is down): the outbox tries again after gw_outbox_link_up().
 */
typedef int (*gw_outbox_write_fn)(void *ud, const gw_outbox_msg_t *m, uint64_t *mark);

/*
 * Creates an outbox. dir: the journal directory's parent (spool_dir), or ""
 * for none. sync: fdatasync each journal append (use when nothing else makes
 * the send durable). max_waiting: the most sends not yet written (beyond it,
 * gw_outbox_full() says so). Returns 0, GW_EIO (journal directory unusable;
 * logged) or GW_ENOMEM.
 */
int gw_outbox_new(const char *dir, int sync, size_t max_waiting, gw_outbox_write_fn write, void *ud,
                  gw_outbox_t **out);

/*
 * Sends an earlier run left in the journal: calls fn(ud, entry, msg) for each,
 * oldest first. Each such entry is in the outbox already, not ready; the
 * caller makes it durable again (the store de-duplicates) and then calls
 * gw_outbox_ready() (or gw_outbox_cancel()). Call once, after gw_outbox_new.
 */
void gw_outbox_replay(gw_outbox_t *ob,
                      void (*fn)(void *ud, gw_outbox_entry_t *e, const gw_outbox_msg_t *m),
                      void *ud);

/*
 * Adds a send (fields copied) and journals it before returning. Returns the
 * entry (valid until confirmed or cancelled), or NULL on ENOMEM or a journal
 * write error (then nothing was accepted; logged).
 */
gw_outbox_entry_t *gw_outbox_add(gw_outbox_t *ob, const gw_outbox_msg_t *m);

/* The message of an entry (valid as long as the entry). */
const gw_outbox_msg_t *gw_outbox_msg(const gw_outbox_entry_t *e);

/* The send is durable: write it (now if the link is up, else after link_up). */
void gw_outbox_ready(gw_outbox_t *ob, gw_outbox_entry_t *e);

/* The send was refused after all: forget it (journalled). e is freed. */
void gw_outbox_cancel(gw_outbox_t *ob, gw_outbox_entry_t *e);

/* The link is up: write everything ready and not yet written, oldest first. */
void gw_outbox_link_up(gw_outbox_t *ob);

/* The link went down: what was written and not confirmed is written again after link_up. */
void gw_outbox_link_down(gw_outbox_t *ob);

/* Every write with a mark up to `mark` was routed: those sends are done and freed. */
void gw_outbox_routed(gw_outbox_t *ob, uint64_t mark);

/* Sends in the outbox (any state). */
size_t gw_outbox_len(const gw_outbox_t *ob);

/* Sends not written on the current connection (waiting for the link or the store). */
size_t gw_outbox_waiting(const gw_outbox_t *ob);

/* 1 when the send with message id `id` is here and not yet written (it waits for the link). */
int gw_outbox_is_waiting(const gw_outbox_t *ob, uint64_t id);

/* 1 when max_waiting sends wait already: refuse new sends while the link is down. */
int gw_outbox_full(const gw_outbox_t *ob);

/* Frees the outbox; unconfirmed sends stay in the journal for the next start. */
void gw_outbox_free(gw_outbox_t *ob);

#endif
