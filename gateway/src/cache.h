/*
 * cache.h - hot state in Redis (hiredis, async on the shared libuv loop).
 *
 * Redis is a cache: PostgreSQL is the truth and Redis may be flushed at any
 * time. Writes are fire-and-forget (errors are logged and counted); reads say
 * whether they hit, missed or failed, and the router falls back to
 * PostgreSQL on a miss or failure and writes the answer back with
 * gw_cache_put_chats(). The connection itself (resolve, connect, reconnect,
 * watchdog) is redisconn.c's; only redisconn.c, cache.c and relay.c include hiredis.
 *
 * Key schema (documented in docs/redis.md; prefix "imgw:"):
 *   imgw:chats:{user}   HASH  peer -> JSON {peer,last_id,last_ts,last_sender,kind,preview}
 *   imgw:order:{user}   ZSET  "<last id> <peer>" (score 0; chat list order by member)
 *   imgw:marks:{user}   HASH  peer -> "<last id>:<read marker>"
 *   imgw:unids:{user}   ZSET  "<peer> <id>" (score 0): the unread messages' ids
 *   imgw:valid:{user}   STRING "<generation>:<n>:<u>" while the four keys above are
 *                       complete for user (n entries, u unread ids; generation must
 *                       equal imgw:gen). Ids in members are 20-digit zero-padded.
 *   imgw:gen            STRING generation; changed when a chat-list write may have been
 *                       lost (disconnect, error, command limit), invalidating every list
 *   imgw:dirty:{user}   STRING stamp of the last update (60 s TTL); a refill read before
 *                       a newer stamp is refused
 *   imgw:recent:{conv}  LIST  newest first, JSON msg frames, at most cache_recent
 *   imgw:web            SET   users with at least one web session (any gateway)
 * Every per-user and per-conversation key expires after cache_ttl_s; writes
 * refresh the TTL. A user's chat keys are only updated while imgw:valid:{user}
 * exists, so a flush or expiry can never leave a partial list that looks whole:
 * the next read misses and the router rebuilds it from PostgreSQL.
 */
#ifndef GW_CACHE_H
#define GW_CACHE_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct gw_cache gw_cache_t;

/* One chat list entry: the user's view of the conversation with peer. */
typedef struct gw_chat {
    const char *peer;        /* bare JID */
    uint64_t last_id;        /* id of the conversation's last message */
    uint64_t last_ts;        /* its time, ms since the epoch */
    const char *last_sender; /* bare JID */
    const char *kind;        /* "text" or "image" */
    const char *preview;     /* the body's first 200 characters (UTF-8), as in the schema */
    uint32_t unread;         /* messages from peer the user has not read */
    /* For gw_cache_put_chats only (ignored in answers): */
    uint64_t last_read;     /* the user's read marker in this conversation */
    const char *unread_ids; /* the unread messages' ids, space separated (NULL: unknown) */
} gw_chat_t;

/* A list whose entries hold more unread messages than this altogether is not cached. */
#define GW_CACHE_UNREAD_IDS_MAX 10000

/* A message as the cache sees it. Strings are NUL-terminated. */
typedef struct gw_cache_msg {
    uint64_t id;
    uint64_t ts;
    const char *sender;    /* bare JID */
    const char *recipient; /* bare JID */
    const char *kind;
    const char *body;
    const char *frame_json; /* the msg frame as sent to browsers (for imgw:recent), or NULL */
} gw_cache_msg_t;

/*
 * Creates the cache on loop. With an empty redis_host the cache is disabled:
 * every read answers GW_ENOTFOUND at once (synchronously) and writes do
 * nothing. Connects in the background and reconnects with backoff; while
 * Redis is down reads answer GW_EIO and writes are dropped.
 * Returns 0 or GW_ENOMEM.
 */
int gw_cache_new(uv_loop_t *loop, const gw_config_t *cfg, gw_cache_t **out);

/* 1 when connected to Redis. */
int gw_cache_is_up(const gw_cache_t *c);

/*
 * A message was stored: update both users' chat lists where they are valid
 * (order and entry; the recipient gains an unread message unless the read
 * marker is past it, the sender's marker moves to it as in the schema), and
 * push frame_json onto the conversation's recent list. Idempotent: applying a
 * message twice changes nothing. conv_key is the conversation key (both JIDs
 * sorted, space separated).
 */
void gw_cache_on_message(gw_cache_t *c, const gw_cache_msg_t *m, const char *conv_key);

/*
 * PostgreSQL moved user's read marker in the conversation with peer to marker:
 * the unread messages up to it are dropped (if the list is valid). A list that
 * does not know the conversation yet is invalidated instead.
 */
void gw_cache_mark_read(gw_cache_t *c, const char *user, const char *peer, uint64_t marker);

/* Adds user to / removes user from imgw:web. */
void gw_cache_web_user(gw_cache_t *c, const char *user, int online);

/*
 * Reads user's chat list, most recent first, at most limit entries.
 * cb(ud, status, chats, n) runs exactly once: status 0 with the entries
 * (valid until cb returns; n may be 0 for a user with no conversations),
 * GW_ENOTFOUND when the list is not cached (imgw:valid:{user} missing), or
 * GW_EIO when Redis is unavailable. Runs synchronously when disabled or down.
 */
typedef void (*gw_cache_chats_cb)(void *ud, int status, const gw_chat_t *chats, size_t n);
void gw_cache_get_chats(gw_cache_t *c, const char *user, size_t limit, gw_cache_chats_cb cb,
                        void *ud);

/*
 * Replaces user's cached chat list with chats[0..n) (the complete list, as
 * read from PostgreSQL, with every entry's last_read and unread_ids; a list
 * without them, or with more than GW_CACHE_UNREAD_IDS_MAX unread messages, is
 * not cached) and marks it valid, atomically (one Lua script). The
 * refill is refused when the user's list changed since the miss that caused it
 * (imgw:dirty), so a message stored meanwhile cannot be lost from the cache.
 */
void gw_cache_put_chats(gw_cache_t *c, const char *user, const gw_chat_t *chats, size_t n);

/* Counters for /metrics. */
typedef struct gw_cache_stats {
    uint64_t hits, misses, errors, writes;
} gw_cache_stats_t;
void gw_cache_get_stats(const gw_cache_t *c, gw_cache_stats_t *st);

/* Closes the connection; handles close when the loop runs. Then gw_cache_free(). */
void gw_cache_stop(gw_cache_t *c);
void gw_cache_free(gw_cache_t *c);

#endif
