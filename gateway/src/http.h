/*
 * http.h - the request plumbing of the HTTP transports over libwebsockets:
 * one gw_http_req_t per HTTP request, routes by path prefix, answers whole
 * or streamed, deadlines, CORS and Origin checks, the client's address.
 *
 * front.c hands this module every HTTP callback. The endpoints (api.c: the
 * JSON/JSONP API; upload.c: /upload and /files/; sockjs.c: SockJS over HTTP)
 * register their routes with gw_http_route() and never see libwebsockets.
 *
 * Ownership rule. A request belongs to this module from the request callback
 * until its answer is complete or its connection closes; only this module
 * frees it. An endpoint may keep a pointer to a request (in r->owner it keeps
 * one back) only until one of these happens, whichever comes first:
 * gw_http_reply()/gw_http_stream_end() returns, or ops->on_gone(r) runs.
 * After either, the request is gone. Endpoints keep the two pointers (theirs
 * to r, r->owner to theirs) as one link: whoever breaks one breaks both.
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include "config.h"
#include "front.h"
#include "httpparse.h"
#include "payload.h"
#include "pending.h"
#include "session.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct gw_http gw_http_t;
typedef struct gw_http_req gw_http_req_t;
struct lws;

/* What the front shares with its HTTP transports. Pointers stay valid for the module's life. */
typedef struct gw_http_env {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    const gw_front_cbs_t *cbs;
    void *ud;
    uint64_t *next_id; /* the front's session id counter */
    int (*origin_allowed)(void *fud, const char *origin);
    void *fud;
    gw_pending_t *pending; /* not-yet-authenticated sessions, shared with WebSockets */
} gw_http_env_t;

/* What an endpoint does with its requests. Every member may be NULL. */
typedef struct gw_http_ops {
    /* Body bytes of a POST, when the endpoint streams them (else they are buffered). */
    int (*on_body)(gw_http_req_t *r, const unsigned char *in, size_t len);
    /* The request is complete (headers, and body for POST). Returns an lws rc. */
    int (*on_request)(gw_http_req_t *r);
    /* The connection is writable after gw_http_wake(). Returns an lws rc. */
    int (*on_writable)(gw_http_req_t *r);
    /* The connection closed before the answer was complete: drop every link to r. */
    void (*on_gone)(gw_http_req_t *r);
    /* The largest buffered body (0: max_frame_bytes). */
    size_t max_body;
} gw_http_ops_t;

/* Creates the module and its timer on env->loop. 0 or GW_ENOMEM. */
int gw_http_new(const gw_http_env_t *env, gw_http_t **out);

/*
 * Routes paths equal to prefix, or starting with prefix followed by '/'
 * (exact = 0), to ops; r->ctx is ctx for those requests. At most 8 routes.
 * Returns 0 or GW_EFULL.
 */
int gw_http_route(gw_http_t *h, const char *prefix, int exact, const gw_http_ops_t *ops, void *ctx);

/* Registers fn to run from the module's 250 ms timer (at most 8). 0 or GW_EFULL. */
int gw_http_on_tick(gw_http_t *h, void (*fn)(void *ctx, uint64_t now_ms), void *ctx);

/* 1 when path belongs to a registered route. */
int gw_http_claims(const gw_http_t *h, const char *path);

/*
 * Handles one libwebsockets callback for an HTTP connection. reason is the
 * lws callback reason. Returns 1 when the callback was the module's (then
 * *rc holds the value to return to lws), 0 when front.c should handle it.
 */
int gw_http_callback(gw_http_t *h, struct lws *wsi, int reason, void *in, size_t len, int *rc);

/* Stops the timer; run the loop until handles close before gw_http_free(). */
void gw_http_destroy(gw_http_t *h);

void gw_http_free(gw_http_t *h);

/*
 * The client's address of a connection into out (size len, at least 2): the
 * header named by client_address_header when configured and present (the
 * last X-Forwarded-For element: the one the proxy added), otherwise the
 * peer's IP address.
 */
void gw_http_client_addr(const gw_config_t *cfg, struct lws *wsi, char *out, size_t len);

/* ---- for the endpoints ------------------------------------------------------- */

enum { GW_HTTP_GET = 0, GW_HTTP_POST, GW_HTTP_OPTIONS, GW_HTTP_OTHER };

#define GW_HTTP_MAX_ARGS 16

struct gw_http_req {
    gw_http_t *h;
    struct lws *wsi;
    const gw_http_ops_t *ops;
    void *ctx; /* the route's ctx */
    int method;
    char path[256];
    char origin[256];               /* the Origin header, or "" */
    char referer[256];              /* the scheme://host[:port] of the Referer header, or "" */
    char host[256];                 /* the Host header, or "" */
    char ctype[256];                /* the Content-Type header, or "" */
    char addr[GW_PENDING_ADDR_MAX]; /* the client's address (gw_http_client_addr) */
    int origin_bad;                 /* an Origin header that does not fit */
    int line_broken;                /* a request line cut by a %0D or %0A in its URL */
    int referer_bad; /* a Referer whose origin does not parse or fit (judged for JSONP) */
    long long clen;  /* Content-Length, or -1 */
    char *args;      /* decoded "name=value" query fragments, NUL separated */
    size_t nargs;
    char *body; /* buffered POST body (when ops->on_body is NULL) */
    size_t blen;
    int too_large;    /* the body passed its bound */
    int headers_sent; /* a streaming answer has started */
    int dispatched;   /* on_request ran (lws may still report a body completion) */
    int chunked;      /* the request body is chunked: de-chunked here */
    int http10;       /* an HTTP/1.0 request */
    int resp_chunked; /* the streamed answer is chunked (HTTP/1.1) */
    int conn_close;   /* answer with connection: close, then close */
    gw_chunked_t ch;
    uint64_t deadline;            /* ms; 0 = none (the module's timer checks it) */
    gw_http_req_t *tnext, *tprev; /* requests with a deadline */
    gw_http_req_t *wnext, *wprev; /* requests waiting for their answer */
    int waiting;
    int timed_out; /* the deadline passed (set before on_writable) */
    void *owner;   /* endpoint state linked to this request (see the ownership rule) */
    int kind;      /* endpoint specific */
    int flags;     /* endpoint specific */
    gw_payload_t *answer;
    char cb[72];    /* a validated JSONP callback, or "" */
    char extra[96]; /* endpoint specific */
};

/* A query argument (decoded) or NULL. */
const char *gw_http_arg(const gw_http_req_t *r, const char *name);

/* The front's environment. */
const gw_http_env_t *gw_http_env(const gw_http_t *h);

/* Asks for a writable callback on r's connection. */
void gw_http_wake(gw_http_req_t *r);

/* Puts r on (deadline != 0) or takes it off the timer's list; on expiry on_writable runs. */
void gw_http_set_deadline(gw_http_req_t *r, uint64_t deadline_ms);

/* Header pairs: name with colon ("x-foo:"), value; NULL name ends the list. */
typedef struct gw_http_hdr {
    const char *name, *value;
} gw_http_hdr_t;

/*
 * Writes a complete answer (status, headers, body) and finishes the
 * transaction; r is freed. A NULL ctype sends no Content-Type. Returns the
 * lws rc for the callback (-1: close).
 */
int gw_http_reply(gw_http_req_t *r, unsigned status, const char *ctype, const gw_http_hdr_t *hdrs,
                  const void *body, size_t len);

/*
 * Streaming answers: chunked over HTTP/1.1 (the connection stays usable),
 * "connection: close" over HTTP/1.0. gw_http_stream_begin() writes the
 * headers and first bytes, _write() more bytes (once per writable callback),
 * _end() the last ones and frees r. Each returns 0 or an lws rc (-1).
 */
int gw_http_stream_begin(gw_http_req_t *r, unsigned status, const char *ctype,
                         const gw_http_hdr_t *hdrs, const void *body, size_t len);
int gw_http_stream_write(gw_http_req_t *r, const void *body, size_t len);
int gw_http_stream_end(gw_http_req_t *r, const void *body, size_t len);

/*
 * CORS headers for r into hdrs (room for 3 entries + terminator): the Origin
 * when allowed (with credentials set, Allow-Credentials: true too), "*" when
 * the request has no Origin. Returns the number of entries added.
 */
int gw_http_cors(const gw_http_req_t *r, gw_http_hdr_t *hdrs, int credentials);

/*
 * 1 when r may act on a session: no Origin, or an allowed one; for a
 * script-tag transport (jsonp = 1, no Origin is sent) the Referer's origin
 * when present. An over-long or malformed header is never "absent".
 */
int gw_http_origin_ok(const gw_http_req_t *r, int jsonp);

/*
 * Serves the regular file at path with mime and extra headers as the whole
 * answer (r is freed). Returns an lws rc.
 */
int gw_http_serve_file(gw_http_req_t *r, const char *path, const char *mime,
                       const gw_http_hdr_t *hdrs);

/*
 * 1 when r's peer has closed its connection (checked now, without reading
 * anything); r's connection is then closed from the loop (on_gone follows).
 */
int gw_http_peer_gone(gw_http_req_t *r);

/* Request headers the endpoints read beyond the ones copied into gw_http_req_t. */
enum { GW_HTTP_H_AC_REQUEST_HEADERS = 1, GW_HTTP_H_IF_NONE_MATCH };

/* The value of request header which (GW_HTTP_H_*) into buf; its length, or -1 (absent, too long).
 */
int gw_http_header(const gw_http_req_t *r, int which, char *buf, size_t len);

/* Random bytes (getrandom). 0 or GW_EIO. */
int gw_http_random(void *buf, size_t len);

#endif
