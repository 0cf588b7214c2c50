/*
 * session.h - browser sessions and the registry of who is connected here.
 *
 * A gw_session_t is one WebSocket (one tab). front.c allocates it inside the
 * libwebsockets per-connection data and owns the transport members; router.c
 * owns the rest. The registry maps a user id to that user's sessions on this
 * process. It is the per-process half of "who is connected where": a cluster
 * of gateways keeps the same interface and adds a shared directory (Redis) in
 * front of it, so nothing else needs to know where a session lives.
 */
#ifndef GW_SESSION_H
#define GW_SESSION_H

#include "payload.h"

#include <stddef.h>
#include <stdint.h>

typedef struct gw_user gw_user_t;
typedef struct gw_session gw_session_t;

/*
 * How frames reach a session: a WebSocket (front.c), or an HTTP transport
 * (SockJS polling and streaming, the JSONP API). The router only calls
 * gw_session_send() and gw_session_close().
 */
typedef struct gw_transport {
    /* Queues p for s; takes a new reference, the caller keeps its own. */
    void (*send)(void *ctx, gw_session_t *s, gw_payload_t *p);
    /* Sends what is queued, then closes with code and a static reason. */
    void (*close)(void *ctx, gw_session_t *s, int code, const char *reason);
    /* Optional: the session authenticated (e.g. to cancel an authentication timer). */
    void (*welcomed)(void *ctx, gw_session_t *s);
} gw_transport_t;

struct gw_session {
    /* transport */
    const gw_transport_t *tp; /* set by the transport that created the session */
    void *tp_ctx;             /* the transport's own state (gw_front_t *, ...) */
    void *conn;               /* transport handle (struct lws * for WebSockets) */
    gw_payload_t **q;         /* ring of frames waiting for POLLOUT */
    uint32_t qhead, qlen, qcap;
    char *rx; /* partial fragmented frame, or NULL */
    size_t rxlen;
    uint8_t closing; /* a close has been requested */
    uint16_t close_code;
    const char *close_reason; /* static string */
    /*
     * Optional (NULL by default): called when an answer the session was owed is
     * queued, so a transport that paused reading from the client (backpressure)
     * can look again at whether it has room.
     */
    void (*on_answered)(gw_session_t *s);

    /* routing (router.c) */
    gw_user_t *user;                /* NULL until hello succeeds */
    struct gw_session *next, *prev; /* the user's other sessions */
    char *open_conv;                /* bare JID of the conversation on screen, or NULL */
    uint64_t recover_after;         /* hello's last_id: recover after the welcome */
    uint8_t welcomed;               /* welcome sent: the session receives messages */
    uint64_t id;
    /*
     * Answers this session is owed: requests accepted and still waiting (a send
     * for its store, a history query). With qlen they bound what the session's
     * queue may still have to take, which is what backpressure looks at.
     */
    uint32_t owed;
    void *recovery; /* history.c: replay state after hello.last_id, or NULL */
};

/*
 * The session's bounded frame queue (a ring in gw_session_t), used by every
 * transport. push takes a new reference to p; returns 0, GW_EFULL (max frames
 * queued already) or GW_ENOMEM. pop hands the oldest frame's reference to the
 * caller, or returns NULL. free drops everything queued.
 */
int gw_session_queue_push(gw_session_t *s, gw_payload_t *p, uint32_t max);
gw_payload_t *gw_session_queue_pop(gw_session_t *s);
void gw_session_queue_free(gw_session_t *s);

/* Queues p for s through its transport (takes a new reference; NULL is ignored). */
static inline void gw_session_send(gw_session_t *s, gw_payload_t *p)
{
    if (p != NULL)
        s->tp->send(s->tp_ctx, s, p);
}

/* s accepted a request that answers later (see owed). */
static inline void gw_session_owe(gw_session_t *s)
{
    s->owed++;
}

/* The answer to one of s's requests has been queued (or will never come). */
static inline void gw_session_answered(gw_session_t *s)
{
    if (s->owed > 0)
        s->owed--;
    if (s->on_answered != NULL)
        s->on_answered(s);
}

/* Closes s through its transport after what is queued. */
static inline void gw_session_close(gw_session_t *s, int code, const char *reason)
{
    s->tp->close(s->tp_ctx, s, code, reason);
}

struct gw_user {
    gw_user_t *hnext;       /* hash chain */
    gw_session_t *sessions; /* doubly linked through next/prev */
    unsigned nsessions;
    uint8_t registering; /* a companion registration is in flight */
    uint8_t announced; /* web presence (link), cache and relay were told of this user (router.c) */
    char id[];         /* user id, lower case */
};

typedef struct gw_registry gw_registry_t;

/* Creates an empty registry. Returns 0 or GW_ENOMEM. */
int gw_registry_new(gw_registry_t **out);

/*
 * Adds session s to user_id's sessions (creating the user entry) and sets
 * s->user. Returns 1 when it is the user's first session, 0 otherwise,
 * GW_ELIMIT when the user already has max_per_user sessions, GW_ENOMEM.
 */
int gw_registry_attach(gw_registry_t *r, gw_session_t *s, const char *user_id,
                       unsigned max_per_user);

/*
 * Removes s from its user (no-op when s->user is NULL) and clears s->user.
 * Returns 1 when that was the user's last session (the entry is freed).
 */
int gw_registry_detach(gw_registry_t *r, gw_session_t *s);

/* The user's entry, or NULL when the user has no session here. */
gw_user_t *gw_registry_find(const gw_registry_t *r, const char *user_id);

/*
 * The session with id of user_id that is not closing, or NULL. For answers
 * that arrive after a wait (database, registration): the session may be gone.
 */
gw_session_t *gw_registry_find_session(const gw_registry_t *r, const char *user_id, uint64_t id);

size_t gw_registry_user_count(const gw_registry_t *r);

/* Calls fn(ud, user) for every user with a session here. fn must not attach or detach. */
void gw_registry_foreach(const gw_registry_t *r, void (*fn)(void *ud, gw_user_t *u), void *ud);
size_t gw_registry_session_count(const gw_registry_t *r);

/* Frees the table. Sessions must have been detached. */
void gw_registry_free(gw_registry_t *r);

/* A set of strings (user ids), for "known to exist" caches. */
typedef struct gw_strset gw_strset_t;

int gw_strset_new(gw_strset_t **out);
/* Adds s (copied). Returns 1 when added, 0 when present, GW_ENOMEM. */
int gw_strset_add(gw_strset_t *set, const char *s);
int gw_strset_has(const gw_strset_t *set, const char *s);
size_t gw_strset_count(const gw_strset_t *set);
void gw_strset_clear(gw_strset_t *set);
void gw_strset_free(gw_strset_t *set);

/*
 * Recently seen browser client ids (user + cid), so that a send retried after
 * a reconnect is acknowledged again instead of sent twice. Bounded: the
 * oldest entry is forgotten when full.
 */
typedef struct gw_cidmap gw_cidmap_t;

typedef struct gw_cid_entry {
    uint64_t id, ts; /* the message id and time given to the first send */
    void *pending;   /* the router's in-flight send, or NULL once done */
} gw_cid_entry_t;

int gw_cidmap_new(size_t capacity, gw_cidmap_t **out);
/* The entry for (user, cid), or NULL. */
gw_cid_entry_t *gw_cidmap_get(gw_cidmap_t *m, const char *user, const char *cid);
/* Adds (user, cid) and returns its zeroed entry, evicting the oldest when full; NULL on ENOMEM. */
gw_cid_entry_t *gw_cidmap_put(gw_cidmap_t *m, const char *user, const char *cid);
void gw_cidmap_del(gw_cidmap_t *m, const char *user, const char *cid);
void gw_cidmap_free(gw_cidmap_t *m);

#endif
