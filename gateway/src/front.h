/*
 * front.h - the browser front: WebSocket sessions and static files over
 * libwebsockets on the shared libuv loop. Only this module and http.c (the
 * HTTP request plumbing it hands requests to) include libwebsockets.h.
 *
 * The front checks Origin and the session limit at the upgrade, reassembles
 * fragmented frames up to max_frame_bytes, closes sessions that do not
 * authenticate in time, and queues outgoing frames per session (bounded by
 * session_queue_max). It knows nothing of the protocol: whole text frames go
 * to the on_frame callback.
 */
#ifndef GW_FRONT_H
#define GW_FRONT_H

#include "config.h"
#include "payload.h"
#include "session.h"

#include <stddef.h>
#include <uv.h>

typedef struct gw_front gw_front_t;

typedef struct gw_front_cbs {
    /* A WebSocket was accepted; s is zeroed except transport members and s->id. */
    void (*on_open)(void *ud, gw_session_t *s);
    /* One complete text frame. data is valid until the callback returns. */
    void (*on_frame)(void *ud, gw_session_t *s, const char *data, size_t len);
    /* The session is gone; s is freed after this returns. */
    void (*on_close)(void *ud, gw_session_t *s);
    /* Current number of sessions, for the max_sessions check at upgrade. */
    size_t (*session_count)(void *ud);
    /*
     * A plain HTTP GET of path that no static mount served. Write the body
     * into buf (size len), set *ctype to a static content type and return the
     * body length, or return -1 for 404.
     */
    int (*http_get)(void *ud, const char *path, char *buf, size_t len, const char **ctype);
} gw_front_cbs_t;

/*
 * Creates the libwebsockets context on loop and starts listening on
 * listen_host:listen_port, with the HTTP transports (api.c, upload.c,
 * sockjs.c over http.c). Returns 0, GW_EIO (cannot listen, e.g. the address
 * is in use; logged) or GW_ENOMEM.
 */
int gw_front_new(uv_loop_t *loop, const gw_config_t *cfg, const gw_front_cbs_t *cbs, void *ud,
                 gw_front_t **out);

/* The port actually bound (useful with listen_port = 0). */
int gw_front_port(const gw_front_t *f);

/*
 * Queues payload p for s; takes a new reference, the caller keeps its own.
 * When s's queue is full the session is closed with 1008 ("overloaded").
 */
void gw_front_send(gw_front_t *f, gw_session_t *s, gw_payload_t *p);

/* Sends what is queued for s, then closes it with code and a static reason. */
void gw_front_close(gw_front_t *f, gw_session_t *s, int code, const char *reason);

/* Closes every session with 1001 and stops accepting. cb runs when all are gone. */
void gw_front_shutdown(gw_front_t *f, void (*cb)(void *ud), void *ud);

/*
 * Destroys the libwebsockets context and closes the front's handles. Call
 * from the loop, outside any front callback; then run the loop until its
 * handles have closed, and only then gw_front_free().
 */
void gw_front_destroy(gw_front_t *f);

/* Frees the front's memory. */
void gw_front_free(gw_front_t *f);

#endif
