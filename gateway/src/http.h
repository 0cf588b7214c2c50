/*
 * http.h - the HTTP half of the front: the JSON/JSONP API (/api/...), picture
 * upload (/upload, /files/...), and the plumbing SockJS (sockjs.c) shares.
 *
 * Two layers live here. The pure helpers at the top do no I/O and are unit
 * tested (tests/unit/test_httpparse.c): query arguments, JSONP callback names,
 * image magic bytes, multipart/form-data, top-level JSON string members. The
 * module below them runs inside front.c's libwebsockets callback: front.c
 * hands it every HTTP request whose path it claims (gw_http_claims()).
 *
 * Sessions created here (API logins, SockJS sessions) are gw_session_t
 * objects with this module's transport; the router sees them through the
 * same on_open/on_frame/on_close callbacks as WebSocket sessions.
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include "config.h"
#include "front.h"
#include "payload.h"
#include "session.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* ---- pure helpers (no I/O) ------------------------------------------------ */

/*
 * 1 when name[0..len) is an acceptable JSONP callback name:
 * ^[A-Za-z_$][A-Za-z0-9_$]{0,63}(\.[A-Za-z_$][A-Za-z0-9_$]{0,63}){0,3}$
 */
int gw_http_callback_ok(const char *name, size_t len);

/*
 * The image type of a file from its first bytes (at least 12 are needed for
 * WebP): returns the MIME type ("image/jpeg", "image/png", "image/gif",
 * "image/webp") and sets *ext to the file extension without the dot, or
 * returns NULL for anything else.
 */
const char *gw_http_image_type(const unsigned char *b, size_t n, const char **ext);

/*
 * Percent-decodes s[0..n) ('+' becomes a space) into out (size outlen, NUL
 * terminated). Returns the decoded length, or GW_EINVAL (bad escape, NUL
 * byte, invalid UTF-8) or GW_ERANGE (does not fit).
 */
int gw_http_urldecode(const char *s, size_t n, char *out, size_t outlen);

/*
 * Looks up name in a form-encoded string ("a=1&b=2"); decodes the first
 * value into out. Returns the value's length, GW_ENOTFOUND, or the errors of
 * gw_http_urldecode().
 */
int gw_http_form_get(const char *form, size_t n, const char *name, char *out, size_t outlen);

/*
 * Finds the top-level member name of the JSON object json[0..n) and, when it
 * is a string without escapes other than \" \\ \/, copies it into out.
 * Returns the length, GW_ENOTFOUND, or GW_EINVAL (not a plain string, does
 * not fit). Nested values are skipped correctly. Meant for the frames the
 * gateway itself encodes (op, cid, for, with).
 */
int gw_http_json_member(const char *json, size_t n, const char *name, char *out, size_t outlen);

/* The multipart/form-data boundary of a Content-Type value, into out. 0 or GW_EINVAL. */
int gw_http_multipart_boundary(const char *ctype, char *out, size_t outlen);

/*
 * A streaming multipart/form-data parser that extracts the first part with a
 * filename (the file of an upload form). Feed it the body in pieces of any
 * size; file bytes are passed to the sink as they are recognised.
 */
typedef int (*gw_multipart_sink_cb)(void *ud, const unsigned char *data, size_t len);

typedef struct gw_multipart {
    char delim[80]; /* "\r\n--" boundary */
    size_t dlen;
    int state;      /* see http.c */
    int in_file;    /* the current part is the file */
    int file_done;  /* the file part ended */
    size_t match;   /* bytes of delim matched so far (held back) */
    char hdr[1024]; /* current part's header block */
    size_t hlen;
    gw_multipart_sink_cb sink;
    void *ud;
} gw_multipart_t;

/* Starts a parser for boundary. Returns 0 or GW_EINVAL (boundary too long). */
int gw_multipart_init(gw_multipart_t *m, const char *boundary, gw_multipart_sink_cb sink, void *ud);

/*
 * Feeds len bytes. Returns 0, GW_EINVAL (malformed) or whatever negative
 * value the sink returned.
 */
int gw_multipart_feed(gw_multipart_t *m, const unsigned char *in, size_t len);

/* After the last byte: 0 when a complete file part was seen, GW_EINVAL otherwise. */
int gw_multipart_finish(const gw_multipart_t *m);

/*
 * A Transfer-Encoding: chunked request body decoder (libwebsockets 4.1 hands
 * chunked bodies over undecoded). gw_chunked_feed() passes data bytes to
 * sink and returns 1 once the last chunk and trailer were read, 0 when more
 * is expected, GW_EINVAL on malformed input, or the sink's negative value.
 */
typedef struct gw_chunked {
    int state;
    uint64_t left; /* data bytes left in the current chunk, or the size being read */
    unsigned line; /* bytes of the current size or trailer line */
} gw_chunked_t;

int gw_chunked_feed(gw_chunked_t *c, const unsigned char *in, size_t len, gw_multipart_sink_cb sink,
                    void *ud);

/* ---- the module ------------------------------------------------------------- */

typedef struct gw_http gw_http_t;
struct lws;

/* What the front shares with its HTTP transports. Pointers stay valid for the module's life. */
typedef struct gw_http_env {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    const gw_front_cbs_t *cbs;
    void *ud;
    uint64_t *next_id; /* the front's session id counter */
    size_t *nsessions; /* the front's count of live sessions (shutdown waits for 0) */
    int (*origin_allowed)(void *fud, const char *origin);
    void *fud;
} gw_http_env_t;

/* Creates the module and its timer on env->loop. 0 or GW_ENOMEM. */
int gw_http_new(const gw_http_env_t *env, gw_http_t **out);

/* 1 when path belongs to the HTTP transports (/api/, /upload, /files/, /sockjs/). */
int gw_http_claims(const char *path);

/*
 * Handles one libwebsockets callback for an HTTP connection. reason is the
 * lws callback reason. Returns 1 when the callback was the module's (then
 * *rc holds the value to return to lws), 0 when front.c should handle it.
 */
int gw_http_callback(gw_http_t *h, struct lws *wsi, int reason, void *in, size_t len, int *rc);

/* Closes every HTTP session (router on_close runs for each). */
void gw_http_shutdown(gw_http_t *h);

/* Closes the timer; run the loop until handles close before gw_http_free(). */
void gw_http_destroy(gw_http_t *h);

void gw_http_free(gw_http_t *h);

/* ---- shared with sockjs.c (the front's internals, not for the router) ------- */

typedef struct gw_http_req gw_http_req_t;

/* What an endpoint does with its requests. Every member may be NULL. */
typedef struct gw_http_ops {
    /* Body bytes of a POST, when the endpoint streams them (else they are buffered). */
    int (*on_body)(gw_http_req_t *r, const unsigned char *in, size_t len);
    /* The request is complete (headers, and body for POST). Returns an lws rc. */
    int (*on_request)(gw_http_req_t *r);
    /* The connection is writable after gw_http_wake(). Returns an lws rc. */
    int (*on_writable)(gw_http_req_t *r);
    /* The connection closed before the answer was complete; detach from sessions. */
    void (*on_gone)(gw_http_req_t *r);
} gw_http_ops_t;

enum { GW_HTTP_GET = 0, GW_HTTP_POST, GW_HTTP_OPTIONS, GW_HTTP_OTHER };

#define GW_HTTP_MAX_ARGS 16

struct gw_http_req {
    gw_http_t *h;
    struct lws *wsi;
    const gw_http_ops_t *ops;
    int method;
    char path[256];
    char origin[256]; /* the Origin header, or "" */
    char host[256];   /* the Host header, or "" */
    char ctype[256];  /* the Content-Type header, or "" */
    long long clen;   /* Content-Length, or -1 */
    char *args;       /* decoded "name=value" query fragments, NUL separated */
    size_t nargs;
    char *body; /* buffered POST body (when ops->on_body is NULL) */
    size_t blen;
    int too_large;    /* the body passed its bound */
    int headers_sent; /* a streaming answer has started */
    int finished;     /* the final bytes were written */
    int dispatched;   /* on_request ran (lws may still report a body completion) */
    int chunked;      /* Transfer-Encoding: chunked: de-chunked here */
    int conn_close;   /* answer with connection: close, then close */
    gw_chunked_t ch;
    uint64_t deadline;            /* ms; 0 = none (the module's timer checks it) */
    gw_http_req_t *tnext, *tprev; /* requests with a deadline */
    void *owner;                  /* endpoint state (a session, an upload) */
    int kind;                     /* endpoint specific */
    int flags;                    /* endpoint specific */
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

/* Puts r on (deadline != 0) or takes it off the timer's list. */
void gw_http_set_deadline(gw_http_req_t *r, uint64_t deadline_ms);

/* Header pairs: name with colon ("x-foo:"), value; NULL name ends the list. */
typedef struct gw_http_hdr {
    const char *name, *value;
} gw_http_hdr_t;

/*
 * Writes a complete answer (status, headers, body) and finishes the
 * transaction; r is freed. Returns the lws rc for the callback (-1: close).
 */
int gw_http_reply(gw_http_req_t *r, unsigned status, const char *ctype, const gw_http_hdr_t *hdrs,
                  const void *body, size_t len);

/*
 * Streaming answers (no Content-Length; the connection closes after them):
 * gw_http_stream_begin() writes the headers and first bytes, _write() more
 * bytes (once per writable callback), _end() the last ones and frees r.
 * Each returns 0 or an lws rc (-1).
 */
int gw_http_stream_begin(gw_http_req_t *r, unsigned status, const char *ctype,
                         const gw_http_hdr_t *hdrs, const void *body, size_t len);
int gw_http_stream_write(gw_http_req_t *r, const void *body, size_t len);
int gw_http_stream_end(gw_http_req_t *r, const void *body, size_t len);

/*
 * CORS headers for r into hdrs (room for 4 entries + terminator) when the
 * Origin is allowed; with credentials set, Allow-Credentials: true too.
 * Returns the number of entries added.
 */
int gw_http_cors(const gw_http_req_t *r, gw_http_hdr_t *hdrs, int credentials);

/* Random bytes (getrandom). 0 or GW_EIO. */
int gw_http_random(void *buf, size_t len);

#endif
