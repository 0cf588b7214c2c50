/*
 * sockjs.c - SockJS 0.3 framing and the SockJS HTTP transports.
 *
 * A SockJS session is a gw_session_t whose frames wait in the session's
 * bounded queue until a receiving request (xhr, xhr_streaming, jsonp,
 * eventsource, htmlfile) takes them. At most one receiver is attached at a
 * time; a second one gets c[2010]. A session with no receiver for
 * GW_SOCKJS_DISCONNECT_MS is closed, as the protocol's disconnect delay says.
 */
#include "sockjs.h"
#include "gw.h"
#include "log.h"
#include "metrics.h"
#include "text.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

/* ---- framing (pure) ---------------------------------------------------------------- */

/*
 * The three-byte UTF-8 sequences SockJS servers escape: U+200C-200F,
 * U+2028-202F, U+2060-206F (invisible or line-breaking in some JavaScript
 * engines) and U+FFF0-FFFF.
 */
static int needs_escape3(unsigned a, unsigned b, unsigned c)
{
    if (a == 0xE2 && b == 0x80)
        return (c >= 0x8C && c <= 0x8F) || (c >= 0xA8 && c <= 0xAF);
    if (a == 0xE2 && b == 0x81)
        return c >= 0xA0 && c <= 0xAF;
    if (a == 0xEF && b == 0xBF)
        return c >= 0xB0 && c <= 0xBF;
    return 0;
}

void gw_sockjs_quote(gw_sbuf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;

    gw_sbuf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        size_t elen = 0;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        } else if (i + 2 < n &&
                   needs_escape3(c, (unsigned char)s[i + 1], (unsigned char)s[i + 2])) {
            unsigned cp = ((unsigned)(c & 0x0F) << 12) | ((unsigned)(s[i + 1] & 0x3F) << 6) |
                          (unsigned)(s[i + 2] & 0x3F);
            esc[0] = '\\';
            esc[1] = 'u';
            for (int k = 0; k < 4; k++)
                esc[2 + k] = hex[(cp >> (12 - 4 * k)) & 15];
            elen = 6;
        }
        if (elen) {
            gw_sbuf_append(b, s + run, i - run);
            gw_sbuf_append(b, esc, elen);
            if (elen == 6 && c >= 0xE0)
                i += 2;
            run = i + 1;
        }
    }
    gw_sbuf_append(b, s + run, n - run);
    gw_sbuf_append(b, "\"", 1);
}

void gw_sockjs_close_frame(gw_sbuf_t *b, int code, const char *reason)
{
    gw_sbuf_printf(b, "c[%d,", code);
    gw_sockjs_quote(b, reason ? reason : "", reason ? strlen(reason) : 0);
    gw_sbuf_puts(b, "]");
}

static size_t ws_skip(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;

    for (int k = 0; k < 4; k++) {
        char c = s[k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Decodes the JSON string at in[*i] (a '"') into out; returns its length or -1. */
static long decode_string(const char *in, size_t n, size_t *i, char *out, size_t max)
{
    size_t o = 0, k = *i + 1;

    while (k < n) {
        unsigned char c = (unsigned char)in[k];
        char enc[4];
        size_t elen = 0;
        if (c == '"') {
            *i = k + 1;
            if (!gw_utf8_valid(out, o))
                return -1;
            return (long)o;
        }
        if (c < 0x20)
            return -1;
        if (c != '\\') {
            enc[0] = (char)c;
            elen = 1;
            k++;
        } else {
            unsigned cp;
            if (k + 1 >= n)
                return -1;
            switch (in[k + 1]) {
            case '"': cp = '"'; break;
            case '\\': cp = '\\'; break;
            case '/': cp = '/'; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u':
                if (k + 6 > n || hex4(in + k + 2, &cp) != 0)
                    return -1;
                k += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (k + 8 > n || in[k + 2] != '\\' || in[k + 3] != 'u' ||
                        hex4(in + k + 4, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                        return -1;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    k += 6;
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return -1;
                }
                break;
            default: return -1;
            }
            k += 2;
            if (cp == 0)
                return -1; /* protocol frames are text; NUL has no place in them */
            if (cp < 0x80) {
                enc[0] = (char)cp;
                elen = 1;
            } else if (cp < 0x800) {
                enc[0] = (char)(0xC0 | (cp >> 6));
                enc[1] = (char)(0x80 | (cp & 0x3F));
                elen = 2;
            } else if (cp < 0x10000) {
                enc[0] = (char)(0xE0 | (cp >> 12));
                enc[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                enc[2] = (char)(0x80 | (cp & 0x3F));
                elen = 3;
            } else {
                enc[0] = (char)(0xF0 | (cp >> 18));
                enc[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                enc[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
                enc[3] = (char)(0x80 | (cp & 0x3F));
                elen = 4;
            }
        }
        if (o + elen > max)
            return -2;
        memcpy(out + o, enc, elen);
        o += elen;
    }
    return -1;
}

static int decode_pass(const char *in, size_t n, size_t max_msg, char *buf,
                       void (*cb)(void *, const char *, size_t), void *ud)
{
    size_t i = ws_skip(in, n, 0);
    int count = 0;

    if (i >= n || in[i] != '[')
        return GW_EINVAL;
    i = ws_skip(in, n, i + 1);
    if (i < n && in[i] == ']')
        return ws_skip(in, n, i + 1) == n ? 0 : GW_EINVAL;
    for (;;) {
        long len;
        if (i >= n || in[i] != '"')
            return GW_EINVAL;
        len = decode_string(in, n, &i, buf, max_msg);
        if (len < 0)
            return len == -2 ? GW_ERANGE : GW_EINVAL;
        if (cb)
            cb(ud, buf, (size_t)len);
        count++;
        i = ws_skip(in, n, i);
        if (i < n && in[i] == ',') {
            i = ws_skip(in, n, i + 1);
            continue;
        }
        if (i < n && in[i] == ']')
            break;
        return GW_EINVAL;
    }
    return ws_skip(in, n, i + 1) == n ? count : GW_EINVAL;
}

int gw_sockjs_decode(const char *in, size_t n, size_t max_msg,
                     void (*cb)(void *ud, const char *msg, size_t len), void *ud)
{
    char *buf = malloc(max_msg + 1);
    int rc;

    if (buf == NULL)
        return GW_ENOMEM;
    rc = decode_pass(in, n, max_msg, buf, NULL, NULL);
    if (rc > 0 && cb)
        rc = decode_pass(in, n, max_msg, buf, cb, ud);
    free(buf);
    return rc;
}

static const char *const prefixes[] = {"/sockjs/getUserMsg", "/sockjs/getChatList", "/sockjs/chat"};

/*
 * Server and session ids: any printable text without '.' or '/', as the
 * protocol says (a decoded %20 is a space like any other), at most 64 bytes;
 * a session id has at least GW_SOCKJS_SID_MIN (sockjs-client makes 8).
 */
static int id_ok(const char *s, size_t n, size_t min)
{
    if (n < min || n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '.' || s[i] == '/' || (unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return 0;
    return gw_utf8_valid(s, n);
}

int gw_sockjs_parse_path(const char *path, char *session, size_t slen, char *transport, size_t tlen)
{
    const char *rest = NULL, *a, *b;
    size_t n1, n2, n3;

    for (size_t i = 0; i < GW_ARRAY_SIZE(prefixes); i++) {
        size_t pl = strlen(prefixes[i]);
        if (strncmp(path, prefixes[i], pl) == 0 && (path[pl] == '\0' || path[pl] == '/')) {
            rest = path + pl;
            break;
        }
    }
    if (rest == NULL)
        return GW_SOCKJS_P_BAD;
    if (rest[0] == '\0' || strcmp(rest, "/") == 0)
        return GW_SOCKJS_P_GREETING;
    rest++;
    if (strcmp(rest, "info") == 0)
        return GW_SOCKJS_P_INFO;
    if (strcmp(rest, "websocket") == 0)
        return GW_SOCKJS_P_RAW_WS;
    if (strncmp(rest, "iframe", 6) == 0) {
        size_t l = strlen(rest);
        if (l >= 11 && strcmp(rest + l - 5, ".html") == 0 &&
            strspn(rest + 6, "0123456789-.abcdefghijklmnopqrstuvwxyz_") == l - 6)
            return GW_SOCKJS_P_IFRAME;
        return GW_SOCKJS_P_BAD;
    }
    a = strchr(rest, '/');
    if (a == NULL)
        return GW_SOCKJS_P_BAD;
    b = strchr(a + 1, '/');
    if (b == NULL)
        return GW_SOCKJS_P_BAD;
    n1 = (size_t)(a - rest);
    n2 = (size_t)(b - a - 1);
    n3 = strlen(b + 1);
    if (!id_ok(rest, n1, 1) || !id_ok(a + 1, n2, 1) || n3 == 0 || strchr(b + 1, '/') ||
        n2 >= slen || n3 >= tlen)
        return GW_SOCKJS_P_BAD;
    memcpy(session, a + 1, n2);
    session[n2] = '\0';
    memcpy(transport, b + 1, n3 + 1);
    return n2 < GW_SOCKJS_SID_MIN ? GW_SOCKJS_P_SHORT_ID : GW_SOCKJS_P_SESSION;
}

/* ---- sessions ------------------------------------------------------------------------- */

#define SJS_BUCKETS 1024

typedef struct sjs sjs_t;

struct gw_sockjs {
    gw_http_t *h;
    int shutting_down;
    sjs_t *buckets[SJS_BUCKETS];
    sjs_t *all;
    size_t count;
};

struct sjs {
    gw_session_t s; /* first: the transport casts */
    gw_sockjs_t *m;
    sjs_t *hnext, *next, *prev;
    char sid[72];
    char origin[256];               /* the Origin that created the session, or "" */
    char addr[GW_PENDING_ADDR_MAX]; /* the client address that created it */
    gw_http_req_t *recv;
    uint64_t created_ms, gone_ms, hb_ms, dead_ms;
    size_t sent; /* bytes on the current streaming receiver */
    uint8_t opened, dead, hb, pending;
};

enum { R_XHR = 1, R_JSONP, R_XHR_STREAM, R_EVENTSOURCE, R_HTMLFILE };

static int streaming(int kind)
{
    return kind >= R_XHR_STREAM;
}

static unsigned sid_hash(const char *s)
{
    uint32_t x = 2166136261u;

    for (; *s; s++)
        x = (x ^ (unsigned char)*s) * 16777619u;
    return x % SJS_BUCKETS;
}

static sjs_t *find(gw_sockjs_t *m, const char *sid)
{
    for (sjs_t *x = m->buckets[sid_hash(sid)]; x; x = x->hnext)
        if (strcmp(x->sid, sid) == 0)
            return x;
    return NULL;
}

static void sjs_free(sjs_t *x)
{
    gw_sockjs_t *m = x->m;
    sjs_t **pp = &m->buckets[sid_hash(x->sid)];

    while (*pp && *pp != x)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = x->hnext;
    if (x->prev)
        x->prev->next = x->next;
    else
        m->all = x->next;
    if (x->next)
        x->next->prev = x->prev;
    if (x->recv)
        x->recv->owner = NULL;
    if (x->pending)
        gw_pending_release(gw_http_env(m->h)->pending, x->addr);
    gw_session_queue_free(&x->s);
    m->count--;
    free(x);
}

/* The router forgets the session; frames and the close frame may still be fetched. */
static void sjs_kill(sjs_t *x)
{
    const gw_http_env_t *e = gw_http_env(x->m->h);

    if (x->dead)
        return;
    x->dead = 1;
    x->dead_ms = gw_now_ms();
    if (!x->s.closing) {
        x->s.closing = 1;
        x->s.close_code = 3000;
        x->s.close_reason = "Go away!";
    }
    e->cbs->on_close(e->ud, &x->s);
}

static void sjs_tp_send(void *ctx, gw_session_t *s, gw_payload_t *p)
{
    sjs_t *x = (sjs_t *)s;

    GW_UNUSED(ctx);
    if (s->closing)
        return;
    if (gw_session_queue_push(s, p, (uint32_t)gw_http_env(x->m->h)->cfg->session_queue_max) != 0) {
        gw_warn("sockjs", "session %" PRIu64 ": outbound queue full (%u frames), closing", s->id,
                s->qlen);
        s->closing = 1;
        s->close_code = 1008;
        s->close_reason = "overloaded";
    }
    if (x->recv)
        gw_http_wake(x->recv);
}

static void sjs_tp_welcomed(void *ctx, gw_session_t *s)
{
    sjs_t *x = (sjs_t *)s;

    GW_UNUSED(ctx);
    if (x->pending) {
        x->pending = 0;
        gw_pending_release(gw_http_env(x->m->h)->pending, x->addr);
    }
}

static void sjs_tp_close(void *ctx, gw_session_t *s, int code, const char *reason)
{
    sjs_t *x = (sjs_t *)s;

    GW_UNUSED(ctx);
    if (s->closing)
        return;
    s->closing = 1;
    s->close_code = (uint16_t)code;
    s->close_reason = reason;
    sjs_tp_welcomed(ctx, s); /* a closing session holds no pending place */
    /* on_close runs from the timer (not inside the router's call); the receiver gets c[...]. */
    if (x->recv)
        gw_http_wake(x->recv);
}

static const gw_transport_t sjs_transport = {sjs_tp_send, sjs_tp_close, sjs_tp_welcomed};

/* ---- writing to receivers --------------------------------------------------------------- */

static const char no_cache[] = "no-store, no-cache, no-transform, must-revalidate, max-age=0";

static int std_headers(const gw_http_req_t *r, gw_http_hdr_t *hdrs, const char *cache)
{
    int n = gw_http_cors(r, hdrs, 1);

    hdrs[n++] = (gw_http_hdr_t){"cache-control:", cache ? cache : no_cache};
    hdrs[n].name = NULL;
    return n;
}

/* Appends one SockJS frame, wrapped for the receiver's transport. */
static void wrap(gw_sbuf_t *out, const gw_http_req_t *r, const char *frame, size_t n)
{
    switch (r->kind) {
    case R_XHR:
    case R_XHR_STREAM:
        gw_sbuf_append(out, frame, n);
        gw_sbuf_puts(out, "\n");
        break;
    case R_EVENTSOURCE:
        gw_sbuf_puts(out, "data: ");
        gw_sbuf_append(out, frame, n);
        gw_sbuf_puts(out, "\r\n\r\n");
        break;
    case R_HTMLFILE:
        gw_sbuf_puts(out, "<script>\np(");
        gw_sockjs_quote(out, frame, n);
        gw_sbuf_puts(out, ");\n</script>\r\n");
        break;
    case R_JSONP:
        gw_sbuf_printf(out, "/**/%s(", r->cb);
        gw_sockjs_quote(out, frame, n);
        gw_sbuf_puts(out, ");\r\n");
        break;
    }
}

static void wrap_close(gw_sbuf_t *out, const gw_http_req_t *r, int code, const char *reason)
{
    gw_sbuf_t f;

    gw_sbuf_init(&f, 512);
    gw_sockjs_close_frame(&f, code, reason);
    wrap(out, r, f.data, f.len);
    gw_sbuf_free(&f);
}

static const char *ctype_of(int kind)
{
    switch (kind) {
    case R_EVENTSOURCE: return "text/event-stream";
    case R_HTMLFILE: return "text/html; charset=UTF-8";
    default: return "application/javascript; charset=UTF-8";
    }
}

/* The bytes a streaming transport sends before any frame. */
static void prelude(gw_sbuf_t *out, const gw_http_req_t *r)
{
    switch (r->kind) {
    case R_XHR_STREAM:
        for (int i = 0; i < 2048; i++)
            gw_sbuf_append(out, "h", 1);
        gw_sbuf_puts(out, "\n");
        break;
    case R_EVENTSOURCE: gw_sbuf_puts(out, "\r\n"); break;
    case R_HTMLFILE: {
        size_t start = out->len;
        /* The protocol's page, as its documentation gives it. */
        gw_sbuf_printf(
            out,
            "<!doctype html>\n<html><head>\n"
            "  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n"
            "  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n"
            "</head><body><h2>Don't panic!</h2>\n"
            "  <script>\n"
            "    document.domain = document.domain;\n"
            "    var c = parent.%s;\n"
            "    c.start();\n"
            "    function p(d) {c.message(d);};\n"
            "    window.onload = function() {c.stop();};\n"
            "  </script>\n",
            r->cb);
        /* Old browsers render nothing of a streamed page before 1 KiB. */
        while (out->len - start < 1024 && !out->overflow)
            gw_sbuf_append(out, " ", 1);
        gw_sbuf_puts(out, "\r\n\r\n");
        break;
    }
    default: break;
    }
}

/*
 * Writes what the session has for its receiver r (from r's own callback):
 * the open frame, queued messages, a heartbeat, the close frame. A polling
 * receiver is answered and detached as soon as there is one frame for it.
 */
static int pump(gw_http_req_t *r)
{
    sjs_t *x = r->owner;
    gw_sbuf_t out;
    int closing_now = 0, rc;

    if (x == NULL) {
        /* The session was freed under a waiting receiver. */
        gw_sbuf_init(&out, 4096);
        wrap_close(&out, r, 3000, "Go away!");
        rc = streaming(r->kind) ? gw_http_stream_end(r, out.data, out.len)
                                : gw_http_reply(r, 200, ctype_of(r->kind), NULL, out.data, out.len);
        gw_sbuf_free(&out);
        return rc;
    }
    gw_sbuf_init(&out, SIZE_MAX / 2);
    if (!x->opened) {
        x->opened = 1;
        wrap(&out, r, "o", 1);
    } else if (x->s.qlen) {
        gw_sbuf_t f;
        gw_payload_t *p;
        int first = 1;
        gw_sbuf_init(&f, SIZE_MAX / 2);
        gw_sbuf_puts(&f, "a[");
        /* Bounded batch: the rest goes in the next frame. */
        while (f.len < 65536 && (p = gw_session_queue_pop(&x->s)) != NULL) {
            if (!first)
                gw_sbuf_puts(&f, ",");
            first = 0;
            gw_sockjs_quote(&f, (const char *)gw_payload_data(p), p->len);
            gw_payload_unref(p);
        }
        gw_sbuf_puts(&f, "]");
        wrap(&out, r, f.data, f.len);
        gw_sbuf_free(&f);
    } else if (x->s.closing) {
        wrap_close(&out, r, x->s.close_code, x->s.close_reason);
        closing_now = 1;
    } else if (x->hb) {
        wrap(&out, r, "h", 1);
    }
    x->hb = 0;
    if (out.len)
        x->hb_ms = gw_now_ms() + GW_SOCKJS_HEARTBEAT_MS;
    if (out.len == 0) {
        gw_sbuf_free(&out);
        return 0;
    }
    if (!streaming(r->kind)) {
        gw_http_hdr_t hdrs[8];
        std_headers(r, hdrs, NULL);
        x->recv = NULL;
        x->gone_ms = gw_now_ms();
        r->owner = NULL;
        rc = gw_http_reply(r, 200, ctype_of(r->kind), hdrs, out.data, out.len);
        gw_sbuf_free(&out);
        return rc;
    }
    x->sent += out.len;
    if (closing_now || x->sent >= (size_t)gw_http_env(x->m->h)->cfg->sockjs_response_limit) {
        /* The client opens a new receiver after this one ends. */
        x->recv = NULL;
        x->gone_ms = gw_now_ms();
        r->owner = NULL;
        rc = gw_http_stream_end(r, out.data, out.len);
        gw_sbuf_free(&out);
        return rc;
    }
    rc = gw_http_stream_write(r, out.data, out.len);
    gw_sbuf_free(&out);
    /* More may be waiting (a bounded batch, or the close after the last messages). */
    if (rc == 0 && (x->s.qlen || x->s.closing))
        gw_http_wake(r);
    return rc;
}

static int sjs_writable(gw_http_req_t *r)
{
    return pump(r);
}

/*
 * A receiver's connection closed before its answer ended: the browser went
 * away (a reload, a closed tab) or the network broke. Frames may have been
 * lost, so the session ends, as the protocol says: the next receiver gets
 * c[1002,"Connection interrupted"].
 */
static void sjs_gone(gw_http_req_t *r)
{
    sjs_t *x = r->owner;

    if (x && x->recv == r) {
        x->recv = NULL;
        x->gone_ms = gw_now_ms();
        if (!x->s.closing)
            gw_session_close(&x->s, 1002, "Connection interrupted");
    }
    r->owner = NULL;
}

/* ---- requests --------------------------------------------------------------------------- */

static int text_reply(gw_http_req_t *r, unsigned status, const char *text)
{
    gw_http_hdr_t hdrs[8];

    std_headers(r, hdrs, NULL);
    return gw_http_reply(r, status, "text/plain; charset=UTF-8", hdrs, text, strlen(text));
}

/* An Expires one year ahead, for answers that may be cached. */
static void expires_year(char *buf, size_t len)
{
    time_t t = time(NULL) + 31536000;
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static int preflight(gw_http_req_t *r, const char *methods)
{
    gw_http_hdr_t hdrs[10];
    char reqh[512], expires[64];
    int n = gw_http_cors(r, hdrs, 1);

    expires_year(expires, sizeof(expires));
    hdrs[n++] = (gw_http_hdr_t){"cache-control:", "public, max-age=31536000"};
    hdrs[n++] = (gw_http_hdr_t){"expires:", expires};
    hdrs[n++] = (gw_http_hdr_t){"access-control-max-age:", "31536000"};
    hdrs[n++] = (gw_http_hdr_t){"access-control-allow-methods:", methods};
    /* Echoed only when it is a plain list of header names. */
    if (gw_http_header(r, GW_HTTP_H_AC_REQUEST_HEADERS, reqh, sizeof(reqh)) > 0 &&
        strspn(reqh, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_, ") ==
            strlen(reqh))
        hdrs[n++] = (gw_http_hdr_t){"access-control-allow-headers:", reqh};
    hdrs[n].name = NULL;
    return gw_http_reply(r, 204, NULL, hdrs, "", 0);
}

/* The allowed origins as SockJS writes them ("host:port" patterns), for /info. */
static void origins_json(gw_sbuf_t *b, const char *list)
{
    int first = 1;

    gw_sbuf_puts(b, "[");
    while (*list) {
        size_t n;
        while (*list == ' ' || *list == ',')
            list++;
        n = strcspn(list, ", ");
        if (n == 0)
            break;
        if (!first)
            gw_sbuf_puts(b, ",");
        first = 0;
        if (n == 1 && list[0] == '*') {
            gw_sbuf_puts(b, "\"*:*\"");
        } else {
            const char *host = strstr(list, "://");
            host = (host && host < list + n) ? host + 3 : list;
            gw_sockjs_quote(b, host, n - (size_t)(host - list));
        }
        list += n;
    }
    gw_sbuf_puts(b, "]");
}

static int info(gw_http_req_t *r)
{
    gw_http_hdr_t hdrs[8];
    uint32_t entropy = 0;
    gw_sbuf_t b;
    int rc;

    if (r->method == GW_HTTP_OPTIONS)
        return preflight(r, "OPTIONS, GET");
    if (r->method != GW_HTTP_GET)
        return text_reply(r, 405, "Method not allowed");
    gw_http_random(&entropy, sizeof(entropy));
    gw_sbuf_init(&b, 65536);
    gw_sbuf_puts(&b, "{\"websocket\":true,\"cookie_needed\":false,\"origins\":");
    origins_json(&b, gw_http_env(r->h)->cfg->allowed_origins);
    gw_sbuf_printf(&b, ",\"entropy\":%" PRIu32 "}", entropy);
    std_headers(r, hdrs, NULL);
    rc = gw_http_reply(r, 200, "application/json; charset=UTF-8", hdrs, b.data, b.len);
    gw_sbuf_free(&b);
    return rc;
}

static void html_escape(gw_sbuf_t *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': gw_sbuf_puts(b, "&amp;"); break;
        case '<': gw_sbuf_puts(b, "&lt;"); break;
        case '>': gw_sbuf_puts(b, "&gt;"); break;
        case '"': gw_sbuf_puts(b, "&quot;"); break;
        case '\'': gw_sbuf_puts(b, "&#39;"); break;
        default: gw_sbuf_append(b, s, 1);
        }
    }
}

/* frame-ancestors for iframe.html: the allowed origins ('*' only when every origin is). */
static void frame_ancestors(gw_sbuf_t *b, const char *list)
{
    gw_sbuf_puts(b, "frame-ancestors 'self'");
    while (*list) {
        size_t n;
        while (*list == ' ' || *list == ',')
            list++;
        n = strcspn(list, ", ;'\"");
        if (n == 0)
            break;
        gw_sbuf_puts(b, " ");
        gw_sbuf_append(b, list, n);
        list += n;
        list += strspn(list, ";'\"");
    }
}

static int iframe(gw_http_req_t *r)
{
    const gw_config_t *cfg = gw_http_env(r->h)->cfg;
    gw_http_hdr_t hdrs[8];
    char etag[40], inm[64], expires[64];
    uint64_t x = 1469598103934665603ull;
    gw_sbuf_t b, csp;
    int n = 0, rc;

    if (r->method != GW_HTTP_GET)
        return text_reply(r, 405, "Method not allowed");
    gw_sbuf_init(&b, 8192);
    gw_sbuf_puts(&b, "<!DOCTYPE html>\n<html>\n<head>\n"
                     "  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n"
                     "  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n"
                     "  <script src=\"");
    html_escape(&b, cfg->sockjs_client_url);
    gw_sbuf_puts(&b, "\"></script>\n"
                     "  <script>\n"
                     "    document.domain = document.domain;\n"
                     "    SockJS.bootstrap_iframe();\n"
                     "  </script>\n"
                     "</head>\n<body>\n"
                     "  <h2>Don't panic!</h2>\n"
                     "  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n"
                     "</body>\n</html>\n");
    for (size_t i = 0; i < b.len; i++)
        x = (x ^ (unsigned char)b.data[i]) * 1099511628211ull;
    snprintf(etag, sizeof(etag), "\"%016" PRIx64 "\"", x);
    expires_year(expires, sizeof(expires));
    gw_sbuf_init(&csp, 8192);
    frame_ancestors(&csp, cfg->allowed_origins);
    hdrs[n++] = (gw_http_hdr_t){"cache-control:", "public, max-age=31536000"};
    hdrs[n++] = (gw_http_hdr_t){"expires:", expires};
    hdrs[n++] = (gw_http_hdr_t){"etag:", etag};
    hdrs[n++] =
        (gw_http_hdr_t){"content-security-policy:", csp.data ? csp.data : "frame-ancestors 'self'"};
    hdrs[n].name = NULL;
    if (gw_http_header(r, GW_HTTP_H_IF_NONE_MATCH, inm, sizeof(inm)) > 0 && strcmp(inm, etag) == 0)
        rc = gw_http_reply(r, 304, NULL, hdrs, "", 0);
    else
        rc = gw_http_reply(r, 200, "text/html; charset=UTF-8", hdrs, b.data, b.len);
    gw_sbuf_free(&csp);
    gw_sbuf_free(&b);
    return rc;
}

/* Answers a receiver that cannot attach (closed session, another receiver) with one frame. */
static int one_frame(gw_http_req_t *r, int code, const char *reason)
{
    gw_http_hdr_t hdrs[8];
    gw_sbuf_t out;
    int rc;

    std_headers(r, hdrs, NULL);
    gw_sbuf_init(&out, 65536);
    if (streaming(r->kind)) {
        gw_sbuf_t fr;
        /* Prelude and close frame in chunks of their own, as a live stream sends them. */
        prelude(&out, r);
        gw_sbuf_init(&fr, 4096);
        wrap_close(&fr, r, code, reason);
        if (out.overflow || fr.overflow) {
            gw_sbuf_free(&out);
            gw_sbuf_free(&fr);
            return text_reply(r, 500, "internal error");
        }
        rc = gw_http_stream_begin(r, 200, ctype_of(r->kind), hdrs, out.data, out.len);
        gw_sbuf_free(&out);
        if (rc == 0)
            rc = gw_http_stream_end(r, fr.data, fr.len);
        gw_sbuf_free(&fr);
        return rc;
    }
    wrap_close(&out, r, code, reason);
    rc = gw_http_reply(r, 200, ctype_of(r->kind), hdrs, out.data, out.len);
    gw_sbuf_free(&out);
    return rc;
}

/*
 * A session answers only requests like the one that created it: the same
 * client address, and the same Origin whenever both carry one. A session id
 * alone is not a credential (docs/http-api.md, "Session ids").
 */
static int bound_to(const sjs_t *x, const gw_http_req_t *r)
{
    if (strcmp(x->addr, r->addr) != 0)
        return 0;
    if (x->origin[0] && r->origin[0] && strcmp(x->origin, r->origin) != 0)
        return 0;
    return 1;
}

static int receive(gw_http_req_t *r, gw_sockjs_t *m, const char *sid, int kind, int short_id)
{
    const gw_http_env_t *e = gw_http_env(m->h);
    sjs_t *x = short_id ? NULL : find(m, sid);

    r->kind = kind;
    if (kind == R_JSONP || kind == R_HTMLFILE) {
        const char *cb = gw_http_arg(r, "c");
        if (cb == NULL || cb[0] == '\0')
            return text_reply(r, 500, "\"callback\" parameter required");
        if (!gw_http_callback_ok(cb, strlen(cb)))
            return text_reply(r, 500, "invalid \"callback\" parameter");
        snprintf(r->cb, sizeof(r->cb), "%s", cb);
    }
    if (!gw_http_origin_ok(r, kind == R_JSONP || kind == R_HTMLFILE))
        return text_reply(r, 403, "Origin not allowed");
    if (short_id)
        return text_reply(r, 404, "Not found (session id too short)");
    if (x != NULL && !bound_to(x, r))
        return text_reply(r, 404, "Not found");
    /* A receiver whose browser just went away is noticed now, not at the next peek. */
    if (x != NULL && x->recv != NULL && gw_http_peer_gone(x->recv)) {
        gw_http_req_t *old = x->recv;
        sjs_gone(old);
        old->owner = NULL;
    }
    if (x == NULL) {
        if (m->shutting_down || e->cbs->session_count(e->ud) >= (size_t)e->cfg->max_sessions)
            return text_reply(r, 503, "too many sessions");
        if (gw_pending_acquire(e->pending, r->addr) != 0) {
            gw_log_limited(GW_LOG_WARNING, "sockjs",
                           "session from %s refused: too many pending sessions", r->addr);
            return text_reply(r, 503, "too many sessions waiting to authenticate");
        }
        x = calloc(1, sizeof(*x));
        if (x == NULL) {
            gw_pending_release(e->pending, r->addr);
            return text_reply(r, 500, "out of memory");
        }
        x->pending = 1;
        x->m = m;
        snprintf(x->sid, sizeof(x->sid), "%s", sid);
        snprintf(x->origin, sizeof(x->origin), "%s", r->origin);
        snprintf(x->addr, sizeof(x->addr), "%s", r->addr);
        x->s.tp = &sjs_transport;
        x->s.tp_ctx = m;
        x->s.id = ++*e->next_id;
        x->created_ms = x->gone_ms = gw_now_ms();
        x->hnext = m->buckets[sid_hash(sid)];
        m->buckets[sid_hash(sid)] = x;
        x->next = m->all;
        if (m->all)
            m->all->prev = x;
        m->all = x;
        m->count++;
        e->cbs->on_open(e->ud, &x->s);
    } else if (x->recv != NULL) {
        return one_frame(r, 2010, "Another connection still open");
    } else if ((x->dead || x->s.closing) && x->s.qlen == 0) {
        return one_frame(r, x->s.close_code, x->s.close_reason);
    }
    x->recv = r;
    gw_metrics.sockjs_receivers++;
    x->gone_ms = 0;
    x->sent = 0;
    x->hb_ms = gw_now_ms() + GW_SOCKJS_HEARTBEAT_MS;
    r->owner = x;
    if (streaming(kind)) {
        gw_http_hdr_t hdrs[8];
        gw_sbuf_t out;
        int rc;
        std_headers(r, hdrs, NULL);
        gw_sbuf_init(&out, 65536);
        prelude(&out, r);
        if (out.overflow) {
            gw_sbuf_free(&out);
            x->recv = NULL;
            r->owner = NULL;
            x->gone_ms = gw_now_ms();
            return text_reply(r, 500, "internal error");
        }
        rc = gw_http_stream_begin(r, 200, ctype_of(kind), hdrs, out.data, out.len);
        gw_sbuf_free(&out);
        if (rc != 0) {
            x->recv = NULL;
            r->owner = NULL;
            x->gone_ms = gw_now_ms();
            return rc;
        }
        gw_http_wake(r);
        return 0;
    }
    /* Polling: answer now when there is something, otherwise wait. */
    if (!x->opened || x->s.qlen || x->s.closing)
        return pump(r);
    return 0;
}

typedef struct dispatch_ctx {
    sjs_t *x;
    const gw_http_env_t *e;
} dispatch_ctx_t;

static void dispatch(void *ud, const char *msg, size_t len)
{
    dispatch_ctx_t *d = ud;

    if (d->x->s.closing)
        return;
    d->e->cbs->on_frame(d->e->ud, &d->x->s, msg, len);
}

static int send_msgs(gw_http_req_t *r, gw_sockjs_t *m, const char *sid, int jsonp, int short_id)
{
    const gw_http_env_t *e = gw_http_env(m->h);
    sjs_t *x = short_id ? NULL : find(m, sid);
    const char *data = r->body;
    size_t len = r->blen;
    char *form = NULL;
    dispatch_ctx_t d;
    int n;

    if (!gw_http_origin_ok(r, jsonp))
        return text_reply(r, 403, "Origin not allowed");
    if (x == NULL || x->dead || !bound_to(x, r))
        return text_reply(r, 404, "Not found");
    if (r->too_large) {
        /* Never dropped silently: the session ends and its receiver says why. */
        gw_session_close(&x->s, 1009, "message too large");
        return text_reply(r, 413, "Payload too large.");
    }
    if (jsonp && strncasecmp(r->ctype, "application/x-www-form-urlencoded", 33) == 0 && data) {
        form = malloc(len + 1);
        if (form == NULL)
            return text_reply(r, 500, "out of memory");
        n = gw_http_form_get(data, len, "d", form, len + 1);
        if (n < 0) {
            free(form);
            return text_reply(r, 500, "Payload expected.");
        }
        data = form;
        len = (size_t)n;
    }
    if (data == NULL || len == 0) {
        free(form);
        return text_reply(r, 500, "Payload expected.");
    }
    d.x = x;
    d.e = e;
    n = gw_sockjs_decode(data, len, (size_t)e->cfg->max_frame_bytes, dispatch, &d);
    free(form);
    if (n == GW_ERANGE) {
        gw_session_close(&x->s, 1009, "message too large");
        return text_reply(r, 413, "Payload too large.");
    }
    if (n < 0)
        return text_reply(r, 500, "Broken JSON encoding.");
    if (jsonp)
        return text_reply(r, 200, "ok");
    {
        gw_http_hdr_t hdrs[8];
        std_headers(r, hdrs, NULL);
        return gw_http_reply(r, 204, "text/plain; charset=UTF-8", hdrs, "", 0);
    }
}

#ifndef IMGW_SOCKJS_CLIENT_INSTALLED
#define IMGW_SOCKJS_CLIENT_INSTALLED "/usr/local/share/imgw/sockjs.min.js"
#endif
#ifndef IMGW_SOCKJS_CLIENT_BUILT
#define IMGW_SOCKJS_CLIENT_BUILT ""
#endif

/*
 * sockjs-client's bundle for iframe.html (the default sockjs_client_url):
 * sockjs_client_file, else the installed copy, else the build tree's.
 */
static int client_bundle(gw_http_req_t *r)
{
    const char *cfgf = gw_http_env(r->h)->cfg->sockjs_client_file;
    const char *cands[] = {cfgf, IMGW_SOCKJS_CLIENT_INSTALLED, IMGW_SOCKJS_CLIENT_BUILT};
    gw_http_hdr_t hdrs[] = {{"cache-control:", "public, max-age=86400"},
                            {"x-content-type-options:", "nosniff"},
                            {"access-control-allow-origin:", "*"},
                            {NULL, NULL}};

    if (r->method != GW_HTTP_GET)
        return text_reply(r, 405, "Method not allowed");
    for (size_t i = cfgf[0] ? 0 : 1; i < GW_ARRAY_SIZE(cands); i++) {
        struct stat st;
        if (cands[i][0] && stat(cands[i], &st) == 0 && S_ISREG(st.st_mode))
            return gw_http_serve_file(r, cands[i], "application/javascript; charset=UTF-8", hdrs);
        if (i == 0)
            break; /* a configured file that is missing is not replaced silently */
    }
    gw_log_limited(GW_LOG_WARNING, "sockjs",
                   "sockjs.min.js not found (sockjs_client_file, or run the build with "
                   "node_modules installed)");
    return text_reply(r, 404, "Not found");
}

static int sjs_request(gw_http_req_t *r)
{
    gw_sockjs_t *m = r->ctx;
    char sid[72], tp[32];
    int kind, short_id;

    if (strcmp(r->path, "/sockjs/sockjs.min.js") == 0)
        return client_bundle(r);
    kind = gw_sockjs_parse_path(r->path, sid, sizeof(sid), tp, sizeof(tp));
    short_id = kind == GW_SOCKJS_P_SHORT_ID;

    switch (kind) {
    case GW_SOCKJS_P_GREETING:
        if (r->method != GW_HTTP_GET)
            return text_reply(r, 405, "Method not allowed");
        return text_reply(r, 200, "Welcome to SockJS!\n");
    case GW_SOCKJS_P_INFO: return info(r);
    case GW_SOCKJS_P_IFRAME: return iframe(r);
    case GW_SOCKJS_P_RAW_WS:
        if (r->method != GW_HTTP_GET) {
            gw_http_hdr_t hdrs[] = {{"allow:", "GET"}, {NULL, NULL}};
            return gw_http_reply(r, 405, NULL, hdrs, "", 0);
        }
        return text_reply(r, 400, "Can \"Upgrade\" only to \"WebSocket\".");
    case GW_SOCKJS_P_SHORT_ID: /* refused at the session, after the checks every request gets */
    case GW_SOCKJS_P_SESSION: break;
    default: return text_reply(r, 404, "Not found");
    }
    if (strcmp(tp, "websocket") == 0) {
        if (r->method != GW_HTTP_GET) {
            gw_http_hdr_t hdrs[] = {{"allow:", "GET"}, {NULL, NULL}};
            return gw_http_reply(r, 405, NULL, hdrs, "", 0);
        }
        return text_reply(r, 400, "Can \"Upgrade\" only to \"WebSocket\".");
    }
    if (strcmp(tp, "xhr") == 0 || strcmp(tp, "xhr_streaming") == 0 || strcmp(tp, "xhr_send") == 0) {
        if (r->method == GW_HTTP_OPTIONS)
            return preflight(r, "OPTIONS, POST");
        if (r->method != GW_HTTP_POST)
            return text_reply(r, 405, "Method not allowed");
        if (tp[3] == '\0')
            return receive(r, m, sid, R_XHR, short_id);
        if (tp[4] == 's' && tp[5] == 't')
            return receive(r, m, sid, R_XHR_STREAM, short_id);
        return send_msgs(r, m, sid, 0, short_id);
    }
    if (strcmp(tp, "jsonp_send") == 0) {
        if (r->method != GW_HTTP_POST)
            return text_reply(r, 405, "Method not allowed");
        return send_msgs(r, m, sid, 1, short_id);
    }
    if (strcmp(tp, "jsonp") != 0 && strcmp(tp, "eventsource") != 0 && strcmp(tp, "htmlfile") != 0)
        return text_reply(r, 404, "Not found");
    if (r->method != GW_HTTP_GET)
        return text_reply(r, 405, "Method not allowed");
    if (strcmp(tp, "jsonp") == 0)
        return receive(r, m, sid, R_JSONP, short_id);
    if (strcmp(tp, "eventsource") == 0)
        return receive(r, m, sid, R_EVENTSOURCE, short_id);
    return receive(r, m, sid, R_HTMLFILE, short_id);
}

/* Many messages per POST: each is bounded by max_frame_bytes, the POST by max_post_bytes. */
static const gw_http_ops_t sjs_ops = {NULL, sjs_request, sjs_writable, sjs_gone, 0};
static gw_http_ops_t sjs_ops_sized;

/* ---- module ------------------------------------------------------------------------------ */

int gw_sockjs_new(gw_http_t *h, gw_sockjs_t **out)
{
    gw_sockjs_t *m = calloc(1, sizeof(*m));
    int rc;

    if (m == NULL)
        return GW_ENOMEM;
    m->h = h;
    sjs_ops_sized = sjs_ops;
    sjs_ops_sized.max_body = (size_t)gw_http_env(h)->cfg->max_post_bytes;
    if ((rc = gw_http_route(h, "/sockjs", 0, &sjs_ops_sized, m)) != 0 ||
        (rc = gw_http_on_tick(h, gw_sockjs_tick, m)) != 0) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void gw_sockjs_tick(void *ctx, uint64_t now)
{
    gw_sockjs_t *m = ctx;
    const gw_http_env_t *e = gw_http_env(m->h);

    for (sjs_t *x = m->all, *xn; x; x = xn) {
        xn = x->next;
        if (x->s.closing && !x->dead) {
            sjs_kill(x);
        } else if (!x->s.closing && x->s.user == NULL &&
                   now - x->created_ms > (uint64_t)e->cfg->auth_timeout_ms) {
            gw_info("sockjs", "session %" PRIu64 ": no hello within %d ms", x->s.id,
                    e->cfg->auth_timeout_ms);
            gw_session_close(&x->s, 4408, "authentication timeout");
            continue;
        }
        if (x->recv == NULL) {
            if (now - x->gone_ms > GW_SOCKJS_DISCONNECT_MS) {
                if (!x->dead)
                    gw_debug("sockjs", "session %" PRIu64 ": no receiver for %d ms, closed",
                             x->s.id, GW_SOCKJS_DISCONNECT_MS);
                sjs_kill(x);
                sjs_free(x);
            }
            continue;
        }
        if (now >= x->hb_ms) {
            x->hb = 1;
            x->hb_ms = now + GW_SOCKJS_HEARTBEAT_MS;
            gw_http_wake(x->recv);
        }
    }
}

void gw_sockjs_shutdown(gw_sockjs_t *m)
{
    m->shutting_down = 1;
    for (sjs_t *x = m->all; x; x = x->next) {
        if (!x->s.closing) {
            x->s.closing = 1;
            x->s.close_code = 1001;
            x->s.close_reason = "gateway shutting down";
        }
        sjs_kill(x);
        if (x->recv)
            gw_http_wake(x->recv);
    }
}

void gw_sockjs_free(gw_sockjs_t *m)
{
    if (m == NULL)
        return;
    while (m->all) {
        sjs_kill(m->all);
        sjs_free(m->all);
    }
    free(m);
}
