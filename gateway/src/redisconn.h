/*
 * redisconn.h - one hiredis async connection on the shared libuv loop, kept up.
 *
 * The machinery the Redis users (cache.c, relay.c) share: host resolution
 * off the loop thread, connecting with our own libuv poll hooks, a watchdog
 * that bounds connect, handshake and command time, reconnecting with capped
 * exponential backoff and jitter, and counting commands not yet answered.
 * What is sent on a connection, including its handshake, stays with the
 * module that owns it. Only redisconn.c, cache.c and relay.c include hiredis;
 * this header names hiredis types only as incomplete structs.
 *
 * Life of a connection: gw_redisconn_start() resolves and connects; once the
 * socket is up (and, with a password set, AUTH has been accepted: a refused
 * AUTH is logged and retried with backoff like a failed connect), on_connected
 * runs and the owner sends its handshake with
 * gw_redisconn_send(); when that is answered the owner calls
 * gw_redisconn_up(). A lost context, a failed connect or a
 * gw_redisconn_drop() schedules a reconnect, which runs on_connected again.
 */
#ifndef GW_REDISCONN_H
#define GW_REDISCONN_H

#include <stddef.h>
#include <uv.h>

struct redisAsyncContext;

typedef struct gw_redisconn gw_redisconn_t;

/*
 * The socket is connected (keepalive on) and the connection is in its
 * handshake. ac is the new context, valid until it is lost or dropped.
 * Commands sent from here on are counted and watched.
 */
typedef void (*gw_redisconn_connected_cb)(void *ctx, struct redisAsyncContext *ac);

/* The current context went away (lost, dropped or failed); a reconnect is scheduled. */
typedef void (*gw_redisconn_lost_cb)(void *ctx);

/*
 * A reply callback, the same function type as hiredis' redisCallbackFn:
 * reply is a redisReply, or NULL when the context is being freed. It must
 * call gw_redisconn_replied() first.
 */
typedef void gw_redisconn_reply_cb(struct redisAsyncContext *ac, void *reply, void *priv);

typedef struct gw_redisconn_opts {
    const char *module; /* log module: "cache", "relay" */
    const char *name;   /* NULL, or a name logged after host:port, e.g. "command" */
    const char *host;   /* host name or address; copied */
    int port;
    unsigned connect_timeout_ms;   /* resolve excluded: from connect() to on_connected */
    unsigned handshake_timeout_ms; /* 0: the connect deadline covers the handshake too */
    unsigned command_timeout_ms;   /* no reply this long while commands are outstanding: drop */
    const char *user;     /* AUTH user (Redis 6+ ACL), or NULL/"" for the default user; copied */
    const char *password; /* AUTH password, or NULL/"" to send no AUTH; copied */
    gw_redisconn_connected_cb on_connected; /* required */
    gw_redisconn_lost_cb on_lost;           /* or NULL */
    void *ctx;                              /* passed to the callbacks; see gw_redisconn_ctx() */
} gw_redisconn_opts_t;

/*
 * Creates a connection for loop; nothing happens until gw_redisconn_start().
 * opts is copied (host, user and password too). Returns 0, GW_ENOMEM, or
 * GW_EINVAL when the host is empty or longer than 255 bytes, the user longer
 * than 127 or the password longer than 511 bytes, or on_connected is NULL;
 * *out is NULL on failure.
 */
int gw_redisconn_new(uv_loop_t *loop, const gw_redisconn_opts_t *opts, gw_redisconn_t **out);

/* Starts resolving and connecting, and the watchdog. Call once. */
void gw_redisconn_start(gw_redisconn_t *c);

/*
 * Sends a command on the current context; argv[i] has lens[i] bytes and is
 * copied. fn gets priv. The command counts as outstanding until fn calls
 * gw_redisconn_replied(). Returns 0, or GW_EIO when there is no context or
 * hiredis refuses it; then fn is never called.
 */
int gw_redisconn_send(gw_redisconn_t *c, gw_redisconn_reply_cb *fn, void *priv, int argc,
                      const char **argv, const size_t *lens);

/*
 * To be called first by every reply callback of gw_redisconn_send(): counts
 * the reply and, when reply is NULL, treats the context as lost. Returns 1
 * when reply is not NULL and ac is still the current context (a handshake
 * reply that matters), else 0; callbacks that only count may ignore it.
 */
int gw_redisconn_replied(const struct redisAsyncContext *ac, const void *reply);

/*
 * The context ac died (a callback of a command sent outside
 * gw_redisconn_send(), such as SUBSCRIBE, got NULL). Later calls for the same
 * context do nothing.
 */
void gw_redisconn_lost(const struct redisAsyncContext *ac);

/* The ctx of the connection ac belongs to (for reply callbacks). */
void *gw_redisconn_ctx(const struct redisAsyncContext *ac);

/* The handshake is done: the connection is up and the backoff starts over. */
void gw_redisconn_up(gw_redisconn_t *c);

/*
 * Gives up on the current context (timeout, bad handshake), logging why, and
 * reconnects. Outstanding callbacks run with NULL now, or once the current
 * one returns. Does nothing without a context.
 */
void gw_redisconn_drop(gw_redisconn_t *c, const char *why);

/* 1 when the handshake is done and the context is alive. */
int gw_redisconn_is_up(const gw_redisconn_t *c);

/* 1 between on_connected and gw_redisconn_up(). */
int gw_redisconn_in_handshake(const gw_redisconn_t *c);

/* 1 when ac is the current context (not one already lost or dropped). */
int gw_redisconn_is_current(const gw_redisconn_t *c, const struct redisAsyncContext *ac);

/* "host:port", or "host:port (name)": for log lines. Valid until gw_redisconn_free(). */
const char *gw_redisconn_label(const gw_redisconn_t *c);

/* Commands sent with gw_redisconn_send() and not yet answered. */
size_t gw_redisconn_pending(const gw_redisconn_t *c);

/*
 * Stops for good: cancels resolution and reconnects and frees the context,
 * whose outstanding callbacks run now with NULL (on_lost is not called).
 * Handles close when the loop runs; then gw_redisconn_free(). c may be NULL.
 */
void gw_redisconn_stop(gw_redisconn_t *c);

/* Frees c (NULL is fine): after gw_redisconn_stop() and a loop run, or if never started. */
void gw_redisconn_free(gw_redisconn_t *c);

#endif
