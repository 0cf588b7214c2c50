/*
 * store.h - history in PostgreSQL (libpq, non-blocking on the shared libuv loop).
 *
 * Two connections: a writer that turns queued messages into multi-row INSERTs
 * (one batch in flight; whatever arrives meanwhile forms the next batch), and
 * a reader for history pages, chat lists, mark-read and recovery. When the
 * database is down or too slow, messages go to an append-only spool file that
 * is fsync'd before the write is reported durable, survives a restart and is
 * replayed when the database is back. Duplicates are skipped by the schema
 * (stanza_id), so replays and retries are safe, and reported with the id of
 * the message already stored. A row PostgreSQL refuses never blocks the
 * others: the failing batch is split until the row is alone, and that row is
 * kept in the dead_letters table. Only store.c includes libpq.
 */
#ifndef GW_STORE_H
#define GW_STORE_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct gw_store gw_store_t;

/* A message to store. Strings are NUL-terminated; the store copies what it keeps. */
typedef struct gw_store_msg {
    uint64_t id;
    uint64_t ts;           /* ms since the epoch */
    const char *sender;    /* bare JID */
    const char *recipient; /* bare JID */
    const char *body;
    const char *kind;      /* "text" or "image" */
    const char *cid;       /* browser client id, or NULL */
    const char *stanza_id; /* de-duplication key */
} gw_store_msg_t;

/*
 * Outcomes of gw_store_write, as status:
 *   GW_STORE_STORED      durable: committed, or in the fsync'd spool; id and
 *                        ts are the message's own
 *   GW_STORE_DUPLICATE   durable: a message with the same stanza_id was
 *                        already stored; id and ts are that stored message's
 *                        (the caller's id was not used), or 0 in the rare
 *                        case the store could not tell
 *   GW_STORE_DEAD_LETTER durable, but not in the history: PostgreSQL refused
 *                        the row itself (a data error such as a unique or
 *                        check violation), so it was isolated from its batch
 *                        and kept in the dead_letters table with the reason
 *   GW_EFULL             refused: queue and spool full, or no spool while the
 *                        database is down
 *   GW_EIO               refused: a spool write error, or a row that not even
 *                        the dead-letter table would take (logged)
 * A row that fails for any other reason (connection lost, server errors) is
 * retried with capped exponential backoff, never reported as failed.
 */
enum { GW_STORE_STORED = 0, GW_STORE_DUPLICATE = 1, GW_STORE_DEAD_LETTER = 2 };
typedef void (*gw_store_write_cb)(void *ud, int status, uint64_t id, uint64_t ts);

/* Read-only view of result rows, valid until the callback returns. */
typedef struct gw_rows gw_rows_t;
size_t gw_rows_count(const gw_rows_t *r);
/* The text of a column ("" for NULL). */
const char *gw_rows_get(const gw_rows_t *r, size_t row, int col);
int gw_rows_isnull(const gw_rows_t *r, size_t row, int col);

/* Outcome of a read: status 0 and rows, or GW_EIO (database unavailable) with rows NULL. */
typedef void (*gw_store_rows_cb)(void *ud, int status, const gw_rows_t *rows);

/*
 * Creates the store on loop. An empty pg_conninfo disables it
 * (gw_store_enabled() returns 0 and no other call may be made). With
 * pg_migrate set, migrations from schema_dir are applied first, synchronously
 * (this is start-up; the loop is not running yet). Returns 0, GW_EIO (spool
 * directory or migration failure; logged) or GW_ENOMEM.
 */
int gw_store_new(uv_loop_t *loop, const gw_config_t *cfg, const char *schema_dir, gw_store_t **out);

int gw_store_enabled(const gw_store_t *s);
int gw_store_is_up(const gw_store_t *s);

/*
 * Queues m for the writer. cb(ud, status) runs exactly once, later (never
 * from inside this call), unless this returns non-zero (GW_ENOMEM). cb may be
 * NULL for messages nobody waits for (copies from XMPP).
 */
int gw_store_write(gw_store_t *s, const gw_store_msg_t *m, gw_store_write_cb cb, void *ud);

/*
 * Reads. Each runs cb exactly once, later, unless it returns non-zero.
 * Columns are listed with each call.
 */
/* Page of the conversation between a and b with ids below before, newest first:
 * id, sender, recipient, body, kind, client_id, created_ms. */
int gw_store_page(gw_store_t *s, const char *a, const char *b, uint64_t before, int limit,
                  gw_store_rows_cb cb, void *ud);
/* Chat list of user, most recent first: peer, last_id, last_ms, last_sender, last_kind,
 * preview, unread, last_read_id, unread_ids (the ids of the unread messages, oldest first,
 * space separated; NULL everywhere when the user has more than ids_max unread in all). */
int gw_store_chats(gw_store_t *s, const char *user, int limit, int ids_max, gw_store_rows_cb cb,
                   void *ud);
/* Moves the read marker to the newest message of the conversation at or below id (never
 * back): last_read_id, unread, moved ("t" or "f"); no row when there is no conversation. */
int gw_store_mark_read(gw_store_t *s, const char *user, const char *peer, uint64_t id,
                       gw_store_rows_cb cb, void *ud);
/* Messages of user's conversations after id, oldest first: id, sender, recipient, body,
 * kind, client_id, created_ms. */
int gw_store_recover(gw_store_t *s, const char *user, uint64_t after, int limit,
                     gw_store_rows_cb cb, void *ud);

typedef struct gw_store_stats {
    uint64_t written, batches, spooled, replayed, refused, failed_reads;
    uint64_t dead_letters;   /* rows kept in dead_letters (data errors) */
    uint64_t batch_failures; /* failed batch statements, of every kind */
    uint64_t spool_rejected; /* spool lines that could not be read back (kept aside) */
    size_t queued, spool_bytes;
} gw_store_stats_t;
void gw_store_get_stats(const gw_store_t *s, gw_store_stats_t *st);

/*
 * Applies the migrations in schema_dir to the database at conninfo, under an
 * advisory lock. Blocking; for start-up and `imgw migrate`. Returns 0 or
 * GW_EIO (logged).
 */
int gw_store_migrate(const char *conninfo, const char *schema_dir);

/* Stops: pending reads fail, queued writes go to the spool. Handles close when the loop runs. */
void gw_store_stop(gw_store_t *s);
void gw_store_free(gw_store_t *s);

#endif
