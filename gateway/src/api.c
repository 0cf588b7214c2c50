/*
 * api.c - the JSON/JSONP HTTP API: login, long-poll sessions, one request per
 * protocol operation (docs/http-api.md).
 *
 * Every operation becomes a protocol frame for the router, built here from
 * the request's parameters and checked with the protocol's own parser first,
 * so a malformed request is answered at once, by the request that caused it.
 * The router's answer (ack, history, chats, read, opened, error) goes back to
 * the request that waits for it; everything else waits in the session's
 * bounded queue for the next poll.
 */
#include "api.h"
#include "gw.h"
#include "log.h"
#include "proto.h"
#include "text.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_BUCKETS 4096
#define API_WAIT_MAX  4
#define API_ANSWER_MS 10000
#define API_DEAD_MS   60000
#define POLL_MAX_S    25

typedef struct api_sess api_sess_t;

struct gw_api {
    gw_http_t *h;
    api_sess_t *tokens[TOKEN_BUCKETS];
    api_sess_t *all;
    int shutting_down;
};

struct api_sess {
    gw_session_t s; /* first: the transport casts */
    gw_api_t *m;
    api_sess_t *hnext, *next, *prev;
    char token[33];
    char addr[GW_PENDING_ADDR_MAX];
    uint64_t active_ms; /* last poll answered, or creation */
    uint64_t dead_ms;   /* when it was closed (kept to answer "closed") */
    gw_http_req_t *poll;
    gw_http_req_t *wait[API_WAIT_MAX];
    gw_http_req_t *cur; /* the request whose frame the router is handling right now */
    uint8_t dead, pending, handed_out;
};

enum { K_LOGIN = 1, K_SEND, K_HISTORY, K_CHATS, K_READ, K_OPEN, K_POLL };

#define F_EMPTY  1 /* a poll answered with no frames (replaced, timed out) */
#define F_CLOSED 2 /* the session closed while the request waited */

static const gw_transport_t api_transport;

/* ---- links between sessions and requests --------------------------------------------- */

static void unlink_req(gw_http_req_t *r)
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
    gw_http_set_deadline(r, 0);
}

static int link_wait(api_sess_t *a, gw_http_req_t *r, int kind)
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

/* ---- answers --------------------------------------------------------------------- */

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
    /* A script must load to run: JSONP answers are 200, the error is in the object. */
    gw_sbuf_init(&b, len + 256);
    gw_sbuf_puts(&b, "/**/");
    gw_sbuf_puts(&b, r->cb);
    gw_sbuf_puts(&b, "(");
    gw_sbuf_append(&b, json, len);
    gw_sbuf_puts(&b, ");\n");
    if (b.overflow) {
        gw_sbuf_free(&b);
        return gw_http_reply(r, 500, "text/plain", hdrs, "out of memory\n", 14);
    }
    rc = gw_http_reply(r, 200, "application/javascript; charset=utf-8", hdrs, b.data, b.len);
    gw_sbuf_free(&b);
    return rc;
}

/* {"error":{"op":"error","code":...,"reason":...[,"for":...]}} */
static int api_error_for(gw_http_req_t *r, unsigned status, const char *code, const char *reason,
                         const char *op)
{
    gw_sbuf_t b;
    int rc;

    gw_sbuf_init(&b, 1024);
    gw_sbuf_puts(&b, "{\"error\":{\"op\":\"error\",\"code\":");
    gw_json_escape(&b, code, strlen(code));
    gw_sbuf_puts(&b, ",\"reason\":");
    gw_json_escape(&b, reason, strlen(reason));
    if (op) {
        gw_sbuf_puts(&b, ",\"for\":");
        gw_json_escape(&b, op, strlen(op));
    }
    gw_sbuf_puts(&b, "}}");
    rc = api_write(r, status, b.data, b.len);
    gw_sbuf_free(&b);
    return rc;
}

static int api_error(gw_http_req_t *r, unsigned status, const char *code, const char *reason)
{
    return api_error_for(r, status, code, reason, NULL);
}

/* ---- sessions ----------------------------------------------------------------------- */

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

static api_sess_t *api_find(gw_api_t *m, const char *token)
{
    if (token == NULL || strlen(token) != 32)
        return NULL;
    for (api_sess_t *a = m->tokens[token_hash(token)]; a; a = a->hnext)
        if (ct_equal(a->token, token, 32))
            return a;
    return NULL;
}

static void release_pending(api_sess_t *a)
{
    if (a->pending) {
        a->pending = 0;
        gw_pending_release(gw_http_env(a->m->h)->pending, a->addr);
    }
}

/* Ends a session: the router forgets it; every waiting request is unlinked and answered. */
static void api_kill(api_sess_t *a)
{
    const gw_http_env_t *e = gw_http_env(a->m->h);

    if (a->dead)
        return;
    a->dead = 1;
    a->s.closing = 1;
    a->dead_ms = gw_now_ms();
    release_pending(a);
    e->cbs->on_close(e->ud, &a->s);
    for (int i = 0; i < API_WAIT_MAX; i++) {
        gw_http_req_t *r = a->wait[i];
        if (r) {
            unlink_req(r);
            r->flags |= F_CLOSED;
            gw_http_wake(r);
        }
    }
    if (a->poll) {
        gw_http_req_t *r = a->poll;
        unlink_req(r);
        r->flags |= F_CLOSED;
        gw_http_wake(r);
    }
}

/* Frees a killed session: by then no request links to it. */
static void api_free(api_sess_t *a)
{
    gw_api_t *m = a->m;
    api_sess_t **pp = &m->tokens[token_hash(a->token)];

    assert(a->dead && a->poll == NULL && a->cur == NULL);
    for (int i = 0; i < API_WAIT_MAX; i++)
        assert(a->wait[i] == NULL);
    while (*pp && *pp != a)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = a->hnext;
    if (a->prev)
        a->prev->next = a->next;
    else
        m->all = a->next;
    if (a->next)
        a->next->prev = a->prev;
    gw_session_queue_free(&a->s);
    free(a);
}

static int answer_matches(gw_http_req_t *r, const char *op, gw_payload_t *p, int during)
{
    const char *data = (const char *)gw_payload_data(p);
    char v[96];
    int is_err = strcmp(op, "error") == 0, has_for, has_cid;
    static const char *names[] = {
        [K_HISTORY] = "history", [K_CHATS] = "chats", [K_READ] = "read", [K_OPEN] = "open"};

    if (r->answer != NULL)
        return 0;
    has_for = gw_http_json_member(data, p->len, "for", v, sizeof(v)) >= 0;
    has_cid = gw_http_json_member(data, p->len, "cid", v, sizeof(v)) >= 0;
    /* An error naming neither op nor cid, sent while the router handles r's frame, is r's. */
    if (is_err && during && !has_for && !has_cid)
        return 1;
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
    case K_OPEN:
        if (strcmp(op, r->kind == K_OPEN ? "opened" : names[r->kind]) == 0)
            return 1;
        return is_err && gw_http_json_member(data, p->len, "for", v, sizeof(v)) >= 0 &&
               strcmp(v, names[r->kind]) == 0;
    default: return 0;
    }
}

static void api_tp_send(void *ctx, gw_session_t *s, gw_payload_t *p)
{
    api_sess_t *a = (api_sess_t *)s;
    char op[32];

    GW_UNUSED(ctx);
    if (a->dead || s->closing)
        return;
    if (gw_http_json_member((const char *)gw_payload_data(p), p->len, "op", op, sizeof(op)) < 0)
        op[0] = '\0';
    for (int i = 0; i < API_WAIT_MAX; i++) {
        gw_http_req_t *r = a->wait[i];
        if (r && answer_matches(r, op, p, r == a->cur)) {
            r->answer = gw_payload_ref(p);
            unlink_req(r);
            gw_http_wake(r);
            return;
        }
    }
    if (gw_session_queue_push(s, p, (uint32_t)gw_http_env(a->m->h)->cfg->session_queue_max) != 0) {
        gw_warn("http", "session %" PRIu64 ": poll queue full (%u frames), closing", s->id,
                s->qlen);
        gw_session_close(s, 1008, "overloaded");
        return;
    }
    if (a->poll)
        gw_http_wake(a->poll);
}

static void api_tp_close(void *ctx, gw_session_t *s, int code, const char *reason)
{
    GW_UNUSED(ctx);
    if (s->closing)
        return;
    /* on_close runs from the module's timer, never inside the router's call. */
    release_pending((api_sess_t *)s);
    s->closing = 1;
    s->close_code = (uint16_t)code;
    s->close_reason = reason;
}

static void api_tp_welcomed(void *ctx, gw_session_t *s)
{
    GW_UNUSED(ctx);
    release_pending((api_sess_t *)s);
}

static const gw_transport_t api_transport = {api_tp_send, api_tp_close, api_tp_welcomed};

/* Hands frame to the router on behalf of r (errors it sends meanwhile are r's). */
static void to_router(api_sess_t *a, gw_http_req_t *r, const char *frame, size_t len)
{
    const gw_http_env_t *e = gw_http_env(a->m->h);

    a->cur = r;
    e->cbs->on_frame(e->ud, &a->s, frame, len);
    a->cur = NULL;
}

/* ---- requests ------------------------------------------------------------------------ */

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

static int api_login(gw_http_req_t *r, gw_api_t *m)
{
    const gw_http_env_t *e = gw_http_env(m->h);
    const char *ticket = gw_http_arg(r, "ticket"), *user = gw_http_arg(r, "user");
    const char *last = gw_http_arg(r, "last_id");
    unsigned char rnd[16];
    api_sess_t *a;
    gw_sbuf_t b;
    int rc;

    if ((ticket == NULL || !ticket[0]) && (user == NULL || !user[0]))
        return api_error(r, 400, "bad_request", "'ticket' is required");
    if (last && (strlen(last) > 20 || strspn(last, "0123456789") != strlen(last)))
        return api_error(r, 400, "bad_request", "'last_id' must be a message id");
    if (m->shutting_down || e->cbs->session_count(e->ud) >= (size_t)e->cfg->max_sessions)
        return api_error(r, 503, "overloaded", "too many sessions");
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
    if (b.overflow) {
        gw_sbuf_free(&b);
        return api_error(r, 400, "bad_request", "'ticket' is too long");
    }
    rc = gw_pending_acquire(e->pending, r->addr);
    if (rc != 0) {
        gw_sbuf_free(&b);
        gw_log_limited(GW_LOG_WARNING, "http", "login from %s refused: too many pending sessions",
                       r->addr);
        return api_error(r, 429, "too_many_pending",
                         "too many sessions waiting to log in; retry later");
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL || gw_http_random(rnd, sizeof(rnd)) != 0) {
        gw_pending_release(e->pending, r->addr);
        free(a);
        gw_sbuf_free(&b);
        return api_error(r, 500, "internal", "cannot create a session");
    }
    a->pending = 1;
    snprintf(a->addr, sizeof(a->addr), "%s", r->addr);
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(a->token + 2 * i, 3, "%02x", rnd[i]);
    a->m = m;
    a->s.tp = &api_transport;
    a->s.tp_ctx = m;
    a->s.id = ++*e->next_id;
    a->active_ms = gw_now_ms();
    a->hnext = m->tokens[token_hash(a->token)];
    m->tokens[token_hash(a->token)] = a;
    a->next = m->all;
    if (m->all)
        m->all->prev = a;
    m->all = a;
    link_wait(a, r, K_LOGIN);
    snprintf(r->extra, sizeof(r->extra), "%s", a->token);
    e->cbs->on_open(e->ud, &a->s);
    to_router(a, r, b.data, b.len);
    gw_sbuf_free(&b);
    return 0; /* answered from the writable callback */
}

static int api_login_answer(gw_http_req_t *r)
{
    const char *data = (const char *)gw_payload_data(r->answer);
    size_t len = r->answer->len;
    char op[32], user[80], jid[400], sid[40], out[700];
    int n;

    if (gw_http_json_member(data, len, "op", op, sizeof(op)) < 0 || strcmp(op, "welcome") != 0) {
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
    n = snprintf(out, sizeof(out),
                 "{\"token\":\"%s\",\"user\":\"%s\",\"jid\":\"%s\",\"session\":\"%s\"}", r->extra,
                 user, jid, sid);
    return api_write(r, 200, out, (size_t)n);
}

/* Answers a poll with what the session has queued (nothing when it is F_EMPTY). */
static int api_poll_answer(gw_http_req_t *r)
{
    api_sess_t *a = r->owner;
    gw_sbuf_t b;
    gw_payload_t *p;
    int rc, first = 1;

    unlink_req(r);
    if (a)
        a->active_ms = gw_now_ms();
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
    if (r->kind == K_POLL) {
        if (r->flags & F_CLOSED)
            return api_error(r, 410, "closed", "the session was closed; log in again");
        if (r->timed_out)
            r->flags |= F_EMPTY;
        if (r->owner == NULL && !(r->flags & F_EMPTY))
            return 0; /* a wake-up for a request already answered */
        return api_poll_answer(r);
    }
    if (r->answer == NULL) {
        if (r->timed_out) {
            unlink_req(r);
            return api_error(r, 504, "timeout",
                             "no answer in time; retry (sends with the same cid)");
        }
        if (r->flags & F_CLOSED) {
            if (r->kind == K_LOGIN)
                return api_error(r, 401, "bad_hello", "the session was closed");
            return api_error(r, 410, "closed", "the session was closed; log in again");
        }
        return 0; /* still waiting */
    }
    if (r->kind == K_LOGIN)
        return api_login_answer(r);
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
    unlink_req(r);
}

/*
 * Checks the frame built for r with the protocol's parser, then hands it to
 * the router and waits for the answer. A frame the parser refuses is
 * answered now, with the op it was for.
 */
static int api_frame(gw_http_req_t *r, api_sess_t *a, int kind, const char *op, gw_sbuf_t *b)
{
    const gw_config_t *cfg = gw_http_env(r->h)->cfg;
    const char *code = NULL, *reason = NULL;
    char cid[80];
    gw_frame_t f;

    if (b->overflow)
        return api_error_for(r, 400, "bad_request", "parameters too long", op);
    if (gw_proto_parse(b->data, b->len, (size_t)cfg->max_body_bytes, &f, &code, &reason, cid,
                       sizeof(cid)) != 0)
        return api_error_for(r, 400, code ? code : "bad_frame", reason ? reason : "bad request",
                             op);
    gw_frame_free(&f);
    if (link_wait(a, r, kind) != 0)
        return api_error_for(r, 429, "busy", "too many requests waiting on this token", op);
    to_router(a, r, b->data, b->len);
    return 0;
}

/* A non-negative decimal of at most 9 digits, or -1. */
static long small_number(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > 9 || strspn(s, "0123456789") != n)
        return -1;
    return strtol(s, NULL, 10);
}

static int api_request(gw_http_req_t *r)
{
    gw_api_t *m = r->ctx;
    const char *ep = r->path + 4; /* after "/api" */
    char tokbuf[64], buf[3][1024], *body_buf = NULL;
    const char *token, *cb = gw_http_arg(r, "callback");
    api_sess_t *a;
    gw_sbuf_t b;
    int rc;

    if (cb && !gw_http_callback_ok(cb, strlen(cb))) {
        /* Never reflected, and never JSONP. */
        return api_error(r, 400, "bad_callback", "invalid callback name");
    }
    if (cb)
        snprintf(r->cb, sizeof(r->cb), "%s", cb);
    if (r->too_large)
        return api_error(r, 413, "too_large", "the request body is too large");
    if (r->method == GW_HTTP_OPTIONS) {
        gw_http_hdr_t hdrs[8];
        int n = gw_http_cors(r, hdrs, 0);
        hdrs[n++] = (gw_http_hdr_t){"access-control-allow-methods:", "GET, POST, OPTIONS"};
        hdrs[n++] = (gw_http_hdr_t){"access-control-max-age:", "86400"};
        hdrs[n].name = NULL;
        return gw_http_reply(r, 204, NULL, hdrs, "", 0);
    }
    if (!gw_http_origin_ok(r, r->cb[0] != '\0'))
        return api_error(r, 403, "bad_origin", "this page's origin is not allowed");
    if (ep[0] != '/')
        return api_error(r, 404, "not_found", "no such endpoint");
    ep++;
    if (strcmp(ep, "login") == 0)
        return api_login(r, m);
    if (strcmp(ep, "logout") && strcmp(ep, "send") && strcmp(ep, "history") &&
        strcmp(ep, "chats") && strcmp(ep, "read") && strcmp(ep, "open") && strcmp(ep, "poll"))
        return api_error(r, 404, "not_found", "no such endpoint");
    if (r->method == GW_HTTP_POST && strcmp(ep, "send") != 0)
        return api_error(r, 405, "method_not_allowed", "use GET");
    if (r->method != GW_HTTP_POST && r->method != GW_HTTP_GET)
        return api_error(r, 405, "method_not_allowed", "use GET or POST");
    token = param(r, "token", tokbuf, sizeof(tokbuf));
    a = api_find(m, token);
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
    if (strcmp(ep, "poll") == 0) {
        const char *t = gw_http_arg(r, "timeout");
        long to = t ? small_number(t) : POLL_MAX_S;
        if (to < 0 || to > POLL_MAX_S)
            return api_error(r, 400, "bad_request", "'timeout' must be 0-25");
        if (a->poll) {
            /* The newer poll replaces the waiting one, which is answered empty. */
            gw_http_req_t *old = a->poll;
            unlink_req(old);
            old->flags |= F_EMPTY;
            gw_http_wake(old);
        }
        r->kind = K_POLL;
        r->owner = a;
        a->poll = r;
        if (a->s.qlen || to == 0)
            return api_poll_answer(r);
        gw_http_set_deadline(r, gw_now_ms() + (uint64_t)to * 1000u);
        return 0;
    }
    gw_sbuf_init(&b, (size_t)gw_http_env(r->h)->cfg->max_frame_bytes);
    if (strcmp(ep, "send") == 0) {
        size_t cap = (size_t)gw_http_env(r->h)->cfg->max_frame_bytes + 1;
        const char *to = param(r, "to", buf[0], sizeof(buf[0]));
        const char *cid = param(r, "cid", buf[1], sizeof(buf[1]));
        const char *kind = param(r, "kind", buf[2], sizeof(buf[2]));
        const char *body;
        body_buf = malloc(cap);
        if (body_buf == NULL) {
            gw_sbuf_free(&b);
            return api_error(r, 500, "internal", "out of memory");
        }
        body = param(r, "body", body_buf, cap);
        if (body != NULL && gw_http_arg(r, "body_enc") != NULL) {
            /*
             * body_enc=pct: the body was percent-encoded once more by the page, so
             * that line breaks survive a GET (JSONP can send nothing else), which
             * lws 4.1 would otherwise take for the end of the request line.
             */
            const char *enc = gw_http_arg(r, "body_enc");
            char *dec = strcmp(enc, "pct") == 0 ? malloc(cap) : NULL;
            if (dec == NULL || gw_http_urldecode(body, strlen(body), dec, cap) < 0) {
                free(dec);
                free(body_buf);
                gw_sbuf_free(&b);
                return api_error(r, 400, "bad_request",
                                 "'body_enc' must be 'pct' and 'body' percent-encoded UTF-8");
            }
            free(body_buf);
            body_buf = dec;
            body = dec;
        }
        if (!to || !cid || !body || !cid[0] || strlen(cid) > 64) {
            free(body_buf);
            gw_sbuf_free(&b);
            return api_error(r, 400, "bad_request", "'to', 'body' and 'cid' (1-64) are required");
        }
        snprintf(r->extra, 65, "%s", cid);
        gw_sbuf_puts(&b, "{\"op\":\"send\",\"to\":");
        gw_json_escape(&b, to, strlen(to));
        gw_sbuf_puts(&b, ",\"cid\":");
        gw_json_escape(&b, cid, strlen(cid));
        if (kind && kind[0]) {
            gw_sbuf_puts(&b, ",\"kind\":");
            gw_json_escape(&b, kind, strlen(kind));
        }
        gw_sbuf_puts(&b, ",\"body\":");
        gw_json_escape(&b, body, strlen(body));
        gw_sbuf_puts(&b, "}");
        free(body_buf);
        rc = api_frame(r, a, K_SEND, "send", &b);
    } else if (strcmp(ep, "history") == 0 || strcmp(ep, "read") == 0) {
        const char *with = gw_http_arg(r, "with"), *before = gw_http_arg(r, "before");
        const char *id = gw_http_arg(r, "id"), *limit = gw_http_arg(r, "limit");
        int isread = ep[0] == 'r';
        const char *op = isread ? "read" : "history";
        if (!with || !with[0] || (isread && (!id || !id[0]))) {
            gw_sbuf_free(&b);
            return api_error_for(r, 400, "bad_request",
                                 isread ? "'with' and 'id' are required" : "'with' is required",
                                 op);
        }
        gw_sbuf_printf(&b, "{\"op\":\"%s\",\"with\":", op);
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
                long l = small_number(limit);
                if (l < 0) {
                    gw_sbuf_free(&b);
                    return api_error_for(r, 400, "bad_frame", "'limit' must be 1-100", op);
                }
                gw_sbuf_printf(&b, ",\"limit\":%ld", l);
            }
        }
        gw_sbuf_puts(&b, "}");
        rc = api_frame(r, a, isread ? K_READ : K_HISTORY, op, &b);
    } else if (strcmp(ep, "chats") == 0) {
        const char *limit = gw_http_arg(r, "limit");
        gw_sbuf_puts(&b, "{\"op\":\"chats\"");
        if (limit && limit[0]) {
            long l = small_number(limit);
            if (l < 0) {
                gw_sbuf_free(&b);
                return api_error_for(r, 400, "bad_frame", "'limit' must be 1-100", "chats");
            }
            gw_sbuf_printf(&b, ",\"limit\":%ld", l);
        }
        gw_sbuf_puts(&b, "}");
        rc = api_frame(r, a, K_CHATS, "chats", &b);
    } else { /* open */
        const char *with = gw_http_arg(r, "with");
        gw_sbuf_puts(&b, "{\"op\":\"open\",\"with\":");
        if (with && with[0])
            gw_json_escape(&b, with, strlen(with));
        else
            gw_sbuf_puts(&b, "null");
        gw_sbuf_puts(&b, "}");
        rc = api_frame(r, a, K_OPEN, "open", &b);
    }
    gw_sbuf_free(&b);
    return rc;
}

static const gw_http_ops_t api_ops = {NULL, api_request, api_writable, api_gone, 0};

/* ---- module ---------------------------------------------------------------------------- */

static void api_tick(void *ctx, uint64_t now)
{
    gw_api_t *m = ctx;
    uint64_t idle = (uint64_t)gw_http_env(m->h)->cfg->http_session_idle_s * 1000u;

    for (api_sess_t *a = m->all, *an; a; a = an) {
        an = a->next;
        if (a->s.closing && !a->dead) {
            int authed = a->s.user != NULL;
            api_kill(a);
            /* A login that failed never handed its token out: nothing to answer later. */
            if (!authed)
                api_free(a);
            continue;
        }
        if (!a->dead && a->poll == NULL && now - a->active_ms > idle) {
            int busy = 0;
            for (int i = 0; i < API_WAIT_MAX; i++)
                busy |= a->wait[i] != NULL;
            if (!busy) {
                gw_info("http", "session %" PRIu64 ": not polled for %d s, expired", a->s.id,
                        gw_http_env(m->h)->cfg->http_session_idle_s);
                api_kill(a);
                api_free(a);
            }
        } else if (a->dead && now - a->dead_ms > API_DEAD_MS) {
            api_free(a);
        }
    }
}

int gw_api_new(gw_http_t *h, gw_api_t **out)
{
    gw_api_t *m = calloc(1, sizeof(*m));
    int rc;

    if (m == NULL)
        return GW_ENOMEM;
    m->h = h;
    if ((rc = gw_http_route(h, "/api", 0, &api_ops, m)) != 0 ||
        (rc = gw_http_on_tick(h, api_tick, m)) != 0) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int gw_api_token_user(gw_api_t *m, const char *token, char *user, size_t len)
{
    api_sess_t *a = api_find(m, token);

    if (a == NULL || a->dead || a->s.closing || a->s.user == NULL)
        return GW_ENOTFOUND;
    snprintf(user, len, "%s", a->s.user->id);
    return 0;
}

void gw_api_shutdown(gw_api_t *m)
{
    m->shutting_down = 1;
    for (api_sess_t *a = m->all; a; a = a->next)
        api_kill(a);
}

void gw_api_free(gw_api_t *m)
{
    if (m == NULL)
        return;
    while (m->all) {
        api_sess_t *a = m->all;
        api_kill(a);
        api_free(a);
    }
    free(m);
}
