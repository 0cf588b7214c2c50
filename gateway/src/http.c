/*
 * http.c - HTTP request plumbing over libwebsockets (see http.h for the
 * ownership rule).
 *
 * Every request that front.c hands over gets a gw_http_req_t, stored as the
 * connection's opaque user data until its answer is complete. Headers and
 * query arguments are copied out at once, so nothing later depends on lws'
 * header storage. Answers are written either right away (from the request
 * callback) or from a writable callback after gw_http_wake(): never from
 * inside another connection's callback.
 */
#include "http.h"
#include "gw.h"
#include "log.h"
#include "text.h"

#include <errno.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>

#define MAX_ROUTES 8
#define MAX_TICKS  8
/* How often a waiting request's socket is checked for a peer that went away. */
#define PEEK_MS 1000

typedef struct route {
    char prefix[32];
    size_t plen;
    int exact;
    const gw_http_ops_t *ops;
    void *ctx;
} route_t;

struct gw_http {
    gw_http_env_t env;
    uv_timer_t tick;
    int timers;
    gw_http_req_t *timed;   /* requests with a deadline */
    gw_http_req_t *waiting; /* requests whose answer waits (long poll, stream) */
    uint64_t next_peek;
    route_t routes[MAX_ROUTES];
    int nroutes;
    struct {
        void (*fn)(void *ctx, uint64_t now);
        void *ctx;
    } ticks[MAX_TICKS];
    int nticks;
};

int gw_http_random(void *buf, size_t len)
{
    unsigned char *p = buf;

    while (len) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return GW_EIO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

const gw_http_env_t *gw_http_env(const gw_http_t *h)
{
    return &h->env;
}

const char *gw_http_arg(const gw_http_req_t *r, const char *name)
{
    size_t nlen = strlen(name);
    const char *a = r->args;

    for (size_t i = 0; a && i < r->nargs; i++) {
        size_t l = strlen(a);
        if (l > nlen && a[nlen] == '=' && memcmp(a, name, nlen) == 0)
            return a + nlen + 1;
        if (l == nlen && memcmp(a, name, nlen) == 0)
            return "";
        a += l + 1;
    }
    return NULL;
}

void gw_http_wake(gw_http_req_t *r)
{
    if (r->wsi)
        lws_callback_on_writable(r->wsi);
}

void gw_http_set_deadline(gw_http_req_t *r, uint64_t deadline_ms)
{
    gw_http_t *h = r->h;

    if (r->deadline) {
        if (r->tprev)
            r->tprev->tnext = r->tnext;
        else
            h->timed = r->tnext;
        if (r->tnext)
            r->tnext->tprev = r->tprev;
        r->tnext = r->tprev = NULL;
    }
    r->deadline = deadline_ms;
    if (deadline_ms) {
        r->tnext = h->timed;
        if (h->timed)
            h->timed->tprev = r;
        h->timed = r;
    }
}

static void set_waiting(gw_http_req_t *r, int on)
{
    gw_http_t *h = r->h;

    if (on == r->waiting)
        return;
    if (on) {
        r->wnext = h->waiting;
        r->wprev = NULL;
        if (h->waiting)
            h->waiting->wprev = r;
        h->waiting = r;
    } else {
        if (r->wprev)
            r->wprev->wnext = r->wnext;
        else
            h->waiting = r->wnext;
        if (r->wnext)
            r->wnext->wprev = r->wprev;
        r->wnext = r->wprev = NULL;
    }
    r->waiting = on;
}

/* The only place a request is freed. */
static void req_free(gw_http_req_t *r)
{
    gw_http_set_deadline(r, 0);
    set_waiting(r, 0);
    if (r->wsi)
        lws_set_opaque_user_data(r->wsi, NULL);
    gw_payload_unref(r->answer);
    free(r->args);
    free(r->body);
    free(r);
}

int gw_http_header(const gw_http_req_t *r, int which, char *buf, size_t len)
{
    enum lws_token_indexes token = which == GW_HTTP_H_AC_REQUEST_HEADERS
                                       ? WSI_TOKEN_HTTP_AC_REQUEST_HEADERS
                                       : WSI_TOKEN_HTTP_IF_NONE_MATCH;
    int n;

    if (r->wsi == NULL || len == 0)
        return -1;
    if (lws_hdr_total_length(r->wsi, token) <= 0) {
        buf[0] = '\0';
        return -1;
    }
    n = lws_hdr_copy(r->wsi, buf, (int)len, token);
    if (n < 0) {
        buf[0] = '\0';
        return -1;
    }
    return n;
}

int gw_http_cors(const gw_http_req_t *r, gw_http_hdr_t *hdrs, int credentials)
{
    int n = 0;

    if (r->origin[0] == '\0') {
        /* No Origin: not a cross-origin browser request; "*" costs nothing. */
        hdrs[n++] = (gw_http_hdr_t){"access-control-allow-origin:", "*"};
        hdrs[n].name = NULL;
        return n;
    }
    if (!r->h->env.origin_allowed(r->h->env.fud, r->origin)) {
        hdrs[n].name = NULL;
        return 0;
    }
    hdrs[n++] = (gw_http_hdr_t){"access-control-allow-origin:", r->origin};
    hdrs[n++] = (gw_http_hdr_t){"vary:", "Origin"};
    if (credentials)
        hdrs[n++] = (gw_http_hdr_t){"access-control-allow-credentials:", "true"};
    hdrs[n].name = NULL;
    return n;
}

/*
 * The gateway's own pages (iframe.html, the demo) are same-origin: their
 * origin's host[:port] is the Host the browser sent the request to.
 */
static int same_origin(const gw_http_req_t *r, const char *origin)
{
    const char *host = strstr(origin, "://");

    return host && r->host[0] && strcasecmp(host + 3, r->host) == 0;
}

int gw_http_origin_ok(const gw_http_req_t *r, int jsonp)
{
    const gw_http_env_t *e = &r->h->env;

    if (r->origin_bad)
        return 0;
    if (r->origin[0])
        return same_origin(r, r->origin) || e->origin_allowed(e->fud, r->origin);
    if (jsonp && r->referer_bad)
        return 0;
    if (jsonp && r->referer[0])
        return same_origin(r, r->referer) || e->origin_allowed(e->fud, r->referer);
    return 1;
}

void gw_http_client_addr(const gw_config_t *cfg, struct lws *wsi, char *out, size_t len)
{
    char buf[512];
    enum lws_token_indexes t = WSI_TOKEN_X_FORWARDED_FOR;
    int n = -1;

    out[0] = '\0';
    if (cfg->client_address_header[0]) {
        if (strcasecmp(cfg->client_address_header, "x-real-ip") == 0)
            t = WSI_TOKEN_HTTP_X_REAL_IP;
        if (lws_hdr_total_length(wsi, t) > 0)
            n = lws_hdr_copy(wsi, buf, sizeof(buf), t);
    }
    if (n > 0) {
        /* The proxy appends the address it saw: the last element is the trusted one. */
        char *last = strrchr(buf, ',');
        const char *v = last ? last + 1 : buf;
        size_t k;
        while (*v == ' ' || *v == '\t')
            v++;
        k = strcspn(v, " \t");
        if (k && k < len && strspn(v, "0123456789abcdefABCDEF.:[]") >= k) {
            memcpy(out, v, k);
            out[k] = '\0';
            return;
        }
    }
    if (lws_get_peer_simple(wsi, out, len) == NULL || out[0] == '\0')
        snprintf(out, len, "?");
}

/* The scheme://host[:port] of an absolute URL, or -1. */
static int url_origin(const char *url, char *out, size_t len)
{
    const char *p = strstr(url, "://");
    size_t n;

    if (p == NULL || p == url)
        return -1;
    p += 3;
    n = (size_t)(p - url) + strcspn(p, "/?#");
    if (n >= len)
        return -1;
    memcpy(out, url, n);
    out[n] = '\0';
    return 0;
}

/* A header that is present must fit: an over-long Origin is not "no Origin". */
static int copy_hdr(struct lws *wsi, char *buf, size_t len, enum lws_token_indexes t)
{
    int total = lws_hdr_total_length(wsi, t);

    buf[0] = '\0';
    if (total <= 0)
        return 0;
    if ((size_t)total >= len || lws_hdr_copy(wsi, buf, (int)len, t) < 0) {
        buf[0] = '\0';
        return -1;
    }
    return total;
}

static gw_http_req_t *req_new(gw_http_t *h, struct lws *wsi, const char *path)
{
    gw_http_req_t *r = calloc(1, sizeof(*r));
    char clen[32];
    size_t cap = 0, used = 0;
    int te;

    if (r == NULL)
        return NULL;
    r->h = h;
    r->wsi = wsi;
    r->clen = -1;
    snprintf(r->path, sizeof(r->path), "%s", path);
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI))
        r->method = GW_HTTP_GET;
    else if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI))
        r->method = GW_HTTP_POST;
    else if (lws_hdr_total_length(wsi, WSI_TOKEN_OPTIONS_URI))
        r->method = GW_HTTP_OPTIONS;
    else
        r->method = GW_HTTP_OTHER;
    {
        /*
         * lws 4.1 keeps the request's HTTP version to itself, but writes it in
         * the status line: HTTP/1.0 answers close (no chunked framing there).
         */
        unsigned char probe[256], *p = probe;
        r->http10 = lws_add_http_header_status(wsi, 200, &p, probe + sizeof(probe)) == 0 &&
                    p - probe >= 8 && memcmp(probe, "HTTP/1.0", 8) == 0;
    }
    /*
     * lws 4.1 decodes %0D and %0A inside the URL and then takes them for the end
     * of the request line: the rest of the URL (later arguments, a message body's
     * second line) is dropped or read as a header, and the line's "HTTP/1.x"
     * never arrives. Such a request is refused rather than served truncated.
     */
    r->line_broken = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP) <= 0;
    if (copy_hdr(wsi, r->origin, sizeof(r->origin), WSI_TOKEN_ORIGIN) < 0)
        r->origin_bad = 1;
    /*
     * Only the Referer's scheme://host[:port] matters, and a page's URL may be
     * long: copied whole (bounded by lws' header buffer), then cut.
     */
    {
        int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_REFERER);
        if (total > 0) {
            char *ref = malloc((size_t)total + 1);
            if (ref == NULL || lws_hdr_copy(wsi, ref, total + 1, WSI_TOKEN_HTTP_REFERER) < 0 ||
                url_origin(ref, r->referer, sizeof(r->referer)) != 0)
                r->referer_bad = 1;
            free(ref);
        }
    }
    copy_hdr(wsi, r->host, sizeof(r->host), WSI_TOKEN_HOST);
    copy_hdr(wsi, r->ctype, sizeof(r->ctype), WSI_TOKEN_HTTP_CONTENT_TYPE);
    gw_http_client_addr(h->env.cfg, wsi, r->addr, sizeof(r->addr));
    te = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
    if (copy_hdr(wsi, clen, sizeof(clen), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
        char *end;
        r->clen = strtoll(clen, &end, 10);
        if (*end || r->clen < 0 || te)
            r->clen = -2; /* malformed, or both length and chunked: refused */
    } else if (!te) {
        r->clen = 0; /* HTTP/1.1: neither length nor chunked means no body */
    } else {
        r->chunked = 1;
    }
    for (int i = 0; i < GW_HTTP_MAX_ARGS; i++) {
        int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
        char *nb;
        if (n <= 0)
            break;
        if (used + (size_t)n + 2 > cap) {
            cap = used + (size_t)n + 2;
            nb = realloc(r->args, cap);
            if (nb == NULL)
                break;
            r->args = nb;
        }
        n = lws_hdr_copy_fragment(wsi, r->args + used, (int)(cap - used), WSI_TOKEN_HTTP_URI_ARGS,
                                  i);
        if (n < 0)
            break;
        if (!gw_utf8_valid(r->args + used, (size_t)n))
            continue;
        used += (size_t)n + 1;
        r->nargs++;
    }
    return r;
}

static int add_headers(gw_http_req_t *r, unsigned status, const char *ctype, lws_filepos_t clen,
                       const gw_http_hdr_t *hdrs, unsigned char **p, unsigned char *end)
{
    struct lws *wsi = r->wsi;
    int have_cc = 0;

    if (lws_add_http_header_status(wsi, status, p, end))
        return -1;
    if (ctype &&
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, (const unsigned char *)ctype,
                                     (int)strlen(ctype), p, end))
        return -1;
    for (const gw_http_hdr_t *x = hdrs; x && x->name; x++) {
        if (strcmp(x->name, "cache-control:") == 0)
            have_cc = 1;
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)x->name,
                                        (const unsigned char *)x->value, (int)strlen(x->value), p,
                                        end))
            return -1;
    }
    if (!have_cc && lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                                (const unsigned char *)"no-store", 8, p, end))
        return -1;
    if (clen != LWS_ILLEGAL_HTTP_CONTENT_LEN) {
        if (lws_add_http_header_content_length(wsi, clen, p, end))
            return -1;
    } else if (r->resp_chunked) {
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)"transfer-encoding:",
                                        (const unsigned char *)"chunked", 7, p, end))
            return -1;
    }
    /*
     * HTTP/1.0 connections, de-chunked request bodies (lws 4.1 cannot tell
     * where the next request starts) and unframed streams close after the
     * answer, and say so.
     */
    if ((r->conn_close || r->http10 || r->chunked ||
         (clen == LWS_ILLEGAL_HTTP_CONTENT_LEN && !r->resp_chunked)) &&
        lws_add_http_header_by_name(
            wsi, (const unsigned char *)"connection:", (const unsigned char *)"close", 5, p, end))
        return -1;
    return lws_finalize_http_header(wsi, p, end) ? -1 : 0;
}

static int write_head_body(gw_http_req_t *r, unsigned status, const char *ctype,
                           const gw_http_hdr_t *hdrs, lws_filepos_t clen, const void *body,
                           size_t len, enum lws_write_protocol wp)
{
    size_t cap = LWS_PRE + 4096 + len + 32;
    unsigned char *buf = malloc(cap), *start, *p, *end;
    int n;

    if (buf == NULL)
        return -1;
    start = p = buf + LWS_PRE;
    end = buf + LWS_PRE + 4096;
    if (add_headers(r, status, ctype, clen, hdrs, &p, end) != 0) {
        free(buf);
        return -1;
    }
    if (len && r->resp_chunked)
        p += snprintf((char *)p, 20, "%zx\r\n", len);
    if (len)
        memcpy(p, body, len);
    p += len;
    if (len && r->resp_chunked) {
        memcpy(p, "\r\n", 2);
        p += 2;
    }
    n = lws_write(r->wsi, start, (size_t)(p - start), wp);
    free(buf);
    r->headers_sent = 1;
    return n < 0 ? -1 : 0;
}

static int finish(gw_http_req_t *r)
{
    struct lws *wsi = r->wsi;
    int close = r->chunked || r->conn_close || r->http10;

    req_free(r);
    if (close)
        return -1;
    if (wsi && lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

int gw_http_reply(gw_http_req_t *r, unsigned status, const char *ctype, const gw_http_hdr_t *hdrs,
                  const void *body, size_t len)
{
    if (r->headers_sent)
        return gw_http_stream_end(r, body, len);
    if (write_head_body(r, status, ctype, hdrs, (lws_filepos_t)len, body, len,
                        LWS_WRITE_HTTP_FINAL) != 0) {
        req_free(r);
        return -1;
    }
    return finish(r);
}

int gw_http_stream_begin(gw_http_req_t *r, unsigned status, const char *ctype,
                         const gw_http_hdr_t *hdrs, const void *body, size_t len)
{
    r->resp_chunked = !r->http10 && !r->chunked && !r->conn_close;
    if (!r->resp_chunked)
        r->conn_close = 1;
    return write_head_body(r, status, ctype, hdrs, LWS_ILLEGAL_HTTP_CONTENT_LEN, body, len,
                           LWS_WRITE_HTTP);
}

int gw_http_stream_write(gw_http_req_t *r, const void *body, size_t len)
{
    unsigned char *buf, *p;
    int n;

    if (len == 0)
        return 0;
    buf = malloc(LWS_PRE + len + 32);
    if (buf == NULL)
        return -1;
    p = buf + LWS_PRE;
    if (r->resp_chunked)
        p += snprintf((char *)p, 20, "%zx\r\n", len);
    memcpy(p, body, len);
    p += len;
    if (r->resp_chunked) {
        memcpy(p, "\r\n", 2);
        p += 2;
    }
    n = lws_write(r->wsi, buf + LWS_PRE, (size_t)(p - buf - LWS_PRE), LWS_WRITE_HTTP);
    free(buf);
    return n < 0 ? -1 : 0;
}

int gw_http_stream_end(gw_http_req_t *r, const void *body, size_t len)
{
    if (len && gw_http_stream_write(r, body, len) != 0) {
        req_free(r);
        return -1;
    }
    if (r->resp_chunked) {
        unsigned char buf[LWS_PRE + 8];
        memcpy(buf + LWS_PRE, "0\r\n\r\n", 5);
        if (lws_write(r->wsi, buf + LWS_PRE, 5, LWS_WRITE_HTTP) < 0) {
            req_free(r);
            return -1;
        }
    }
    /* Unframed (HTTP/1.0) streams end with the connection: conn_close is set. */
    return finish(r);
}

int gw_http_serve_file(gw_http_req_t *r, const char *path, const char *mime,
                       const gw_http_hdr_t *hdrs)
{
    struct lws *wsi = r->wsi;
    unsigned char buf[1024], *p = buf;
    int n;

    for (const gw_http_hdr_t *x = hdrs; x && x->name; x++)
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)x->name,
                                        (const unsigned char *)x->value, (int)strlen(x->value), &p,
                                        buf + sizeof(buf))) {
            req_free(r);
            return -1;
        }
    req_free(r); /* lws owns the transaction from here */
    n = lws_serve_http_file(wsi, path, mime, (const char *)buf, (int)(p - buf));
    if (n < 0 || (n > 0 && lws_http_transaction_completed(wsi)))
        return -1;
    return 0;
}

/* ---- dispatch ---------------------------------------------------------------------- */

int gw_http_route(gw_http_t *h, const char *prefix, int exact, const gw_http_ops_t *ops, void *ctx)
{
    route_t *rt;

    if (h->nroutes >= MAX_ROUTES || strlen(prefix) >= sizeof(rt->prefix))
        return GW_EFULL;
    rt = &h->routes[h->nroutes++];
    snprintf(rt->prefix, sizeof(rt->prefix), "%s", prefix);
    rt->plen = strlen(prefix);
    rt->exact = exact;
    rt->ops = ops;
    rt->ctx = ctx;
    return 0;
}

int gw_http_on_tick(gw_http_t *h, void (*fn)(void *ctx, uint64_t now), void *ctx)
{
    if (h->nticks >= MAX_TICKS)
        return GW_EFULL;
    h->ticks[h->nticks].fn = fn;
    h->ticks[h->nticks].ctx = ctx;
    h->nticks++;
    return 0;
}

static const route_t *route_of(const gw_http_t *h, const char *path)
{
    for (int i = 0; i < h->nroutes; i++) {
        const route_t *rt = &h->routes[i];
        if (strncmp(path, rt->prefix, rt->plen) == 0 &&
            (path[rt->plen] == '\0' || (!rt->exact && path[rt->plen] == '/')))
            return rt;
    }
    return NULL;
}

int gw_http_claims(const gw_http_t *h, const char *path)
{
    return route_of(h, path) != NULL;
}

static size_t body_bound(const gw_http_req_t *r)
{
    return r->ops->max_body ? r->ops->max_body : (size_t)r->h->env.cfg->max_frame_bytes;
}

/* Body bytes: streamed to the endpoint, or buffered up to the bound. */
static int body_sink(void *ud, const unsigned char *in, size_t len)
{
    gw_http_req_t *r = ud;

    if (r->ops->on_body) {
        struct lws *wsi = r->wsi;
        int rc = r->ops->on_body(r, in, len);
        if (rc != 0 || lws_get_opaque_user_data(wsi) != r)
            return -1;
        return 0;
    }
    if (r->too_large || r->blen + len > body_bound(r)) {
        r->too_large = 1;
        free(r->body);
        r->body = NULL;
        r->blen = 0;
        return 0;
    }
    {
        char *nb = realloc(r->body, r->blen + len + 1);
        if (nb == NULL)
            return -1;
        r->body = nb;
        if (len) /* lws may pass in == NULL with len == 0 */
            memcpy(r->body + r->blen, in, len);
        r->blen += len;
        r->body[r->blen] = '\0';
    }
    return 0;
}

/* Answers refused before any endpoint sees the request. */
static int refuse(gw_http_req_t *r, unsigned status, const char *text)
{
    gw_http_hdr_t hdrs[] = {{"x-content-type-options:", "nosniff"}, {NULL, NULL}};

    r->conn_close = 1;
    gw_http_reply(r, status, "text/plain; charset=UTF-8", hdrs, text, strlen(text));
    return -1;
}

static int handle(gw_http_t *h, struct lws *wsi, int reason, void *in, size_t len, int *rc)
{
    gw_http_req_t *r = lws_get_opaque_user_data(wsi);

    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        const char *path = in;
        const route_t *rt = route_of(h, path);
        if (rt == NULL)
            return 0;
        r = req_new(h, wsi, path);
        if (r == NULL) {
            *rc = -1;
            return 1;
        }
        lws_set_opaque_user_data(wsi, r);
        r->ops = rt->ops;
        r->ctx = rt->ctx;
        if (r->clen == -2) {
            /* Content-Length with Transfer-Encoding (or a bad length): a smuggling risk. */
            *rc = refuse(r, 400, "Content-Length with Transfer-Encoding, or a bad length\n");
            return 1;
        }
        if (r->line_broken) {
            *rc = refuse(r, 400,
                         "a line break (%0A or %0D) in the URL is not supported: send such a "
                         "message with POST\n");
            return 1;
        }
        if (r->origin_bad) {
            *rc = refuse(r, 403, "Origin header too long\n");
            return 1;
        }
        if (r->ops->on_body) {
            /* Streaming body: the endpoint checks the request before any byte. */
            *rc = r->ops->on_request(r);
            return 1;
        }
        if (r->method == GW_HTTP_POST && r->clen != 0) {
            if (r->clen > (long long)body_bound(r)) {
                r->too_large = 1;
                r->dispatched = 1;
                r->conn_close = 1; /* the body is not read: close after the answer */
                *rc = r->ops->on_request(r);
                if (*rc == 0 && lws_get_opaque_user_data(wsi) == NULL)
                    *rc = -1;
                return 1;
            }
            *rc = 0; /* wait for the body */
            return 1;
        }
        r->dispatched = 1;
        *rc = r->ops->on_request(r);
        return 1;
    }
    case LWS_CALLBACK_HTTP_BODY:
        if (r == NULL)
            return 0;
        if (r->chunked) {
            int done = gw_chunked_feed(&r->ch, in, len, body_sink, r);
            if (lws_get_opaque_user_data(wsi) != r || done < 0) {
                *rc = -1; /* malformed chunking, or the endpoint answered and closes */
                return 1;
            }
            if (done == 1)
                return handle(h, wsi, LWS_CALLBACK_HTTP_BODY_COMPLETION, NULL, 0, rc);
            *rc = 0;
            return 1;
        }
        *rc = body_sink(r, in, len) < 0 ? -1 : 0;
        if (lws_get_opaque_user_data(wsi) != r)
            *rc = -1; /* answered before the body ended: close */
        return 1;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (r == NULL)
            return 0;
        if (r->dispatched) {
            /* An empty body (Content-Length: 0) was already handled. */
            *rc = 0;
            return 1;
        }
        r->dispatched = 1;
        if (r->ops->on_body)
            *rc = r->ops->on_body(r, NULL, 0);
        else
            *rc = r->ops->on_request(r);
        return 1;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (r == NULL)
            return 0;
        *rc = r->ops->on_writable ? r->ops->on_writable(r) : 0;
        return 1;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (r == NULL)
            return 0;
        if (r->ops->on_gone)
            r->ops->on_gone(r);
        r->wsi = NULL;
        lws_set_opaque_user_data(wsi, NULL);
        req_free(r);
        *rc = 0;
        return 1;
    default: return 0;
    }
}

int gw_http_callback(gw_http_t *h, struct lws *wsi, int reason, void *in, size_t len, int *rc)
{
    int mine = handle(h, wsi, reason, in, len, rc);
    gw_http_req_t *r;

    if (mine && *rc == 0 && reason != LWS_CALLBACK_CLOSED_HTTP &&
        (r = lws_get_opaque_user_data(wsi)) != NULL && r->dispatched) {
        /*
         * The answer waits (long poll, stream): lws' own timeout would cut it
         * after timeout_secs; the module's deadlines and heartbeats bound it,
         * and the timer notices a peer that goes away meanwhile.
         */
        lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
        set_waiting(r, 1);
    }
    return mine;
}

/* ---- timers ------------------------------------------------------------------------- */

/*
 * lws 4.1 does not read an HTTP/1.1 connection while its answer is pending,
 * so a browser that closes a waiting receiver would be noticed only at the
 * next write. A peek finds the end of stream without consuming anything.
 */
int gw_http_peer_gone(gw_http_req_t *r)
{
    char c;
    int fd;
    ssize_t n;

    if (r->wsi == NULL)
        return 1;
    fd = (int)lws_get_socket_fd(r->wsi);
    if (fd < 0)
        return 0;
    n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        set_waiting(r, 0);
        lws_set_timeout(r->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
        return 1;
    }
    return 0;
}

static void peek_waiting(gw_http_t *h)
{
    for (gw_http_req_t *r = h->waiting, *next; r; r = next) {
        next = r->wnext;
        (void)gw_http_peer_gone(r);
    }
}

static void on_tick(uv_timer_t *t)
{
    gw_http_t *h = t->data;
    uint64_t now = gw_now_ms();
    gw_http_req_t *r, *next;

    for (r = h->timed; r; r = next) {
        next = r->tnext;
        if (r->deadline && r->deadline <= now) {
            gw_http_set_deadline(r, 0);
            r->timed_out = 1;
            gw_http_wake(r);
        }
    }
    if (now >= h->next_peek) {
        h->next_peek = now + PEEK_MS;
        peek_waiting(h);
    }
    for (int i = 0; i < h->nticks; i++)
        h->ticks[i].fn(h->ticks[i].ctx, now);
}

int gw_http_new(const gw_http_env_t *env, gw_http_t **out)
{
    gw_http_t *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return GW_ENOMEM;
    h->env = *env;
    uv_timer_init(env->loop, &h->tick);
    h->tick.data = h;
    h->timers = 1;
    uv_timer_start(&h->tick, on_tick, 250, 250);
    *out = h;
    return 0;
}

void gw_http_destroy(gw_http_t *h)
{
    if (h->timers) {
        uv_close((uv_handle_t *)&h->tick, NULL);
        h->timers = 0;
    }
}

void gw_http_free(gw_http_t *h)
{
    free(h);
}
