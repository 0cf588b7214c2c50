/*
 * front.c - libwebsockets adapter.
 */
#include "front.h"
#include "api.h"
#include "gw.h"
#include "http.h"
#include "log.h"
#include "pending.h"
#include "sockjs.h"
#include "upload.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(GW_PAYLOAD_PRE >= LWS_PRE, "payload headroom must hold a WebSocket header");

struct gw_front {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    gw_front_cbs_t cbs;
    void *ud;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    struct lws_protocols protocols[2];
    struct lws_http_mount mounts[3];
    char demo_origin[1024];
    char client_origin[1024];
    void *foreign[1];
    size_t nsessions;
    uint64_t next_id;
    int shutting_down;
    void (*shutdown_cb)(void *ud);
    void *shutdown_ud;
    uv_timer_t shutdown_timer;
    int port;
    int timer_init;
    gw_http_t *http;       /* HTTP request plumbing */
    gw_api_t *api;         /* /api/ */
    gw_upload_t *upload;   /* /upload, /files/ */
    gw_sockjs_t *sj;       /* /sockjs/ over HTTP */
    gw_pending_t *pending; /* not-yet-authenticated sessions of every transport */
};

/*
 * The per-connection data of a WebSocket. The session comes first, so the
 * router's gw_session_t pointer and the connection's are the same. A SockJS
 * WebSocket either frames (o, a[...], h, c[...]) or, at the prefix root's
 * /websocket, carries raw frames like /ws.
 */
enum { WS_NATIVE = 0, WS_SOCKJS_RAW, WS_SOCKJS_FRAMED };

typedef struct ws_conn {
    gw_session_t s;
    uint8_t mode;
    uint8_t need_open;   /* framed: "o" not written yet */
    uint8_t need_hb;     /* framed: a heartbeat is due */
    uint8_t close_sent;  /* framed: c[...] written, the close frame is next */
    uint8_t pending;     /* holds a place in the front's pending count */
    uint64_t last_tx_ms; /* framed: the last frame written (heartbeats only after idle) */
    char addr[GW_PENDING_ADDR_MAX];
    uint8_t rx_paused; /* reading from the client paused: its answers fill the queue */
} ws_conn_t;

/*
 * Backpressure. A client that pipelines requests faster than it reads the
 * answers would overflow its own queue (1008) with acks; instead, reading from
 * it pauses while queued frames plus the answers it is owed reach half of
 * session_queue_max, and resumes below a quarter. What lws has read already
 * stays in its buffer meanwhile (at most rx_buffer_bytes).
 */
static void rx_backpressure(gw_front_t *f, gw_session_t *s)
{
    ws_conn_t *c = (ws_conn_t *)s;
    uint32_t max = (uint32_t)f->cfg->session_queue_max, used = s->qlen + s->owed;

    if (!c->rx_paused && used >= (max + 1) / 2) {
        c->rx_paused = 1;
        lws_rx_flow_control((struct lws *)s->conn, 0);
    } else if (c->rx_paused && used <= max / 4) {
        c->rx_paused = 0;
        lws_rx_flow_control((struct lws *)s->conn, 1);
    }
}

static void on_answered(gw_session_t *s)
{
    rx_backpressure(s->tp_ctx, s);
}

static int ws_mode_of(const char *path)
{
    char sid[72], tp[32];
    int k;

    if (strcmp(path, "/ws") == 0)
        return WS_NATIVE;
    k = gw_sockjs_parse_path(path, sid, sizeof(sid), tp, sizeof(tp));
    if (k == GW_SOCKJS_P_RAW_WS)
        return WS_SOCKJS_RAW;
    if (k == GW_SOCKJS_P_SESSION && strcmp(tp, "websocket") == 0)
        return WS_SOCKJS_FRAMED;
    return -1;
}

/* lws keeps no user pointer per context that is handy in log callbacks. */
static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);

    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    /* lws repeats some errors in a loop (accept failing with EMFILE): rate-limited. */
    if (level & LLL_ERR)
        gw_log_limited(GW_LOG_ERROR, "lws", "%.*s", (int)n, line);
    else if (level & LLL_WARN)
        gw_log_limited(GW_LOG_WARNING, "lws", "%.*s", (int)n, line);
    else if (level & (LLL_NOTICE | LLL_USER))
        gw_log(GW_LOG_INFO, "lws", "%.*s", (int)n, line);
    else
        gw_log(GW_LOG_DEBUG, "lws", "%.*s", (int)n, line);
}

static int origin_allowed(gw_front_t *f, const char *origin)
{
    const char *list = f->cfg->allowed_origins;
    size_t olen = strlen(origin);

    while (*list) {
        size_t n;
        while (*list == ' ' || *list == ',')
            list++;
        n = strcspn(list, ", ");
        if (n == 0)
            break;
        /* "null" (sandboxed frames, file: pages) only when listed by name, never by "*". */
        if ((n == 1 && list[0] == '*' && strcmp(origin, "null") != 0) ||
            (n == olen && strncmp(list, origin, n) == 0))
            return 1;
        list += n;
    }
    return 0;
}

static int origin_allowed_cb(void *fud, const char *origin)
{
    return origin_allowed(fud, origin);
}

static void free_queue(gw_session_t *s)
{
    gw_session_queue_free(s);
    free(s->rx);
    s->rx = NULL;
    s->rxlen = 0;
}

void gw_front_send(gw_front_t *f, gw_session_t *s, gw_payload_t *p)
{
    ws_conn_t *c = (ws_conn_t *)s;
    struct lws *wsi = (struct lws *)s->conn;
    int rc;

    if (s->closing || p == NULL)
        return;
    /*
     * Nothing waits before this frame: written now. Going through the queue
     * costs a POLLOUT round trip per frame: lws_callback_on_writable changes the
     * socket's poll mask (libuv: an epoll_ctl ADD that fails with EEXIST, then a
     * MOD), the loop wakes for the writable event, and lws drops POLLOUT again
     * after the write (two more): four epoll_ctl and a service call per frame.
     * lws_write buffers whatever the socket does not take and asks for POLLOUT
     * itself; while it holds such a remainder (lws_partial_buffered) frames
     * queue, so the order is kept.
     */
    if (s->qlen == 0 && c->mode != WS_SOCKJS_FRAMED && !f->shutting_down &&
        !lws_partial_buffered(wsi)) {
        if (lws_write(wsi, gw_payload_data(p), p->len, LWS_WRITE_TEXT) >= 0)
            return;
        /* The connection failed: lws closes it; nothing more goes out on it. */
        s->closing = 1;
        s->close_code = 1011;
        s->close_reason = "write failed";
        lws_callback_on_writable(wsi);
        return;
    }
    rc = gw_session_queue_push(s, p, (uint32_t)f->cfg->session_queue_max);
    if (rc != 0) {
        gw_warn("front", "session %llu: outbound queue full (%u frames), closing",
                (unsigned long long)s->id, s->qlen);
        gw_front_close(f, s, 1008, "overloaded");
        return;
    }
    lws_callback_on_writable((struct lws *)s->conn);
}

void gw_front_close(gw_front_t *f, gw_session_t *s, int code, const char *reason)
{
    GW_UNUSED(f);
    if (s->closing)
        return;
    s->closing = 1;
    s->close_code = (uint16_t)code;
    s->close_reason = reason;
    lws_callback_on_writable((struct lws *)s->conn);
}

static void tp_send(void *ctx, gw_session_t *s, gw_payload_t *p)
{
    gw_front_send(ctx, s, p);
}

static void tp_close(void *ctx, gw_session_t *s, int code, const char *reason)
{
    gw_front_close(ctx, s, code, reason);
}

static void release_pending(gw_front_t *f, ws_conn_t *c)
{
    if (c->pending) {
        c->pending = 0;
        gw_pending_release(f->pending, c->addr);
    }
}

/* The next heartbeat of a framed SockJS WebSocket: 25 s after the last frame written. */
static void arm_heartbeat(struct lws *wsi, ws_conn_t *c)
{
    uint64_t now = gw_now_ms(), due = c->last_tx_ms + GW_SOCKJS_HEARTBEAT_MS;

    lws_set_timer_usecs(wsi, (lws_usec_t)(due > now ? due - now : 1) * 1000);
}

/*
 * The authentication timer has done its job: a pending lws timer per session
 * costs CPU. Framed SockJS keeps it for heartbeats.
 */
static void tp_welcomed(void *ctx, gw_session_t *s)
{
    ws_conn_t *c = (ws_conn_t *)s;

    release_pending(ctx, c);
    if (c->mode == WS_SOCKJS_FRAMED)
        arm_heartbeat((struct lws *)s->conn, c);
    else
        lws_set_timer_usecs((struct lws *)s->conn, LWS_SET_TIMER_USEC_CANCEL);
}

static const gw_transport_t ws_transport = {tp_send, tp_close, tp_welcomed};

/* Idle policy for every connection: none (see gw_front_new). */
static const lws_retry_bo_t no_idle_policy = {0};

/* Writes one SockJS frame (text) from a framed SockJS WebSocket. */
static int write_sockjs(struct lws *wsi, gw_sbuf_t *fr)
{
    unsigned char *buf;
    int n;

    if (fr->overflow)
        return -1;
    buf = malloc(LWS_PRE + fr->len);
    if (buf == NULL)
        return -1;
    memcpy(buf + LWS_PRE, fr->data, fr->len);
    n = lws_write(wsi, buf + LWS_PRE, fr->len, LWS_WRITE_TEXT);
    free(buf);
    return n < 0 ? -1 : 0;
}

static int write_framed(gw_front_t *f, struct lws *wsi, ws_conn_t *c)
{
    gw_session_t *s = &c->s;
    gw_sbuf_t fr;
    int rc;

    gw_sbuf_init(&fr, SIZE_MAX / 2);
    if (c->need_open) {
        c->need_open = 0;
        gw_sbuf_puts(&fr, "o");
    } else if (s->qlen) {
        int first = 1;
        /* Everything queued, bounded per frame, in one a[...] message. */
        gw_sbuf_puts(&fr, "a[");
        while (s->qlen && fr.len < 65536) {
            gw_payload_t *p = gw_session_queue_pop(s);
            if (!first)
                gw_sbuf_puts(&fr, ",");
            first = 0;
            gw_sockjs_quote(&fr, (const char *)gw_payload_data(p), p->len);
            gw_payload_unref(p);
        }
        gw_sbuf_puts(&fr, "]");
    } else if (s->closing && !c->close_sent) {
        gw_sockjs_close_frame(&fr, s->close_code, s->close_reason);
        c->close_sent = 1;
    } else if (c->need_hb) {
        c->need_hb = 0;
        gw_sbuf_puts(&fr, "h");
    }
    if (fr.len == 0) {
        gw_sbuf_free(&fr);
        return 1; /* nothing framed to write */
    }
    rc = write_sockjs(wsi, &fr);
    gw_sbuf_free(&fr);
    if (rc != 0)
        return -1;
    c->last_tx_ms = gw_now_ms();
    if (s->qlen || s->closing || f->shutting_down || c->need_hb)
        lws_callback_on_writable(wsi);
    return 0;
}

static int write_next(gw_front_t *f, struct lws *wsi, gw_session_t *s)
{
    ws_conn_t *c = (ws_conn_t *)s;

    if (f->shutting_down && !s->closing) {
        s->closing = 1;
        s->close_code = 1001;
        s->close_reason = "gateway shutting down";
    }
    if (c->mode == WS_SOCKJS_FRAMED) {
        int rc = write_framed(f, wsi, c);
        rx_backpressure(f, s);
        if (rc <= 0)
            return rc;
        if (!s->closing)
            return 0;
        /* c[...] was written: now the WebSocket close frame, as for /ws. */
        s->close_code = 1000;
    }
    if (s->qlen) {
        gw_payload_t *p = gw_session_queue_pop(s);
        int n = lws_write(wsi, gw_payload_data(p), p->len, LWS_WRITE_TEXT);
        gw_payload_unref(p);
        if (n < 0)
            return -1;
        rx_backpressure(f, s);
        if (s->qlen || s->closing || f->shutting_down)
            lws_callback_on_writable(wsi);
        return 0;
    }
    if (f->shutting_down && !s->closing) {
        s->closing = 1;
        s->close_code = 1001;
        s->close_reason = "gateway shutting down";
    }
    if (s->closing) {
        /*
         * The close frame is written here, raw, rather than left to
         * lws_close_reason(): on the libuv event loop lws 4.1 tears the socket
         * down without sending the prepared frame and the browser sees 1006.
         */
        unsigned char buf[LWS_PRE + 128];
        unsigned char *fr = buf + LWS_PRE;
        const char *r = s->close_reason ? s->close_reason : "";
        size_t rl = strlen(r) > 120 ? 120 : strlen(r);
        fr[0] = 0x88; /* FIN + close opcode; server frames are not masked */
        fr[1] = (unsigned char)(rl + 2);
        fr[2] = (unsigned char)(s->close_code >> 8);
        fr[3] = (unsigned char)(s->close_code & 0xff);
        memcpy(fr + 4, r, rl);
        lws_write(wsi, fr, rl + 4, LWS_WRITE_RAW);
        return -1;
    }
    return 0;
}

typedef struct rx_ctx {
    gw_front_t *f;
    gw_session_t *s;
} rx_ctx_t;

static void rx_one(void *ud, const char *msg, size_t len)
{
    rx_ctx_t *c = ud;

    if (!c->s->closing)
        c->f->cbs.on_frame(c->f->ud, c->s, msg, len);
}

/* A whole text message: raw protocol frame, or (framed SockJS) a JSON array of them. */
static void deliver(gw_front_t *f, gw_session_t *s, const char *data, size_t len)
{
    rx_ctx_t c = {f, s};
    int rc;

    if (((ws_conn_t *)s)->mode != WS_SOCKJS_FRAMED) {
        f->cbs.on_frame(f->ud, s, data, len);
        return;
    }
    /* The protocol: an empty message carries nothing and is ignored. */
    if (len == 0)
        return;
    /* sockjs-client sends arrays; a bare JSON string is one message too. */
    if (data[0] == '"') {
        char *arr = malloc(len + 2);
        if (arr == NULL)
            return;
        arr[0] = '[';
        memcpy(arr + 1, data, len);
        arr[len + 1] = ']';
        rc = gw_sockjs_decode(arr, len + 2, (size_t)f->cfg->max_frame_bytes, rx_one, &c);
        free(arr);
    } else {
        rc = gw_sockjs_decode(data, len, (size_t)f->cfg->max_frame_bytes, rx_one, &c);
    }
    /* Each message is bounded by max_frame_bytes, as on /ws; the array by max_post_bytes. */
    if (rc == GW_ERANGE)
        gw_front_close(f, s, 1009, "message too large");
    else if (rc < 0)
        gw_front_close(f, s, 1002, "Broken framing.");
}

static int rx_frames(gw_front_t *f, struct lws *wsi, gw_session_t *s, const char *in, size_t len);

static int on_rx(gw_front_t *f, struct lws *wsi, gw_session_t *s, const char *in, size_t len)
{
    int rc = rx_frames(f, wsi, s, in, len);

    if (!s->closing)
        rx_backpressure(f, s);
    return rc;
}

static int rx_frames(gw_front_t *f, struct lws *wsi, gw_session_t *s, const char *in, size_t len)
{
    int final = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
    size_t max = ((ws_conn_t *)s)->mode == WS_SOCKJS_FRAMED ? (size_t)f->cfg->max_post_bytes
                                                            : (size_t)f->cfg->max_frame_bytes;

    if (s->closing)
        return 0;
    if (lws_frame_is_binary(wsi)) {
        gw_front_close(f, s, 1003, "binary frames are not supported");
        return 0;
    }
    if (final && s->rx == NULL) {
        if (len > max) {
            gw_front_close(f, s, 1009, "frame too large");
            return 0;
        }
        deliver(f, s, in, len);
        return 0;
    }
    if (s->rxlen + len > max) {
        free(s->rx);
        s->rx = NULL;
        s->rxlen = 0;
        gw_front_close(f, s, 1009, "frame too large");
        return 0;
    }
    {
        char *nb = realloc(s->rx, s->rxlen + len + 1);
        if (nb == NULL) {
            gw_front_close(f, s, 1011, "out of memory");
            return 0;
        }
        s->rx = nb;
        memcpy(s->rx + s->rxlen, in, len);
        s->rxlen += len;
    }
    if (final) {
        char *buf = s->rx;
        size_t n = s->rxlen;
        s->rx = NULL;
        s->rxlen = 0;
        deliver(f, s, buf, n);
        free(buf);
    }
    return 0;
}

static void on_shutdown_timeout(uv_timer_t *t)
{
    gw_front_t *f = t->data;

    if (f->shutdown_cb) {
        void (*cb)(void *) = f->shutdown_cb;
        if (f->nsessions)
            gw_warn("front", "%zu session(s) did not close in time", f->nsessions);
        f->shutdown_cb = NULL;
        cb(f->shutdown_ud);
    }
}

/* Small dynamic answers (/health, /metrics): headers and body in one write. */
static int serve_http(gw_front_t *f, struct lws *wsi, const char *path)
{
    unsigned char buf[LWS_PRE + 8192];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf);
    char body[4096];
    const char *ctype = "text/plain";
    int n = f->cbs.http_get ? f->cbs.http_get(f->ud, path, body, sizeof(body), &ctype) : -1;
    unsigned status = HTTP_STATUS_OK;

    if (n < 0 || (size_t)n >= sizeof(body)) {
        status = HTTP_STATUS_NOT_FOUND;
        n = snprintf(body, sizeof(body), "not found\n");
        ctype = "text/plain";
    }
    if (lws_add_http_common_headers(wsi, status, ctype, (lws_filepos_t)n, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"x-content-type-options:",
                                    (const unsigned char *)"nosniff", 7, &p, end) ||
        lws_finalize_http_header(wsi, &p, end))
        return 1;
    if ((size_t)(end - p) < (size_t)n)
        return 1;
    memcpy(p, body, (size_t)n);
    p += n;
    if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_FINAL) < 0)
        return -1;
    if (lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct lws_vhost *vh = lws_get_vhost(wsi);
    gw_front_t *f = vh ? lws_vhost_user(vh) : NULL;
    gw_session_t *s = user;

    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char buf[512];
        int n;
        if (f->shutting_down)
            return 1;
        n = lws_hdr_copy(wsi, buf, sizeof(buf), WSI_TOKEN_GET_URI);
        if (n <= 0 || ws_mode_of(buf) < 0) {
            gw_info("front", "refused WebSocket upgrade on path '%s'", n > 0 ? buf : "");
            return 1;
        }
        if (lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) >= (int)sizeof(buf)) {
            /* An Origin that does not fit is refused, never taken for "no Origin". */
            gw_log_limited(GW_LOG_INFO, "front", "refused WebSocket with an over-long Origin");
            lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN, "Origin header too long");
            return 1;
        }
        n = lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) > 0
                ? lws_hdr_copy(wsi, buf, sizeof(buf), WSI_TOKEN_ORIGIN)
                : 0;
        if (n > 0) {
            if (!origin_allowed(f, buf)) {
                gw_log_limited(GW_LOG_INFO, "front", "refused WebSocket from origin '%s'", buf);
                lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN, "origin not allowed");
                return 1;
            }
        } else if (!f->cfg->allow_no_origin) {
            gw_info("front", "refused WebSocket without Origin");
            lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN, "Origin header required");
            return 1;
        }
        if (f->cbs.session_count(f->ud) >= (size_t)f->cfg->max_sessions ||
            f->nsessions >= (size_t)f->cfg->max_sessions) {
            gw_log_limited(GW_LOG_WARNING, "front", "refused WebSocket: max_sessions (%d) reached",
                           f->cfg->max_sessions);
            return 1;
        }
        gw_http_client_addr(f->cfg, wsi, buf, GW_PENDING_ADDR_MAX);
        if (gw_pending_full(f->pending, buf)) {
            gw_log_limited(GW_LOG_WARNING, "front",
                           "refused WebSocket from %s: too many sessions waiting to authenticate",
                           buf);
            lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
                                   "too many sessions waiting to authenticate");
            return 1;
        }
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED: {
        ws_conn_t *c = user;
        char buf[512];
        int mode;
        if (lws_hdr_copy(wsi, buf, sizeof(buf), WSI_TOKEN_GET_URI) <= 0)
            buf[0] = '\0';
        mode = ws_mode_of(buf);
        memset(c, 0, sizeof(*c));
        c->mode = (uint8_t)(mode < 0 ? WS_NATIVE : mode);
        s->tp = &ws_transport;
        s->tp_ctx = f;
        s->conn = wsi;
        s->id = ++f->next_id;
        s->on_answered = on_answered;
        f->nsessions++;
        c->last_tx_ms = gw_now_ms();
        gw_http_client_addr(f->cfg, wsi, c->addr, sizeof(c->addr));
        lws_set_timer_usecs(wsi, (lws_usec_t)f->cfg->auth_timeout_ms * 1000);
        if (c->mode == WS_SOCKJS_FRAMED) {
            c->need_open = 1;
            lws_callback_on_writable(wsi);
        }
        f->cbs.on_open(f->ud, s);
        /* Checked at the upgrade; another may have taken the last place since. */
        if (gw_pending_acquire(f->pending, c->addr) == 0)
            c->pending = 1;
        else
            gw_front_close(f, s, 1013, "too many sessions waiting to authenticate");
        return 0;
    }
    case LWS_CALLBACK_RECEIVE: return on_rx(f, wsi, s, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE: return write_next(f, wsi, s);
    case LWS_CALLBACK_TIMER: {
        ws_conn_t *c = user;
        if (s->user == NULL && !s->closing) {
            gw_info("front", "session %llu: no hello within %d ms", (unsigned long long)s->id,
                    f->cfg->auth_timeout_ms);
            gw_front_close(f, s, 4408, "authentication timeout");
        }
        if (c->mode == WS_SOCKJS_FRAMED && !s->closing) {
            /* SockJS heartbeat: "h" after 25 s without a frame keeps proxies and the client happy.
             */
            if (gw_now_ms() - c->last_tx_ms >= GW_SOCKJS_HEARTBEAT_MS) {
                c->need_hb = 1;
                c->last_tx_ms = gw_now_ms();
                lws_callback_on_writable(wsi);
            }
            arm_heartbeat(wsi, c);
        }
        return 0;
    }
    case LWS_CALLBACK_HTTP: {
        int rc;
        if (f->http && gw_http_callback(f->http, wsi, (int)reason, in, len, &rc))
            return rc;
        if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
            lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
            /* Both framings at once: a request smuggling attempt behind a proxy. */
            lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, "Content-Length with chunked");
            return -1;
        }
        return serve_http(f, wsi, (const char *)in);
    }
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    case LWS_CALLBACK_HTTP_WRITEABLE:
    case LWS_CALLBACK_CLOSED_HTTP: {
        int rc;
        if (f && f->http && gw_http_callback(f->http, wsi, (int)reason, in, len, &rc))
            return rc;
        break;
    }
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: return 0;
    case LWS_CALLBACK_CLOSED:
        /* lws also reports upgrades refused in FILTER_PROTOCOL_CONNECTION. */
        if (s == NULL || s->conn != wsi)
            return 0;
        f->cbs.on_close(f->ud, s);
        release_pending(f, (ws_conn_t *)s);
        free_queue(s);
        f->nsessions--;
        /* Finish the shutdown from the loop, never inside an lws callback. */
        if (f->shutting_down && f->nsessions == 0 && f->shutdown_cb)
            uv_timer_start(&f->shutdown_timer, on_shutdown_timeout, 0, 0);
        return 0;
    default: break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

int gw_front_new(uv_loop_t *loop, const gw_config_t *cfg, const gw_front_cbs_t *cbs, void *ud,
                 gw_front_t **out)
{
    struct lws_context_creation_info info;
    gw_front_t *f = calloc(1, sizeof(*f));
    int lvl = LLL_ERR | LLL_WARN;

    if (f == NULL)
        return GW_ENOMEM;
    f->loop = loop;
    f->cfg = cfg;
    f->cbs = *cbs;
    f->ud = ud;
    if (gw_log_level <= GW_LOG_DEBUG)
        lvl |= LLL_NOTICE | LLL_INFO;
    lws_set_log_level(lvl, lws_log_emit);

    f->protocols[0].name = "imgw.v1";
    f->protocols[0].callback = callback;
    f->protocols[0].per_session_data_size = sizeof(ws_conn_t);
    f->protocols[0].rx_buffer_size = (size_t)cfg->rx_buffer_bytes;
    /* protocols[1] stays zeroed: the list terminator (4.1 has no LWS_PROTOCOL_LIST_TERM). */

    if (cfg->web_root[0]) {
        snprintf(f->demo_origin, sizeof(f->demo_origin), "%s/demo", cfg->web_root);
        snprintf(f->client_origin, sizeof(f->client_origin), "%s", cfg->web_root);
        f->mounts[0].mountpoint = "/demo";
        f->mounts[0].mountpoint_len = 5;
        f->mounts[0].origin = f->demo_origin;
        f->mounts[0].def = "index.html";
        f->mounts[0].origin_protocol = LWSMPRO_FILE;
        f->mounts[0].cache_max_age = 60;
        f->mounts[0].cache_reusable = 1;
        f->mounts[0].cache_revalidate = 1;
        f->mounts[0].mount_next = &f->mounts[1];
        f->mounts[1].mountpoint = "/client";
        f->mounts[1].mountpoint_len = 7;
        f->mounts[1].origin = f->client_origin;
        f->mounts[1].origin_protocol = LWSMPRO_FILE;
        f->mounts[1].cache_max_age = 60;
        f->mounts[1].cache_reusable = 1;
        f->mounts[1].cache_revalidate = 1;
    }

    memset(&info, 0, sizeof(info));
    f->foreign[0] = loop;
    info.foreign_loops = f->foreign;
    /* lws closes a text frame that is not UTF-8 with 1007 before we see it. */
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8;
    /*
     * With IPv6 enabled, lws 4.1 binds an IPv4 iface such as 127.0.0.1 to the
     * wildcard address. An IPv4 listen_host therefore turns IPv6 off, so that
     * a loopback-only gateway (development mode) is really loopback-only.
     */
    if (strchr(cfg->listen_host, ':') == NULL)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.port = cfg->listen_port;
    info.iface = cfg->listen_host;
    info.protocols = f->protocols;
    info.mounts = cfg->web_root[0] ? f->mounts : NULL;
    info.user = f;
    info.vhost_name = "imgw";
    info.count_threads = 1;
    /*
     * No fd_limit_per_thread: below the process's open-file limit, lws 4.1
     * looks sockets up by a linear scan of its table on every event
     * (wsi_from_fd), which at 20,000 sessions cost more than the messages.
     * main.c keeps max_sessions under the limit instead.
     */
    info.timeout_secs = 10;
    /* Query strings carry whole messages for JSONP sends (percent-encoded: 3 bytes a byte). */
    {
        long hd = 3L * cfg->max_body_bytes + 4096;
        info.max_http_header_data = (unsigned short)(hd > 65535 ? 65535 : (hd < 4096 ? 4096 : hd));
    }
    /*
     * No lws validity timers. lws 4.1 gives every connection a default idle
     * policy (PING after 300 s without traffic from the peer, hang up at 310 s)
     * kept in one sorted list per thread: arming or re-arming it (each open,
     * each ping sent) walks that whole list, so at 19,800 sessions opening
     * them cost ~9 CPU s and every 300 s the pings cost ~15 CPU s in bursts
     * (docs/performance.md, "Scale-out: 5 gateways"). A policy whose
     * secs_since_valid_hangup is 0 arms nothing; the kernel's TCP keepalive
     * finds dead peers instead (after 300 s idle, 3 probes 30 s apart), with
     * no work in this process. Clients ping at the application level (op
     * "ping"), which the router answers.
     */
    info.retry_and_idle_policy = &no_idle_policy;
    info.ka_time = 300;
    info.ka_probes = 3;
    info.ka_interval = 30;

    if (gw_pending_new((size_t)cfg->max_pending_sessions, (size_t)cfg->max_pending_per_addr,
                       &f->pending) != 0) {
        free(f);
        return GW_ENOMEM;
    }
    f->ctx = lws_create_context(&info);
    if (f->ctx == NULL) {
        gw_error("front", "cannot start the WebSocket server on %s:%d", cfg->listen_host,
                 cfg->listen_port);
        gw_pending_free(f->pending);
        free(f);
        return GW_EIO;
    }
    /*
     * lws 4.1 logs a failed bind and still creates the context (without the
     * vhost's listener): a gateway that serves nothing must not say
     * "listening".
     */
    f->vh = lws_get_vhost_by_name(f->ctx, "imgw");
    f->port = f->vh ? lws_get_vhost_listen_port(f->vh) : -1;
    if (f->port <= 0) {
        gw_error("front",
                 "cannot listen on %s:%d (address in use, or not an address of this "
                 "machine)",
                 cfg->listen_host, cfg->listen_port);
        lws_context_destroy(f->ctx);
        gw_pending_free(f->pending);
        free(f);
        return GW_EIO;
    }
    {
        gw_http_env_t env = {loop, cfg, &f->cbs, ud, &f->next_id, origin_allowed_cb, f, f->pending};
        if (gw_http_new(&env, &f->http) != 0 || gw_api_new(f->http, &f->api) != 0 ||
            gw_upload_new(f->http, f->api, &f->upload) != 0 ||
            gw_sockjs_new(f->http, &f->sj) != 0) {
            gw_front_destroy(f);
            gw_front_free(f);
            return GW_ENOMEM;
        }
    }
    uv_timer_init(loop, &f->shutdown_timer);
    f->shutdown_timer.data = f;
    f->timer_init = 1;
    gw_info("front", "listening on %s:%d (WebSocket at /ws%s)", cfg->listen_host, f->port,
            cfg->web_root[0] ? ", demo at /demo/" : "");
    *out = f;
    return 0;
}

int gw_front_port(const gw_front_t *f)
{
    return f->port;
}

void gw_front_shutdown(gw_front_t *f, void (*cb)(void *ud), void *ud)
{
    f->shutting_down = 1;
    f->shutdown_cb = cb;
    f->shutdown_ud = ud;
    gw_api_shutdown(f->api);
    gw_sockjs_shutdown(f->sj);
    if (f->nsessions == 0) {
        uv_timer_start(&f->shutdown_timer, on_shutdown_timeout, 0, 0);
        return;
    }
    lws_callback_on_writable_all_protocol(f->ctx, &f->protocols[0]);
    uv_timer_start(&f->shutdown_timer, on_shutdown_timeout, 3000, 0);
}

void gw_front_destroy(gw_front_t *f)
{
    if (f->ctx == NULL)
        return;
    if (f->timer_init) {
        uv_close((uv_handle_t *)&f->shutdown_timer, NULL);
        f->timer_init = 0;
    }
    lws_context_destroy(f->ctx);
    f->ctx = NULL;
    if (f->http)
        gw_http_destroy(f->http);
}

void gw_front_free(gw_front_t *f)
{
    if (f == NULL)
        return;
    gw_sockjs_free(f->sj);
    gw_upload_free(f->upload);
    gw_api_free(f->api);
    gw_http_free(f->http);
    gw_pending_free(f->pending);
    free(f);
}
