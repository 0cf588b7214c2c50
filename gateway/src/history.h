/*
 * history.h - the browser's history operations: scroll-back pages, the chat
 * list with unread counts, mark-read across tabs, and recovery of what a
 * reconnecting session missed. Reads PostgreSQL (store.c) and the Redis cache
 * (cache.c); answers through each session's transport. Every query is scoped to the asking
 * session's own user, so nobody can read another user's conversations.
 */
#ifndef GW_HISTORY_H
#define GW_HISTORY_H

#include "cache.h"
#include "proto.h"
#include "session.h"
#include "store.h"

#include <stdint.h>
#include <uv.h>

typedef struct gw_history gw_history_t;

/* What the history module uses; all must outlive it. */
typedef struct gw_history_env {
    uv_loop_t *loop;
    const gw_config_t *cfg; /* session_queue_max paces recovery */
    gw_store_t *store;
    gw_cache_t *cache;
    gw_registry_t *reg;
    const char *users_domain;
} gw_history_env_t;

int gw_history_new(const gw_history_env_t *env, gw_history_t **out);
void gw_history_free(gw_history_t *h);

/* Answers {"op":"history"} for session s (welcomed) with peer, a bare JID. */
void gw_history_page(gw_history_t *h, gw_session_t *s, const char *peer, uint64_t before,
                     int limit);
/* Answers {"op":"chats"}. */
void gw_history_chats(gw_history_t *h, gw_session_t *s, int limit);
/* Marks the conversation with peer read up to id and tells every tab of the user. */
void gw_history_read(gw_history_t *h, gw_session_t *s, const char *peer, uint64_t id);
/*
 * Sends s what its user received or sent after id, page by page as s's queue
 * has room, then the live messages that arrived meanwhile, then
 * {"op":"recovered"}. Call right after the welcome, before anything is pushed
 * to s; from then on push s's live messages through gw_history_push().
 */
void gw_history_recover(gw_history_t *h, gw_session_t *s, uint64_t after);

/*
 * Queues the live msg frame p (message id, or 0 to read it from the frame) for
 * s: at once, or, while s recovers, after the replay; never a message the
 * replay has sent s already. Takes a new reference; the caller keeps its own.
 */
void gw_history_push(gw_history_t *h, gw_session_t *s, gw_payload_t *p, uint64_t id);

/* s is closing: drops its recovery state (call before s is freed). */
void gw_history_forget(gw_history_t *h, gw_session_t *s);

/* A message was stored (not a duplicate): update the cache. */
void gw_history_stored(gw_history_t *h, const gw_msg_t *m);

/* The bare JID of the JID of the user id user, into out. */
void gw_history_user_jid(const gw_history_t *h, const char *user, char *out, size_t len);

#endif
