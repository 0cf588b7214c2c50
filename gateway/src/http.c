/*
 * http.c - HTTP transports: request plumbing over libwebsockets, the JSON/JSONP
 * API with long-poll sessions, picture upload and /files/.
 *
 * Every request that front.c hands over gets a gw_http_req_t, stored as the
 * connection's opaque user data until its answer is complete. Headers and
 * query arguments are copied out at once, so nothing later depends on lws'
 * header storage. Answers are written either right away (from the request
 * callback) or from a writable callback after gw_http_wake(): never from
 * inside another connection's callback.
 */
#define _GNU_SOURCE /* strcasestr */
#include "http.h"
#include "gw.h"
#include "log.h"
#include "sockjs.h"
#include "text.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN_BUCKETS 4096
#define API_WAIT_MAX  4
#define API_ANSWER_MS 10000
#define API_DEAD_MS   60000
#define POLL_MAX_S    25

/* ---- pure helpers ------------------------------------------------------------- */

static int ident_start(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == '$';
}

static int ident_char(int c)
{
    return ident_start(c) || (c >= '0' && c <= '9');
}

int gw_http_callback_ok(const char *name, size_t len)
{
    size_t i = 0;
    int parts = 0;

    if (name == NULL)
        return 0;
    while (i < len) {
        size_t start = i;
        if (!ident_start((unsigned char)name[i]))
            return 0;
        i++;
        while (i < len && ident_char((unsigned char)name[i]))
            i++;
        if (i - start > 64)
            return 0;
        if (++parts > 4)
            return 0;
        if (i == len)
            return 1;
        if (name[i] != '.')
            return 0;
        i++;
        if (i == len)
            return 0;
    }
    return 0;
}

const char *gw_http_image_type(const unsigned char *b, size_t n, const char **ext)
{
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) {
        *ext = "jpg";
        return "image/jpeg";
    }
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) {
        *ext = "png";
        return "image/png";
    }
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0)) {
        *ext = "gif";
        return "image/gif";
    }
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0) {
        *ext = "webp";
        return "image/webp";
    }
    return NULL;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int gw_http_urldecode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n)
                return GW_EINVAL;
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return GW_EINVAL;
            c = hi * 16 + lo;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == 0)
            return GW_EINVAL;
        if (o + 1 >= outlen)
            return GW_ERANGE;
        out[o++] = (char)c;
    }
    if (outlen == 0)
        return GW_ERANGE;
    out[o] = '\0';
    if (!gw_utf8_valid(out, o))
        return GW_EINVAL;
    return (int)o;
}

int gw_http_form_get(const char *form, size_t n, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name), i = 0;

    while (i < n) {
        size_t end = i, eq;
        while (end < n && form[end] != '&')
            end++;
        eq = i;
        while (eq < end && form[eq] != '=')
            eq++;
        if (eq - i == nlen && memcmp(form + i, name, nlen) == 0)
            return gw_http_urldecode(eq < end ? form + eq + 1 : form + end,
                                     eq < end ? end - eq - 1 : 0, out, outlen);
        i = end + 1;
    }
    return GW_ENOTFOUND;
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* Index just past the JSON string starting at s[i] == '"', or 0 when unterminated. */
static size_t skip_string(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return 0;
}

/* Index just past the JSON value at s[i], or 0 when malformed. */
static size_t skip_value(const char *s, size_t n, size_t i)
{
    int depth = 0;

    if (i >= n)
        return 0;
    do {
        char c = s[i];
        if (c == '"') {
            i = skip_string(s, n, i);
            if (i == 0)
                return 0;
            continue;
        }
        if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']') {
            if (depth == 0)
                return i; /* the end of a scalar at the end of a container */
            depth--;
        } else if (depth == 0 && (c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t'))
            return i;
        i++;
    } while (i < n && depth >= 0 && !(depth == 0 && (s[i - 1] == '}' || s[i - 1] == ']')));
    return depth == 0 ? i : 0;
}

int gw_http_json_member(const char *json, size_t n, const char *name, char *out, size_t outlen)
{
    size_t i = skip_ws(json, n, 0), nlen = strlen(name);

    if (i >= n || json[i] != '{')
        return GW_EINVAL;
    i = skip_ws(json, n, i + 1);
    while (i < n && json[i] == '"') {
        size_t kstart = i + 1, kend = skip_string(json, n, i), vstart, vend;
        if (kend == 0)
            return GW_EINVAL;
        i = skip_ws(json, n, kend);
        if (i >= n || json[i] != ':')
            return GW_EINVAL;
        vstart = skip_ws(json, n, i + 1);
        vend = skip_value(json, n, vstart);
        if (vend == 0 || vend <= vstart)
            return GW_EINVAL;
        if (kend - 1 - kstart == nlen && memcmp(json + kstart, name, nlen) == 0) {
            size_t o = 0;
            if (json[vstart] != '"')
                return GW_EINVAL;
            for (size_t k = vstart + 1; k + 1 < vend; k++) {
                char c = json[k];
                if (c == '\\') {
                    k++;
                    c = json[k];
                    if (c != '"' && c != '\\' && c != '/')
                        return GW_EINVAL;
                }
                if (o + 1 >= outlen)
                    return GW_EINVAL;
                out[o++] = c;
            }
            out[o] = '\0';
            return (int)o;
        }
        i = skip_ws(json, n, vend);
        if (i < n && json[i] == ',')
            i = skip_ws(json, n, i + 1);
        else
            break;
    }
    return GW_ENOTFOUND;
}

int gw_http_multipart_boundary(const char *ctype, char *out, size_t outlen)
{
    const char *p;
    size_t n;

    if (strncasecmp(ctype, "multipart/form-data", 19) != 0)
        return GW_EINVAL;
    p = strcasestr(ctype, "boundary=");
    if (p == NULL)
        return GW_EINVAL;
    p += 9;
    if (*p == '"') {
        p++;
        n = strcspn(p, "\"");
        if (p[n] != '"')
            return GW_EINVAL;
    } else {
        n = strcspn(p, "; \t");
    }
    if (n == 0 || n > 70 || n + 1 > outlen)
        return GW_EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == '\r' || p[i] == '\n' ||
            (unsigned char)p[i] > 0x7e)
            return GW_EINVAL;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

enum { MP_DELIM, MP_AFTER1, MP_AFTER2, MP_HEADERS, MP_BODY, MP_DONE };

int gw_multipart_init(gw_multipart_t *m, const char *boundary, gw_multipart_sink_cb sink, void *ud)
{
    size_t n = strlen(boundary);

    memset(m, 0, sizeof(*m));
    if (n == 0 || n + 4 >= sizeof(m->delim))
        return GW_EINVAL;
    memcpy(m->delim, "\r\n--", 4);
    memcpy(m->delim + 4, boundary, n);
    m->dlen = n + 4;
    /* The first delimiter has no CRLF before it: pretend one was seen. */
    m->match = 2;
    m->state = MP_BODY;
    m->sink = sink;
    m->ud = ud;
    return 0;
}

static int part_is_file(const char *hdr, size_t n)
{
    /* Content-Disposition: form-data; name="f"; filename="x.png" */
    char buf[sizeof(((gw_multipart_t *)0)->hdr) + 1];

    memcpy(buf, hdr, n);
    buf[n] = '\0';
    for (char *line = buf; line && *line;) {
        char *next = strstr(line, "\r\n");
        if (next)
            *next = '\0';
        if (strncasecmp(line, "content-disposition:", 20) == 0 && strstr(line, "filename=") != NULL)
            return 1;
        line = next ? next + 2 : NULL;
    }
    return 0;
}

int gw_multipart_feed(gw_multipart_t *m, const unsigned char *in, size_t len)
{
    size_t run = 0; /* start of pending file bytes in in[] */
    int rc;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = in[i];
        switch (m->state) {
        case MP_BODY:
            if (m->match < m->dlen && c == (unsigned char)m->delim[m->match]) {
                if (m->match == 0 && m->in_file && i > run &&
                    (rc = m->sink(m->ud, in + run, i - run)) < 0)
                    return rc;
                m->match++;
                if (m->match == m->dlen) {
                    if (m->in_file) {
                        m->in_file = 0;
                        m->file_done = 1;
                    }
                    m->match = 0;
                    m->state = MP_AFTER1;
                }
                run = i + 1;
                break;
            }
            if (m->match > 0) {
                /* The held-back bytes were data; '\r' only starts the delimiter. */
                size_t held = m->match;
                m->match = 0;
                if (m->in_file && (rc = m->sink(m->ud, (const unsigned char *)m->delim, held)) < 0)
                    return rc;
                run = i;
                if (c == (unsigned char)m->delim[0]) {
                    m->match = 1;
                    run = i + 1;
                }
            }
            break;
        case MP_AFTER1:
            if (c == '-')
                m->state = MP_AFTER2;
            else if (c == '\r')
                m->state = MP_AFTER2 + 10; /* expect \n */
            else if (c != ' ' && c != '\t')
                return GW_EINVAL;
            break;
        case MP_AFTER2:
            if (c != '-')
                return GW_EINVAL;
            m->state = MP_DONE;
            break;
        case MP_AFTER2 + 10:
            if (c != '\n')
                return GW_EINVAL;
            m->state = MP_HEADERS;
            m->hlen = 0;
            break;
        case MP_HEADERS:
            if (m->hlen >= sizeof(m->hdr))
                return GW_EINVAL;
            m->hdr[m->hlen++] = (char)c;
            if (m->hlen >= 2 && m->hdr[m->hlen - 2] == '\r' && m->hdr[m->hlen - 1] == '\n' &&
                (m->hlen == 2 ||
                 (m->hlen >= 4 && m->hdr[m->hlen - 4] == '\r' && m->hdr[m->hlen - 3] == '\n'))) {
                m->in_file = !m->file_done && part_is_file(m->hdr, m->hlen);
                m->state = MP_BODY;
                run = i + 1;
            }
            break;
        case MP_DONE: return 0;
        default: return GW_EINVAL;
        }
    }
    if (m->state == MP_BODY && m->in_file && m->match == 0 && len > run &&
        (rc = m->sink(m->ud, in + run, len - run)) < 0)
        return rc;
    /* With a partial match pending, its bytes are held back (they are delim[0..match)). */
    return 0;
}

int gw_multipart_finish(const gw_multipart_t *m)
{
    return m->file_done ? 0 : GW_EINVAL;
}

enum {
    CH_SIZE,
    CH_EXT,
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER,
    CH_TRAILER_LF,
    CH_DONE
};

int gw_chunked_feed(gw_chunked_t *c, const unsigned char *in, size_t len, gw_multipart_sink_cb sink,
                    void *ud)
{
    size_t i = 0;
    int rc;

    while (i < len) {
        unsigned char b = in[i];
        switch (c->state) {
        case CH_SIZE: {
            int v = hexval(b);
            if (v >= 0) {
                if (++c->line > 15)
                    return GW_EINVAL;
                c->left = c->left * 16u + (uint64_t)v;
            } else if (b == ';' || b == ' ' || b == '\t') {
                c->state = CH_EXT;
            } else if (b == '\r' && c->line) {
                c->state = CH_SIZE_LF;
            } else {
                return GW_EINVAL;
            }
            i++;
            break;
        }
        case CH_EXT:
            if (b == '\r')
                c->state = CH_SIZE_LF;
            i++;
            break;
        case CH_SIZE_LF:
            if (b != '\n')
                return GW_EINVAL;
            i++;
            c->line = 0;
            c->state = c->left ? CH_DATA : CH_TRAILER;
            break;
        case CH_DATA: {
            size_t n = len - i < c->left ? len - i : (size_t)c->left;
            if ((rc = sink(ud, in + i, n)) < 0)
                return rc;
            i += n;
            c->left -= n;
            if (c->left == 0)
                c->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (b != '\r')
                return GW_EINVAL;
            c->state = CH_DATA_LF;
            i++;
            break;
        case CH_DATA_LF:
            if (b != '\n')
                return GW_EINVAL;
            c->state = CH_SIZE;
            c->line = 0;
            i++;
            break;
        case CH_TRAILER:
            if (b == '\r')
                c->state = CH_TRAILER_LF;
            else if (++c->line > 4096)
                return GW_EINVAL;
            i++;
            break;
        case CH_TRAILER_LF:
            if (b != '\n')
                return GW_EINVAL;
            i++;
            if (c->line == 0) {
                c->state = CH_DONE;
                return 1;
            }
            c->line = 0;
            c->state = CH_TRAILER;
            break;
        default: return 1;
        }
    }
    return c->state == CH_DONE ? 1 : 0;
}

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

/* ---- the module ----------------------------------------------------------------- */

typedef struct api_sess api_sess_t;

struct gw_http {
    gw_http_env_t env;
    uv_timer_t tick;
    uv_timer_t reap;
    int timers;
    gw_http_req_t *timed; /* requests with a deadline */
    api_sess_t *tokens[TOKEN_BUCKETS];
    api_sess_t *all;
    gw_sockjs_t *sj;
    int shutting_down;
};

struct api_sess {
    gw_session_t s; /* first: the transport casts */
    gw_http_t *h;
    api_sess_t *hnext, *next, *prev;
    char token[33];
    uint64_t active_ms; /* last poll answered, or creation */
    uint64_t dead_ms;   /* when it was closed (kept to answer "closed") */
    gw_http_req_t *poll;
    gw_http_req_t *wait[API_WAIT_MAX];
    uint8_t dead;
};

const gw_http_env_t *gw_http_env(const gw_http_t *h)
{
    return &h->env;
}

gw_sockjs_t *gw_http_sockjs(const gw_http_t *h)
{
    return h->sj;
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

static void req_free(gw_http_req_t *r)
{
    gw_http_set_deadline(r, 0);
    if (r->wsi)
        lws_set_opaque_user_data(r->wsi, NULL);
    gw_payload_unref(r->answer);
    free(r->args);
    free(r->body);
    free(r);
}

int gw_http_cors(const gw_http_req_t *r, gw_http_hdr_t *hdrs, int credentials)
{
    int n = 0;

    if (r->origin[0] == '\0' || !r->h->env.origin_allowed(r->h->env.fud, r->origin))
        return 0;
    hdrs[n++] = (gw_http_hdr_t){"access-control-allow-origin:", r->origin};
    hdrs[n++] = (gw_http_hdr_t){"vary:", "Origin"};
    if (credentials)
        hdrs[n++] = (gw_http_hdr_t){"access-control-allow-credentials:", "true"};
    hdrs[n].name = NULL;
    return n;
}

static int add_headers(struct lws *wsi, unsigned status, const char *ctype, lws_filepos_t clen,
                       const gw_http_hdr_t *hdrs, int close, unsigned char **p, unsigned char *end)
{
    int have_cc = 0;

    if (lws_add_http_common_headers(wsi, status, ctype, clen, p, end))
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
    /* Without a length lws adds "connection: close" itself. */
    if (close && clen != LWS_ILLEGAL_HTTP_CONTENT_LEN &&
        lws_add_http_header_by_name(
            wsi, (const unsigned char *)"connection:", (const unsigned char *)"close", 5, p, end))
        return -1;
    return lws_finalize_http_header(wsi, p, end) ? -1 : 0;
}

static int write_head_body(gw_http_req_t *r, unsigned status, const char *ctype,
                           const gw_http_hdr_t *hdrs, lws_filepos_t clen, const void *body,
                           size_t len, enum lws_write_protocol wp)
{
    size_t cap = LWS_PRE + 4096 + len;
    unsigned char *buf = malloc(cap), *start, *p, *end;
    int n;

    if (buf == NULL)
        return -1;
    start = p = buf + LWS_PRE;
    end = buf + LWS_PRE + 4096;
    if (add_headers(r->wsi, status, ctype, clen, hdrs, r->chunked || r->conn_close, &p, end) != 0) {
        free(buf);
        return -1;
    }
    if (len)
        memcpy(p, body, len);
    p += len;
    n = lws_write(r->wsi, start, (size_t)(p - start), wp);
    free(buf);
    r->headers_sent = 1;
    return n < 0 ? -1 : 0;
}

static int finish(gw_http_req_t *r)
{
    struct lws *wsi = r->wsi;

    int chunked = r->chunked || r->conn_close;

    r->finished = 1;
    req_free(r);
    /*
     * lws 4.1 does not frame chunked request bodies, so it cannot tell where
     * the next request on the connection starts: such a connection is closed
     * after its answer ("connection: close" was sent).
     */
    if (chunked)
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
    return write_head_body(r, status, ctype, hdrs, LWS_ILLEGAL_HTTP_CONTENT_LEN, body, len,
                           LWS_WRITE_HTTP);
}

int gw_http_stream_write(gw_http_req_t *r, const void *body, size_t len)
{
    unsigned char *buf;
    int n;

    if (len == 0)
        return 0;
    buf = malloc(LWS_PRE + len);
    if (buf == NULL)
        return -1;
    memcpy(buf + LWS_PRE, body, len);
    n = lws_write(r->wsi, buf + LWS_PRE, len, LWS_WRITE_HTTP);
    free(buf);
    return n < 0 ? -1 : 0;
}

int gw_http_stream_end(gw_http_req_t *r, const void *body, size_t len)
{
    /*
     * The answer has no Content-Length, so the connection closes after it:
     * lws_http_transaction_completed() does that once what lws still
     * buffers for the socket has gone out.
     */
    if (len && gw_http_stream_write(r, body, len) != 0) {
        req_free(r);
        return -1;
    }
    return finish(r);
}

/* ---- API answers -------------------------------------------------------------- */

static int api_write(gw_http_req_t *r, unsigned status, const char *json, size_t len)
{
    gw_http_hdr_t hdrs[8];
    int n = gw_http_cors(r, hdrs, 0);
    gw_sbuf_t b;
    int rc;

    hdrs[n++] = (gw_http_hdr_t){"x-content-type-options:", "nosniff"};
    hdrs[n].name = NULL;
    if (r->cb[0] == '\0')
        return gw_http_reply(r, status, "application/json; charset=utf-8", hdrs, json, len);
    gw_sbuf_init(&b, len + 256);
    gw_sbuf_printf(&b, "/**/%s(", r->cb);
    gw_sbuf_append(&b, json, len);
    gw_sbuf_puts(&b, ");\n");
    rc = gw_http_reply(r, 200, "application/javascript; charset=utf-8", hdrs, b.data, b.len);
    gw_sbuf_free(&b);
    return rc;
}

static int api_error(gw_http_req_t *r, unsigned status, const char *code, const char *reason)
{
    char buf[512];
    int n =
        snprintf(buf, sizeof(buf), "{\"error\":{\"code\":\"%s\",\"reason\":\"%s\"}}", code, reason);

    return api_write(r, status, buf, (size_t)n);
}

/* ---- API sessions --------------------------------------------------------------- */

static unsigned token_hash(const char *t)
{
    uint32_t x = 2166136261u;

    for (; *t; t++)
        x = (x ^ (unsigned char)*t) * 16777619u;
    return x % TOKEN_BUCKETS;
}

static int ct_equal(const char *a, const char *b, size_t n)
{
    volatile unsigned char d = 0;

    for (size_t i = 0; i < n; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static api_sess_t *api_find(gw_http_t *h, const char *token)
{
    if (token == NULL || strlen(token) != 32)
        return NULL;
    for (api_sess_t *a = h->tokens[token_hash(token)]; a; a = a->hnext)
        if (ct_equal(a->token, token, 32))
            return a;
    return NULL;
}

static void api_unlink(api_sess_t *a)
{
    gw_http_t *h = a->h;
    api_sess_t **pp = &h->tokens[token_hash(a->token)];

    while (*pp && *pp != a)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = a->hnext;
    if (a->prev)
        a->prev->next = a->next;
    else
        h->all = a->next;
    if (a->next)
        a->next->prev = a->prev;
}

enum { K_LOGIN = 1, K_SEND, K_HISTORY, K_CHATS, K_READ, K_OPEN, K_POLL, K_UPLOAD };

#define F_TIMED_OUT 1
#define F_EMPTY     2

/* Ends a session: the router forgets it; waiting requests are answered "closed". */
static void api_kill(api_sess_t *a)
{
    gw_http_t *h = a->h;

    if (a->dead)
        return;
    a->dead = 1;
    a->s.closing = 1;
    a->dead_ms = gw_now_ms();
    h->env.cbs->on_close(h->env.ud, &a->s);
    for (int i = 0; i < API_WAIT_MAX; i++) {
        gw_http_req_t *r = a->wait[i];
        if (r) {
            a->wait[i] = NULL;
            r->owner = NULL;
            gw_http_wake(r);
        }
    }
    if (a->poll) {
        a->poll->owner = NULL;
        gw_http_wake(a->poll);
        a->poll = NULL;
    }
}

static void api_free(api_sess_t *a)
{
    api_unlink(a);
    gw_session_queue_free(&a->s);
    free(a);
}

static int answer_matches(gw_http_req_t *r, const char *op, gw_payload_t *p)
{
    const char *data = (const char *)gw_payload_data(p);
    char v[96];
    int is_err = strcmp(op, "error") == 0;
    static const char *names[] = {[K_HISTORY] = "history", [K_CHATS] = "chats", [K_READ] = "read"};

    switch (r->kind) {
    case K_LOGIN: return strcmp(op, "welcome") == 0 || is_err;
    case K_SEND:
        if (strcmp(op, "ack") != 0 && !is_err)
            return 0;
        return gw_http_json_member(data, p->len, "cid", v, sizeof(v)) >= 0 &&
               strcmp(v, r->extra) == 0;
    case K_HISTORY:
    case K_CHATS:
    case K_READ:
        if (strcmp(op, names[r->kind]) == 0)
            return 1;
        return is_err && gw_http_json_member(data, p->len, "for", v, sizeof(v)) >= 0 &&
               strcmp(v, names[r->kind]) == 0;
    case K_OPEN:
        if (strcmp(op, "opened") == 0)
            return 1;
        return is_err && gw_http_json_member(data, p->len, "for", v, sizeof(v)) == GW_ENOTFOUND &&
               gw_http_json_member(data, p->len, "cid", v, sizeof(v)) == GW_ENOTFOUND;
    default: return 0;
    }
}

static void api_tp_send(void *ctx, gw_session_t *s, gw_payload_t *p)
{
    gw_http_t *h = ctx;
    api_sess_t *a = (api_sess_t *)s;
    char op[32];

    if (a->dead || s->closing)
        return;
    if (gw_http_json_member((const char *)gw_payload_data(p), p->len, "op", op, sizeof(op)) < 0)
        op[0] = '\0';
    for (int i = 0; i < API_WAIT_MAX; i++) {
        gw_http_req_t *r = a->wait[i];
        if (r && answer_matches(r, op, p)) {
            a->wait[i] = NULL;
            r->answer = gw_payload_ref(p);
            gw_http_set_deadline(r, 0);
            gw_http_wake(r);
            return;
        }
    }
    if (gw_session_queue_push(s, p, (uint32_t)h->env.cfg->session_queue_max) != 0) {
        gw_warn("http", "session %" PRIu64 ": poll queue full (%u frames), closing", s->id,
                s->qlen);
        gw_session_close(s, 1008, "overloaded");
        return;
    }
    if (a->poll)
        gw_http_wake(a->poll);
}

static void on_reap(uv_timer_t *t)
{
    gw_http_t *h = t->data;

    for (api_sess_t *a = h->all; a; a = a->next)
        if (a->s.closing && !a->dead)
            api_kill(a);
}

static void api_tp_close(void *ctx, gw_session_t *s, int code, const char *reason)
{
    gw_http_t *h = ctx;

    if (s->closing)
        return;
    s->closing = 1;
    s->close_code = (uint16_t)code;
    s->close_reason = reason;
    /* Not from inside the router's call: on_close must not run while it still uses s. */
    uv_timer_start(&h->reap, on_reap, 0, 0);
}

static const gw_transport_t api_transport = {api_tp_send, api_tp_close, NULL};

static int add_wait(api_sess_t *a, gw_http_req_t *r, int kind)
{
    for (int i = 0; i < API_WAIT_MAX; i++)
        if (a->wait[i] == NULL) {
            a->wait[i] = r;
            r->kind = kind;
            r->owner = a;
            gw_http_set_deadline(r, gw_now_ms() + API_ANSWER_MS);
            return 0;
        }
    return GW_EFULL;
}

static void drop_wait(gw_http_req_t *r)
{
    api_sess_t *a = r->owner;

    if (a == NULL)
        return;
    for (int i = 0; i < API_WAIT_MAX; i++)
        if (a->wait[i] == r)
            a->wait[i] = NULL;
    if (a->poll == r) {
        a->poll = NULL;
        a->active_ms = gw_now_ms();
    }
    r->owner = NULL;
}

/* The request's parameter: the query first, then a form-encoded POST body. */
static const char *param(gw_http_req_t *r, const char *name, char *buf, size_t len)
{
    const char *v = gw_http_arg(r, name);

    if (v != NULL)
        return v;
    if (r->body && r->blen && gw_http_form_get(r->body, r->blen, name, buf, len) >= 0)
        return buf;
    return NULL;
}

static int api_login(gw_http_req_t *r)
{
    gw_http_t *h = r->h;
    const gw_http_env_t *e = &h->env;
    const char *ticket = gw_http_arg(r, "ticket"), *user = gw_http_arg(r, "user");
    const char *last = gw_http_arg(r, "last_id");
    unsigned char rnd[16];
    api_sess_t *a;
    gw_sbuf_t b;

    if ((ticket == NULL || !ticket[0]) && (user == NULL || !user[0]))
        return api_error(r, 400, "bad_request", "'ticket' is required");
    if (last && (strlen(last) > 20 || strspn(last, "0123456789") != strlen(last)))
        return api_error(r, 400, "bad_request", "'last_id' must be a message id");
    if (h->shutting_down || e->cbs->session_count(e->ud) >= (size_t)e->cfg->max_sessions)
        return api_error(r, 503, "overloaded", "too many sessions");
    a = calloc(1, sizeof(*a));
    if (a == NULL || gw_http_random(rnd, sizeof(rnd)) != 0) {
        free(a);
        return api_error(r, 500, "internal", "cannot create a session");
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(a->token + 2 * i, 3, "%02x", rnd[i]);
    a->h = h;
    a->s.tp = &api_transport;
    a->s.tp_ctx = h;
    a->s.id = ++*e->next_id;
    a->active_ms = gw_now_ms();
    a->hnext = h->tokens[token_hash(a->token)];
    h->tokens[token_hash(a->token)] = a;
    a->next = h->all;
    if (h->all)
        h->all->prev = a;
    h->all = a;
    add_wait(a, r, K_LOGIN);

    gw_sbuf_init(&b, 8192);
    gw_sbuf_puts(&b, "{\"op\":\"hello\",\"v\":1");
    if (ticket && ticket[0]) {
        gw_sbuf_puts(&b, ",\"ticket\":");
        gw_json_escape(&b, ticket, strlen(ticket));
    } else {
        gw_sbuf_puts(&b, ",\"user\":");
        gw_json_escape(&b, user, strlen(user));
    }
    if (last && last[0])
        gw_sbuf_printf(&b, ",\"last_id\":\"%s\"", last);
    gw_sbuf_puts(&b, "}");
    e->cbs->on_open(e->ud, &a->s);
    if (b.overflow) {
        api_tp_close(h, &a->s, 4401, "bad hello");
        drop_wait(r);
        gw_sbuf_free(&b);
        return api_error(r, 400, "bad_request", "'ticket' is too long");
    }
    e->cbs->on_frame(e->ud, &a->s, b.data, b.len);
    gw_sbuf_free(&b);
    return 0; /* answered from the writable callback */
}

static int api_login_answer(gw_http_req_t *r, api_sess_t *a)
{
    const char *data = (const char *)gw_payload_data(r->answer);
    size_t len = r->answer->len;
    char op[32], user[80], jid[400], sid[40], out[700];
    int n;

    if (gw_http_json_member(data, len, "op", op, sizeof(op)) < 0 || strcmp(op, "welcome") != 0 ||
        a == NULL) {
        char code[40] = "bad_hello";
        gw_sbuf_t b;
        int rc;
        gw_http_json_member(data, len, "code", code, sizeof(code));
        gw_sbuf_init(&b, len + 32);
        gw_sbuf_puts(&b, "{\"error\":");
        gw_sbuf_append(&b, data, len);
        gw_sbuf_puts(&b, "}");
        rc = api_write(r, strcmp(code, "too_many_sessions") == 0 ? 429 : 401, b.data, b.len);
        gw_sbuf_free(&b);
        return rc;
    }
    if (gw_http_json_member(data, len, "user", user, sizeof(user)) < 0 ||
        gw_http_json_member(data, len, "jid", jid, sizeof(jid)) < 0 ||
        gw_http_json_member(data, len, "session", sid, sizeof(sid)) < 0)
        return api_error(r, 500, "internal", "unexpected welcome");
    a->active_ms = gw_now_ms();
    n = snprintf(out, sizeof(out),
                 "{\"token\":\"%s\",\"user\":\"%s\",\"jid\":\"%s\",\"session\":\"%s\"}", a->token,
                 user, jid, sid);
    return api_write(r, 200, out, (size_t)n);
}

static int api_poll_answer(gw_http_req_t *r)
{
    api_sess_t *a = r->owner;
    gw_sbuf_t b;
    gw_payload_t *p;
    int rc, first = 1;

    if (a && a->poll == r)
        a->poll = NULL;
    if (a)
        a->active_ms = gw_now_ms();
    r->owner = NULL;
    gw_sbuf_init(&b, SIZE_MAX / 2);
    gw_sbuf_puts(&b, "{\"frames\":[");
    while (a && !(r->flags & F_EMPTY) && (p = gw_session_queue_pop(&a->s)) != NULL) {
        if (!first)
            gw_sbuf_puts(&b, ",");
        first = 0;
        gw_sbuf_append(&b, (const char *)gw_payload_data(p), p->len);
        gw_payload_unref(p);
    }
    gw_sbuf_puts(&b, "]}");
    if (b.overflow) {
        gw_sbuf_free(&b);
        return api_error(r, 500, "internal", "out of memory");
    }
    rc = api_write(r, 200, b.data, b.len);
    gw_sbuf_free(&b);
    return rc;
}

static int api_writable(gw_http_req_t *r)
{
    api_sess_t *a = r->owner;

    if (r->kind == K_POLL) {
        if (a == NULL && !(r->flags & F_EMPTY))
            return api_error(r, 410, "closed", "the session was closed; log in again");
        return api_poll_answer(r);
    }
    if (r->answer == NULL) {
        int timed = r->flags & F_TIMED_OUT;
        drop_wait(r);
        if (timed)
            return api_error(r, 504, "timeout",
                             "no answer in time; retry (sends with the same cid)");
        if (r->kind == K_LOGIN)
            return api_error(r, 401, "bad_hello", "the session was closed");
        return api_error(r, 410, "closed", "the session was closed; log in again");
    }
    drop_wait(r);
    if (r->kind == K_LOGIN)
        return api_login_answer(r, a);
    {
        const char *data = (const char *)gw_payload_data(r->answer);
        size_t len = r->answer->len;
        char op[32];
        gw_sbuf_t b;
        int rc;
        if (gw_http_json_member(data, len, "op", op, sizeof(op)) < 0 || strcmp(op, "error") != 0)
            return api_write(r, 200, data, len);
        gw_sbuf_init(&b, len + 32);
        gw_sbuf_puts(&b, "{\"error\":");
        gw_sbuf_append(&b, data, len);
        gw_sbuf_puts(&b, "}");
        rc = api_write(r, 200, b.data, b.len);
        gw_sbuf_free(&b);
        return rc;
    }
}

static void api_gone(gw_http_req_t *r)
{
    drop_wait(r);
}

/* Sends a frame built from request parameters and waits for its answer. */
static int api_frame(gw_http_req_t *r, api_sess_t *a, int kind, gw_sbuf_t *b)
{
    const gw_http_env_t *e = &r->h->env;

    if (b->overflow)
        return api_error(r, 400, "bad_request", "parameters too long");
    if (add_wait(a, r, kind) != 0)
        return api_error(r, 429, "busy", "too many requests waiting on this token");
    e->cbs->on_frame(e->ud, &a->s, b->data, b->len);
    return 0;
}

static int api_request(gw_http_req_t *r)
{
    gw_http_t *h = r->h;
    const char *ep = r->path + 5; /* after "/api/" */
    char buf[4][1024], tmp[8192 * 3 + 16];
    const char *token;
    api_sess_t *a;
    gw_sbuf_t b;
    int rc;

    if (r->too_large)
        return api_error(r, 413, "too_large", "the request body is too large");
    if (r->method == GW_HTTP_OPTIONS) {
        gw_http_hdr_t hdrs[8];
        int n = gw_http_cors(r, hdrs, 0);
        hdrs[n++] = (gw_http_hdr_t){"access-control-allow-methods:", "GET, POST, OPTIONS"};
        hdrs[n++] = (gw_http_hdr_t){"access-control-max-age:", "86400"};
        hdrs[n].name = NULL;
        return gw_http_reply(r, 204, "text/plain", hdrs, "", 0);
    }
    if (strcmp(ep, "login") == 0)
        return api_login(r);
    if (strcmp(ep, "logout") && strcmp(ep, "send") && strcmp(ep, "history") &&
        strcmp(ep, "chats") && strcmp(ep, "read") && strcmp(ep, "open") && strcmp(ep, "poll"))
        return api_error(r, 404, "not_found", "no such endpoint");
    if (r->method == GW_HTTP_POST && strcmp(ep, "send") != 0)
        return api_error(r, 405, "method_not_allowed", "use GET");
    token = param(r, "token", buf[0], sizeof(buf[0]));
    a = api_find(h, token);
    if (strcmp(ep, "logout") == 0) {
        if (a) {
            api_kill(a);
            api_free(a);
        }
        return api_write(r, 200, "{\"ok\":true}", 11);
    }
    if (a == NULL)
        return api_error(r, 401, "bad_token", "unknown or expired token");
    if (a->dead)
        return api_error(r, 410, "closed", "the session was closed; log in again");
    gw_sbuf_init(&b, sizeof(tmp));
    if (strcmp(ep, "poll") == 0) {
        const char *t = gw_http_arg(r, "timeout");
        long to = POLL_MAX_S;
        if (t) {
            char *end;
            to = strtol(t, &end, 10);
            if (*t == '\0' || *end || to < 0 || to > POLL_MAX_S)
                return api_error(r, 400, "bad_request", "'timeout' must be 0-25");
        }
        if (a->poll) {
            gw_http_req_t *old = a->poll;
            a->poll = NULL;
            old->flags |= F_EMPTY;
            gw_http_set_deadline(old, 0);
            gw_http_wake(old);
        }
        r->kind = K_POLL;
        r->owner = a;
        if (a->s.qlen || to == 0)
            return api_poll_answer(r);
        a->poll = r;
        gw_http_set_deadline(r, gw_now_ms() + (uint64_t)to * 1000u);
        return 0;
    }
    if (strcmp(ep, "send") == 0) {
        const char *to = param(r, "to", buf[1], sizeof(buf[1]));
        const char *cid = param(r, "cid", buf[2], sizeof(buf[2]));
        const char *kind = param(r, "kind", buf[3], sizeof(buf[3]));
        const char *body = param(r, "body", tmp, sizeof(tmp));
        size_t bl;
        if (!to || !cid || !body || !cid[0] || strlen(cid) > 64)
            return api_error(r, 400, "bad_request", "'to', 'body' and 'cid' (1-64) are required");
        snprintf(r->extra, 65, "%s", cid);
        bl = strlen(body);
        {
            gw_sbuf_t fb;
            gw_sbuf_init(&fb, (size_t)h->env.cfg->max_frame_bytes);
            gw_sbuf_puts(&fb, "{\"op\":\"send\",\"to\":");
            gw_json_escape(&fb, to, strlen(to));
            gw_sbuf_puts(&fb, ",\"cid\":");
            gw_json_escape(&fb, cid, strlen(cid));
            if (kind && kind[0]) {
                gw_sbuf_puts(&fb, ",\"kind\":");
                gw_json_escape(&fb, kind, strlen(kind));
            }
            gw_sbuf_puts(&fb, ",\"body\":");
            gw_json_escape(&fb, body, bl);
            gw_sbuf_puts(&fb, "}");
            rc = api_frame(r, a, K_SEND, &fb);
            gw_sbuf_free(&fb);
            gw_sbuf_free(&b);
            return rc;
        }
    }
    if (strcmp(ep, "history") == 0 || strcmp(ep, "read") == 0) {
        const char *with = gw_http_arg(r, "with"), *before = gw_http_arg(r, "before");
        const char *id = gw_http_arg(r, "id"), *limit = gw_http_arg(r, "limit");
        int isread = ep[0] == 'r';
        if (!with || (isread && !id))
            return api_error(r, 400, "bad_request",
                             isread ? "'with' and 'id' are required" : "'with' is required");
        gw_sbuf_printf(&b, "{\"op\":\"%s\",\"with\":", isread ? "read" : "history");
        gw_json_escape(&b, with, strlen(with));
        if (isread) {
            gw_sbuf_puts(&b, ",\"id\":");
            gw_json_escape(&b, id, strlen(id));
        } else {
            if (before && before[0]) {
                gw_sbuf_puts(&b, ",\"before\":");
                gw_json_escape(&b, before, strlen(before));
            }
            if (limit && limit[0]) {
                long l = strtol(limit, NULL, 10);
                gw_sbuf_printf(&b, ",\"limit\":%ld", l);
            }
        }
        gw_sbuf_puts(&b, "}");
        rc = api_frame(r, a, isread ? K_READ : K_HISTORY, &b);
        gw_sbuf_free(&b);
        return rc;
    }
    if (strcmp(ep, "chats") == 0) {
        const char *limit = gw_http_arg(r, "limit");
        gw_sbuf_puts(&b, "{\"op\":\"chats\"");
        if (limit && limit[0])
            gw_sbuf_printf(&b, ",\"limit\":%ld", strtol(limit, NULL, 10));
        gw_sbuf_puts(&b, "}");
        rc = api_frame(r, a, K_CHATS, &b);
        gw_sbuf_free(&b);
        return rc;
    }
    /* open */
    {
        const char *with = gw_http_arg(r, "with");
        gw_sbuf_puts(&b, "{\"op\":\"open\",\"with\":");
        if (with && with[0])
            gw_json_escape(&b, with, strlen(with));
        else
            gw_sbuf_puts(&b, "null");
        gw_sbuf_puts(&b, "}");
        rc = api_frame(r, a, K_OPEN, &b);
        gw_sbuf_free(&b);
        return rc;
    }
}

static const gw_http_ops_t api_ops = {NULL, api_request, api_writable, api_gone};

/* ---- upload -------------------------------------------------------------------- */

typedef struct upload {
    int fd;
    int multipart;
    int status; /* an error to answer, or 0 */
    const char *code, *reason;
    size_t bytes, seen; /* file bytes; body bytes */
    unsigned char head[16];
    size_t hlen;
    const char *mime, *ext;
    char tmp[1100];
    gw_multipart_t mp;
} upload_t;

static void upload_drop(gw_http_req_t *r)
{
    upload_t *u = r->owner;

    if (u == NULL)
        return;
    if (u->fd >= 0) {
        close(u->fd);
        unlink(u->tmp);
    }
    free(u);
    r->owner = NULL;
}

static int upload_fail(upload_t *u, int status, const char *code, const char *reason)
{
    if (u->status == 0) {
        u->status = status;
        u->code = code;
        u->reason = reason;
    }
    return GW_EINVAL;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* File bytes, from the raw body or the multipart parser. */
static int upload_sink(void *ud, const unsigned char *data, size_t len)
{
    gw_http_req_t *r = ud;
    upload_t *u = r->owner;
    size_t max = (size_t)r->h->env.cfg->upload_max_bytes;

    if (u->status)
        return GW_EINVAL;
    if (u->bytes + len > max)
        return upload_fail(u, 413, "too_large", "the picture is larger than upload_max_bytes");
    if (u->mime == NULL) {
        size_t take = sizeof(u->head) - u->hlen < len ? sizeof(u->head) - u->hlen : len;
        memcpy(u->head + u->hlen, data, take);
        u->hlen += take;
        u->bytes += take;
        data += take;
        len -= take;
        if (u->hlen < 12)
            return 0;
        u->mime = gw_http_image_type(u->head, u->hlen, &u->ext);
        if (u->mime == NULL)
            return upload_fail(u, 415, "unsupported_type", "only JPEG, PNG, GIF and WebP pictures");
        if (write_all(u->fd, u->head, u->hlen) != 0)
            return upload_fail(u, 500, "io_error", "cannot write the file");
    }
    u->bytes += len;
    if (len && write_all(u->fd, data, len) != 0)
        return upload_fail(u, 500, "io_error", "cannot write the file");
    return 0;
}

/* An answer given before the body was read: the connection cannot be reused. */
static int close_after(int rc)
{
    GW_UNUSED(rc);
    return -1;
}

/* Early answers of /upload say "connection: close", as the connection does. */
static int upload_early(gw_http_req_t *r, unsigned status, const char *code, const char *reason)
{
    r->conn_close = 1;
    return close_after(api_error(r, status, code, reason));
}

static int upload_reply_error(gw_http_req_t *r)
{
    upload_t *u = r->owner;
    unsigned status = (unsigned)u->status;
    const char *code = u->code, *reason = u->reason;

    upload_drop(r);
    return upload_early(r, status, code, reason);
}

static int upload_begin(gw_http_req_t *r)
{
    gw_http_t *h = r->h;
    const gw_config_t *cfg = h->env.cfg;
    api_sess_t *a = api_find(h, gw_http_arg(r, "token"));
    unsigned char rnd[16];
    char name[40], boundary[80];
    upload_t *u;

    if (cfg->upload_dir[0] == '\0')
        return upload_early(r, 404, "not_found", "uploads are disabled");
    if (r->method != GW_HTTP_POST)
        return upload_early(r, 405, "method_not_allowed", "use POST");
    if ((a == NULL || a->dead) && r->clen >= 0 && r->clen <= cfg->upload_max_bytes) {
        /* Read (and drop) a small body first, so the client sees the answer. */
        u = calloc(1, sizeof(*u));
        if (u == NULL)
            return -1;
        u->fd = -1;
        upload_fail(u, 401, "bad_token", "unknown or expired token");
        r->owner = u;
        if (r->clen == 0)
            return upload_reply_error(r);
        return 0;
    }
    if (a == NULL || a->dead)
        return upload_early(r, 401, "bad_token", "unknown or expired token");
    if (r->clen > (long long)cfg->upload_max_bytes +
                      (strncasecmp(r->ctype, "multipart/", 10) == 0 ? 65536 : 0))
        return close_after(
            api_error(r, 413, "too_large", "the picture is larger than upload_max_bytes"));
    u = calloc(1, sizeof(*u));
    if (u == NULL)
        return upload_early(r, 500, "internal", "out of memory");
    u->fd = -1;
    r->owner = u;
    r->kind = K_UPLOAD;
    if (strncasecmp(r->ctype, "multipart/", 10) == 0) {
        if (gw_http_multipart_boundary(r->ctype, boundary, sizeof(boundary)) != 0 ||
            gw_multipart_init(&u->mp, boundary, upload_sink, r) != 0) {
            upload_drop(r);
            return upload_early(r, 400, "bad_request", "malformed multipart/form-data");
        }
        u->multipart = 1;
    }
    if (gw_http_random(rnd, sizeof(rnd)) != 0) {
        upload_drop(r);
        return upload_early(r, 500, "internal", "no randomness");
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(name + 2 * i, 3, "%02x", rnd[i]);
    snprintf(u->tmp, sizeof(u->tmp), "%s/.tmp-%s", cfg->upload_dir, name);
    u->fd = open(u->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (u->fd < 0) {
        gw_warn("http", "upload: cannot create %s: %s", u->tmp, strerror(errno));
        upload_drop(r);
        return upload_early(r, 500, "io_error", "cannot store the file");
    }
    if (r->clen == 0)
        return r->ops->on_body(r, NULL, 0);
    return 0;
}

static const char *public_base(gw_http_req_t *r, char *buf, size_t len)
{
    const char *pub = r->h->env.cfg->public_url;

    if (pub[0]) {
        snprintf(buf, len, "%s", pub);
    } else {
        size_t n =
            strspn(r->host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]");
        snprintf(buf, len, "http://%.*s", (int)(r->host[n] == '\0' ? n : 0),
                 r->host[n] == '\0' ? r->host : "");
        if (r->host[0] == '\0' || r->host[n] != '\0')
            snprintf(buf, len, "http://localhost");
    }
    for (size_t n = strlen(buf); n && buf[n - 1] == '/';)
        buf[--n] = '\0';
    return buf;
}

static int upload_body(gw_http_req_t *r, const unsigned char *in, size_t len)
{
    upload_t *u = r->owner;
    char name[64], path[1200], base[600], out[1000];
    int n;

    if (u == NULL)
        return -1;
    if (in != NULL) {
        u->seen += len;
        if (!u->status) {
            int rc = u->multipart ? gw_multipart_feed(&u->mp, in, len) : upload_sink(r, in, len);
            if (rc != 0 && u->status == 0)
                upload_fail(u, 400, "bad_request", "malformed multipart/form-data");
        }
        if (u->status) {
            /*
             * Refused: the file goes now, the rest of a bounded body is read
             * and dropped so that the client sees the answer; past the bound
             * (413) the answer goes at once and the connection closes.
             */
            if (u->fd >= 0) {
                close(u->fd);
                unlink(u->tmp);
                u->fd = -1;
            }
            if (u->status == 413 || u->seen > (size_t)r->h->env.cfg->upload_max_bytes + 65536)
                return upload_reply_error(r);
        }
        return 0;
    }
    /* The body is complete. */
    if (u->multipart && gw_multipart_finish(&u->mp) != 0)
        upload_fail(u, 400, "bad_request", "no file part in multipart/form-data");
    if (!u->status && u->mime == NULL) {
        u->mime = gw_http_image_type(u->head, u->hlen, &u->ext);
        if (u->mime == NULL)
            upload_fail(u, 415, "unsupported_type", "only JPEG, PNG, GIF and WebP pictures");
        else if (write_all(u->fd, u->head, u->hlen) != 0)
            upload_fail(u, 500, "io_error", "cannot write the file");
    }
    if (u->status)
        return upload_reply_error(r);
    if (close(u->fd) != 0) {
        u->fd = -1;
        unlink(u->tmp);
        upload_fail(u, 500, "io_error", "cannot write the file");
        return upload_reply_error(r);
    }
    u->fd = -1;
    /* .tmp-<32 hex> → <32 hex>.<ext> in the same directory. */
    snprintf(name, sizeof(name), "%s.%s", strrchr(u->tmp, '-') + 1, u->ext);
    snprintf(path, sizeof(path), "%s/%s", r->h->env.cfg->upload_dir, name);
    if (rename(u->tmp, path) != 0) {
        unlink(u->tmp);
        upload_fail(u, 500, "io_error", "cannot store the file");
        return upload_reply_error(r);
    }
    n = snprintf(out, sizeof(out),
                 "{\"url\":\"%s/files/%s\",\"kind\":\"image\",\"bytes\":%zu,\"type\":\"%s\"}",
                 public_base(r, base, sizeof(base)), name, u->bytes, u->mime);
    gw_info("http", "upload: stored %s (%zu bytes, %s)", name, u->bytes, u->mime);
    upload_drop(r);
    return api_write(r, 200, out, (size_t)n);
}

static void upload_gone(gw_http_req_t *r)
{
    upload_drop(r);
}

static const gw_http_ops_t upload_ops = {upload_body, upload_begin, NULL, upload_gone};

/* /files/<32 hex>.<ext>: only names this module generates. */
static int serve_file(gw_http_t *h, struct lws *wsi, const char *path)
{
    const char *name = path + 7, *dot = strchr(name, '.'), *mime = NULL;
    char file[1200];
    unsigned char hdrs[512], *p = hdrs;
    struct stat st;
    int n;

    if (h->env.cfg->upload_dir[0] && dot && dot - name == 32 &&
        strspn(name, "0123456789abcdef") == 32) {
        if (strcmp(dot, ".jpg") == 0)
            mime = "image/jpeg";
        else if (strcmp(dot, ".png") == 0)
            mime = "image/png";
        else if (strcmp(dot, ".gif") == 0)
            mime = "image/gif";
        else if (strcmp(dot, ".webp") == 0)
            mime = "image/webp";
    }
    snprintf(file, sizeof(file), "%s/%s", h->env.cfg->upload_dir, name);
    if (mime == NULL || stat(file, &st) != 0 || !S_ISREG(st.st_mode)) {
        gw_http_req_t nf = {.h = h, .wsi = wsi};
        gw_http_hdr_t nh[] = {{"x-content-type-options:", "nosniff"}, {NULL, NULL}};
        if (write_head_body(&nf, 404, "text/plain", nh, 10, "not found\n", 10,
                            LWS_WRITE_HTTP_FINAL) != 0)
            return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"public, max-age=31536000, immutable",
                                    35, &p, hdrs + sizeof(hdrs)) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"x-content-type-options:",
                                    (const unsigned char *)"nosniff", 7, &p, hdrs + sizeof(hdrs)))
        return -1;
    n = lws_serve_http_file(wsi, file, mime, (const char *)hdrs, (int)(p - hdrs));
    if (n < 0 || (n > 0 && lws_http_transaction_completed(wsi)))
        return -1;
    return 0;
}

/* ---- dispatch ---------------------------------------------------------------------- */

int gw_http_claims(const char *path)
{
    return strncmp(path, "/api/", 5) == 0 || strcmp(path, "/upload") == 0 ||
           strncmp(path, "/files/", 7) == 0 || strncmp(path, "/sockjs/", 8) == 0 ||
           strcmp(path, "/sockjs") == 0;
}

static int copy_hdr(struct lws *wsi, char *buf, size_t len, enum lws_token_indexes t)
{
    int n = lws_hdr_copy(wsi, buf, (int)len, t);

    if (n < 0) {
        buf[0] = '\0';
        return -1;
    }
    return n;
}

static gw_http_req_t *req_new(gw_http_t *h, struct lws *wsi, const char *path)
{
    gw_http_req_t *r = calloc(1, sizeof(*r));
    char clen[32];
    size_t cap = 0, used = 0;

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
    copy_hdr(wsi, r->origin, sizeof(r->origin), WSI_TOKEN_ORIGIN);
    copy_hdr(wsi, r->host, sizeof(r->host), WSI_TOKEN_HOST);
    copy_hdr(wsi, r->ctype, sizeof(r->ctype), WSI_TOKEN_HTTP_CONTENT_TYPE);
    if (copy_hdr(wsi, clen, sizeof(clen), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)
        r->clen = strtoll(clen, NULL, 10);
    else if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) <= 0)
        r->clen = 0; /* HTTP/1.1: neither length nor chunked means no body */
    else
        r->chunked = 1;
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

static int body_bound(const gw_http_req_t *r)
{
    return r->h->env.cfg->max_frame_bytes;
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
    if (r->too_large || r->blen + len > (size_t)body_bound(r)) {
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

static int handle(gw_http_t *h, struct lws *wsi, int reason, void *in, size_t len, int *rc)
{
    gw_http_req_t *r = lws_get_opaque_user_data(wsi);

    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        const char *path = in;
        const char *cb;
        if (!gw_http_claims(path))
            return 0;
        if (strncmp(path, "/files/", 7) == 0) {
            *rc = serve_file(h, wsi, path);
            return 1;
        }
        r = req_new(h, wsi, path);
        if (r == NULL) {
            *rc = -1;
            return 1;
        }
        lws_set_opaque_user_data(wsi, r);
        if (strncmp(path, "/sockjs", 7) == 0) {
            r->ops = &gw_sockjs_ops;
        } else {
            r->ops = strcmp(path, "/upload") == 0 ? &upload_ops : &api_ops;
            cb = gw_http_arg(r, "callback");
            if (cb && !gw_http_callback_ok(cb, strlen(cb))) {
                /* Never reflected, and never JSONP. */
                static const char msg[] =
                    "{\"error\":{\"code\":\"bad_callback\",\"reason\":\"invalid callback name\"}}";
                gw_http_hdr_t hdrs[8];
                int n = gw_http_cors(r, hdrs, 0);
                hdrs[n++] = (gw_http_hdr_t){"x-content-type-options:", "nosniff"};
                hdrs[n].name = NULL;
                *rc = gw_http_reply(r, 400, "application/json; charset=utf-8", hdrs, msg,
                                    sizeof(msg) - 1);
                return 1;
            }
            if (cb)
                snprintf(r->cb, sizeof(r->cb), "%s", cb);
        }
        if (r->ops->on_body) {
            /* Streaming body: the endpoint checks the request before any byte. */
            *rc = r->ops->on_request(r);
            return 1;
        }
        if (r->method == GW_HTTP_POST && r->clen != 0) {
            if (r->clen > body_bound(r)) {
                r->too_large = 1;
                r->dispatched = 1;
                *rc = r->ops->on_request(r);
                if (lws_get_opaque_user_data(wsi) == NULL && *rc == 0)
                    *rc = -1; /* the body is not read: close after the answer */
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
            if (done < 0 && lws_get_opaque_user_data(wsi) == r) {
                *rc = -1; /* malformed chunking, or the endpoint answered and closes */
                return 1;
            }
            if (lws_get_opaque_user_data(wsi) != r) {
                *rc = -1;
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
        (r = lws_get_opaque_user_data(wsi)) != NULL && r->dispatched)
        /*
         * The answer waits (long poll, stream): lws' own timeout would cut it
         * after timeout_secs; the module's deadlines and heartbeats bound it.
         */
        lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    return mine;
}

/* ---- timers ------------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    gw_http_t *h = t->data;
    uint64_t now = gw_now_ms();
    uint64_t idle = (uint64_t)h->env.cfg->http_session_idle_s * 1000u;
    gw_http_req_t *r, *next;

    for (r = h->timed; r; r = next) {
        next = r->tnext;
        if (r->deadline && r->deadline <= now) {
            gw_http_set_deadline(r, 0);
            if (r->kind == K_POLL) {
                r->flags |= F_EMPTY;
            } else if (r->ops == &api_ops) {
                r->flags |= F_TIMED_OUT;
                drop_wait(r);
            }
            gw_http_wake(r);
        }
    }
    for (api_sess_t *a = h->all, *an; a; a = an) {
        an = a->next;
        if (!a->dead && a->poll == NULL && now - a->active_ms > idle) {
            int busy = 0;
            for (int i = 0; i < API_WAIT_MAX; i++)
                busy |= a->wait[i] != NULL;
            if (!busy) {
                gw_info("http", "session %" PRIu64 ": not polled for %d s, expired", a->s.id,
                        h->env.cfg->http_session_idle_s);
                api_kill(a);
                api_free(a);
            }
        } else if (a->dead && now - a->dead_ms > API_DEAD_MS) {
            api_free(a);
        }
    }
    gw_sockjs_tick(h->sj, now);
}

int gw_http_new(const gw_http_env_t *env, gw_http_t **out)
{
    gw_http_t *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return GW_ENOMEM;
    h->env = *env;
    if (gw_sockjs_new(h, &h->sj) != 0) {
        free(h);
        return GW_ENOMEM;
    }
    uv_timer_init(env->loop, &h->tick);
    uv_timer_init(env->loop, &h->reap);
    h->tick.data = h;
    h->reap.data = h;
    h->timers = 1;
    uv_timer_start(&h->tick, on_tick, 250, 250);
    *out = h;
    return 0;
}

void gw_http_shutdown(gw_http_t *h)
{
    h->shutting_down = 1;
    for (api_sess_t *a = h->all; a; a = a->next)
        api_kill(a);
    gw_sockjs_shutdown(h->sj);
}

void gw_http_destroy(gw_http_t *h)
{
    if (h->timers) {
        uv_close((uv_handle_t *)&h->tick, NULL);
        uv_close((uv_handle_t *)&h->reap, NULL);
        h->timers = 0;
    }
}

void gw_http_free(gw_http_t *h)
{
    if (h == NULL)
        return;
    while (h->all) {
        api_sess_t *a = h->all;
        api_kill(a);
        api_free(a);
    }
    gw_sockjs_free(h->sj);
    free(h);
}
