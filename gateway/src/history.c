/*
 * history.c - history, chat list, mark-read and recovery for browsers.
 */
#include "history.h"
#include "gw.h"
#include "log.h"
#include "payload.h"
#include "text.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JID_MAX     320
#define RECOVER_MAX 500
#define FRAME_LIMIT (16u * 1024u * 1024u)

struct gw_history {
    gw_history_env_t env;
};

/* A query in flight: the session may be gone when the answer comes. */
typedef struct hctx {
    gw_history_t *h;
    uint64_t session_id;
    int limit;
    uint64_t id;
    char user[72];
    char jid[JID_MAX];
    char peer[JID_MAX];
} hctx_t;

int gw_history_new(const gw_history_env_t *env, gw_history_t **out)
{
    gw_history_t *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return GW_ENOMEM;
    h->env = *env;
    *out = h;
    return 0;
}

void gw_history_free(gw_history_t *h)
{
    free(h);
}

void gw_history_user_jid(const gw_history_t *h, const char *user, char *out, size_t len)
{
    snprintf(out, len, "%s@%s", user, h->env.users_domain);
}

static hctx_t *ctx_new(gw_history_t *h, gw_session_t *s)
{
    hctx_t *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->h = h;
    c->session_id = s->id;
    snprintf(c->user, sizeof(c->user), "%s", s->user->id);
    gw_history_user_jid(h, s->user->id, c->jid, sizeof(c->jid));
    return c;
}

static gw_session_t *ctx_session(const hctx_t *c)
{
    return gw_registry_find_session(c->h->env.reg, c->user, c->session_id);
}

static void send_frame(gw_session_t *s, gw_sbuf_t *b)
{
    if (!b->overflow) {
        gw_payload_t *p = gw_payload_from(b->data, b->len);
        gw_session_send(s, p);
        gw_payload_unref(p);
    }
    gw_sbuf_free(b);
}

static void send_error(gw_session_t *s, const char *op, const char *code, const char *reason)
{
    gw_sbuf_t b;

    gw_sbuf_init(&b, 4096);
    gw_sbuf_puts(&b, "{\"op\":\"error\",\"code\":");
    gw_json_escape(&b, code, strlen(code));
    gw_sbuf_puts(&b, ",\"reason\":");
    gw_json_escape(&b, reason, strlen(reason));
    gw_sbuf_puts(&b, ",\"for\":");
    gw_json_escape(&b, op, strlen(op));
    gw_sbuf_puts(&b, "}");
    send_frame(s, &b);
}

/* Fills m from a message row: id, sender, recipient, body, kind, client_id, created_ms. */
static void row_msg(const gw_rows_t *rows, size_t i, const char *self, gw_msg_t *m,
                    const char **conv)
{
    m->id = strtoull(gw_rows_get(rows, i, 0), NULL, 10);
    m->from = gw_rows_get(rows, i, 1);
    m->to = gw_rows_get(rows, i, 2);
    m->body = gw_rows_get(rows, i, 3);
    m->body_len = strlen(m->body);
    m->kind = gw_rows_get(rows, i, 4);
    m->cid =
        gw_rows_isnull(rows, i, 5) || strcmp(m->from, self) != 0 ? NULL : gw_rows_get(rows, i, 5);
    m->ts = strtoull(gw_rows_get(rows, i, 6), NULL, 10);
    *conv = strcmp(m->from, self) == 0 ? m->to : m->from;
}

/* ---- history page --------------------------------------------------------------- */

static void on_page(void *ud, int status, const gw_rows_t *rows)
{
    hctx_t *c = ud;
    gw_session_t *s = ctx_session(c);
    gw_sbuf_t b;
    size_t n;

    if (s == NULL)
        goto out;
    if (status != 0) {
        send_error(s, "history", "unavailable", "history is unavailable; retry later");
        goto out;
    }
    n = gw_rows_count(rows);
    gw_sbuf_init(&b, FRAME_LIMIT);
    gw_sbuf_puts(&b, "{\"op\":\"history\",\"with\":");
    gw_json_escape(&b, c->peer, strlen(c->peer));
    gw_sbuf_puts(&b, ",\"msgs\":[");
    /* Rows come newest first; the page lists them oldest first, ready to display. */
    for (size_t k = 0; k < n; k++) {
        gw_msg_t m;
        const char *conv;
        row_msg(rows, n - 1 - k, c->jid, &m, &conv);
        if (k)
            gw_sbuf_puts(&b, ",");
        gw_proto_msg_append(&b, &m, conv, 0, 0);
    }
    gw_sbuf_printf(&b, "],\"more\":%s}", n == (size_t)c->limit ? "true" : "false");
    send_frame(s, &b);
out:
    free(c);
}

void gw_history_page(gw_history_t *h, gw_session_t *s, const char *peer, uint64_t before, int limit)
{
    hctx_t *c;

    if (!gw_store_enabled(h->env.store)) {
        send_error(s, "history", "unavailable", "this gateway keeps no history");
        return;
    }
    c = ctx_new(h, s);
    if (c == NULL)
        return;
    c->limit = limit;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    if (gw_store_page(h->env.store, c->jid, c->peer, before, limit, on_page, c) != 0)
        free(c);
}

/* ---- chat list ------------------------------------------------------------------ */

static void send_chats(gw_session_t *s, const gw_chat_t *chats, size_t n)
{
    gw_sbuf_t b;
    uint64_t total = 0;

    gw_sbuf_init(&b, FRAME_LIMIT);
    gw_sbuf_puts(&b, "{\"op\":\"chats\",\"chats\":[");
    for (size_t i = 0; i < n; i++) {
        const gw_chat_t *e = &chats[i];
        if (i)
            gw_sbuf_puts(&b, ",");
        gw_sbuf_puts(&b, "{\"peer\":");
        gw_json_escape(&b, e->peer, strlen(e->peer));
        gw_sbuf_printf(&b, ",\"last_id\":\"%" PRIu64 "\",\"ts\":%" PRIu64 ",\"last_sender\":",
                       e->last_id, e->last_ts);
        gw_json_escape(&b, e->last_sender, strlen(e->last_sender));
        gw_sbuf_puts(&b, ",\"kind\":");
        gw_json_escape(&b, e->kind, strlen(e->kind));
        gw_sbuf_puts(&b, ",\"preview\":");
        gw_json_escape(&b, e->preview, strlen(e->preview));
        gw_sbuf_printf(&b, ",\"unread\":%u}", e->unread);
        total += e->unread;
    }
    gw_sbuf_printf(&b, "],\"unread_total\":%" PRIu64 "}", total);
    send_frame(s, &b);
}

static void on_chats_db(void *ud, int status, const gw_rows_t *rows)
{
    hctx_t *c = ud;
    gw_session_t *s = ctx_session(c);
    size_t n = status == 0 ? gw_rows_count(rows) : 0;
    gw_chat_t *chats = NULL;

    if (status != 0) {
        if (s)
            send_error(s, "chats", "unavailable", "the chat list is unavailable; retry");
        free(c);
        return;
    }
    chats = calloc(n ? n : 1, sizeof(*chats));
    if (chats == NULL) {
        free(c);
        return;
    }
    /* peer, last_id, last_ms, last_sender, last_kind, preview, unread, last_read, unread_ids */
    for (size_t i = 0; i < n; i++) {
        chats[i].peer = gw_rows_get(rows, i, 0);
        chats[i].last_id = strtoull(gw_rows_get(rows, i, 1), NULL, 10);
        chats[i].last_ts = strtoull(gw_rows_get(rows, i, 2), NULL, 10);
        chats[i].last_sender = gw_rows_get(rows, i, 3);
        chats[i].kind = gw_rows_get(rows, i, 4);
        chats[i].preview = gw_rows_get(rows, i, 5);
        chats[i].unread = (uint32_t)strtoul(gw_rows_get(rows, i, 6), NULL, 10);
        chats[i].last_read = strtoull(gw_rows_get(rows, i, 7), NULL, 10);
        chats[i].unread_ids = gw_rows_isnull(rows, i, 8) ? NULL : gw_rows_get(rows, i, 8);
    }
    /* A complete list refills the cache; a truncated one would look complete, so not that. */
    if (n < (size_t)c->limit)
        gw_cache_put_chats(c->h->env.cache, c->jid, chats, n);
    if (s)
        send_chats(s, chats, n);
    free(chats);
    free(c);
}

static void on_chats_cache(void *ud, int status, const gw_chat_t *chats, size_t n)
{
    hctx_t *c = ud;
    gw_session_t *s;

    if (status == 0) {
        s = ctx_session(c);
        if (s)
            send_chats(s, chats, n);
        free(c);
        return;
    }
    /* Not cached (or Redis down): PostgreSQL has the truth. */
    if (!gw_store_enabled(c->h->env.store) ||
        gw_store_chats(c->h->env.store, c->jid, c->limit,
                       gw_cache_is_up(c->h->env.cache) ? GW_CACHE_UNREAD_IDS_MAX : -1, on_chats_db,
                       c) != 0) {
        s = ctx_session(c);
        if (s)
            send_error(s, "chats", "unavailable", "this gateway keeps no history");
        free(c);
    }
}

void gw_history_chats(gw_history_t *h, gw_session_t *s, int limit)
{
    hctx_t *c = ctx_new(h, s);

    if (c == NULL)
        return;
    c->limit = limit;
    gw_cache_get_chats(h->env.cache, c->jid, (size_t)limit, on_chats_cache, c);
}

/* ---- mark read ------------------------------------------------------------------ */

static void on_read(void *ud, int status, const gw_rows_t *rows)
{
    hctx_t *c = ud;
    gw_session_t *asker = ctx_session(c);
    gw_user_t *u;
    gw_sbuf_t b;
    gw_payload_t *p;
    uint64_t marker = 0;
    unsigned long unread = 0;
    int moved = 0;

    if (status != 0) {
        if (asker)
            send_error(asker, "read", "unavailable", "could not mark read; retry");
        free(c);
        return;
    }
    /* No row: there is no such conversation, so nothing is read or unread in it. */
    if (gw_rows_count(rows) == 1) {
        marker = strtoull(gw_rows_get(rows, 0, 0), NULL, 10);
        unread = strtoul(gw_rows_get(rows, 0, 1), NULL, 10);
        moved = strcmp(gw_rows_get(rows, 0, 2), "t") == 0;
    }
    if (moved)
        gw_cache_mark_read(c->h->env.cache, c->jid, c->peer, marker);
    gw_sbuf_init(&b, 4096);
    gw_sbuf_puts(&b, "{\"op\":\"read\",\"with\":");
    gw_json_escape(&b, c->peer, strlen(c->peer));
    gw_sbuf_printf(&b, ",\"id\":\"%" PRIu64 "\",\"unread\":%lu}", marker, unread);
    p = b.overflow ? NULL : gw_payload_from(b.data, b.len);
    gw_sbuf_free(&b);
    if (!moved) {
        /* Nothing changed: only the asking tab needs the answer (the marker as it is). */
        if (asker && p)
            gw_session_send(asker, p);
    } else {
        /* Every tab of the user clears the bubble at once, including the one that asked. */
        u = gw_registry_find(c->h->env.reg, c->user);
        for (gw_session_t *s = u ? u->sessions : NULL; s && p; s = s->next)
            if (s->welcomed)
                gw_session_send(s, p);
    }
    gw_payload_unref(p);
    free(c);
}

void gw_history_read(gw_history_t *h, gw_session_t *s, const char *peer, uint64_t id)
{
    hctx_t *c;

    if (!gw_store_enabled(h->env.store)) {
        send_error(s, "read", "unavailable", "this gateway keeps no history");
        return;
    }
    c = ctx_new(h, s);
    if (c == NULL)
        return;
    c->id = id;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    if (gw_store_mark_read(h->env.store, c->jid, c->peer, id, on_read, c) != 0)
        free(c);
}

/* ---- recovery ------------------------------------------------------------------- */

static void on_recover(void *ud, int status, const gw_rows_t *rows)
{
    hctx_t *c = ud;
    gw_session_t *s = ctx_session(c);
    size_t n;
    gw_sbuf_t b;

    if (s == NULL)
        goto out;
    if (status != 0) {
        /* Without the database the client cannot know what it missed: it must reload. */
        gw_sbuf_init(&b, 256);
        gw_sbuf_puts(&b, "{\"op\":\"recovered\",\"count\":0,\"reset\":true}");
        send_frame(s, &b);
        goto out;
    }
    n = gw_rows_count(rows);
    for (size_t i = 0; i < n; i++) {
        gw_msg_t m;
        const char *conv;
        row_msg(rows, i, c->jid, &m, &conv);
        gw_sbuf_init(&b, FRAME_LIMIT);
        gw_proto_msg_append(&b, &m, conv, s->open_conv && strcmp(s->open_conv, conv) == 0, 1);
        send_frame(s, &b);
    }
    gw_sbuf_init(&b, 256);
    gw_sbuf_printf(&b, "{\"op\":\"recovered\",\"count\":%zu,\"reset\":%s}", n,
                   n >= RECOVER_MAX ? "true" : "false");
    send_frame(s, &b);
out:
    free(c);
}

void gw_history_recover(gw_history_t *h, gw_session_t *s, uint64_t after)
{
    hctx_t *c;

    if (!gw_store_enabled(h->env.store)) {
        gw_sbuf_t b;
        gw_sbuf_init(&b, 256);
        gw_sbuf_puts(&b, "{\"op\":\"recovered\",\"count\":0,\"reset\":true}");
        send_frame(s, &b);
        return;
    }
    c = ctx_new(h, s);
    if (c == NULL)
        return;
    if (gw_store_recover(h->env.store, c->jid, after, RECOVER_MAX, on_recover, c) != 0)
        free(c);
}

void gw_history_stored(gw_history_t *h, const gw_msg_t *m)
{
    gw_cache_msg_t cm;
    char conv[2 * JID_MAX + 2];
    gw_sbuf_t b;
    int order = strcmp(m->from, m->to) <= 0;

    /* The conversation key of the schema: both JIDs in byte order, one space between. */
    snprintf(conv, sizeof(conv), "%s %s", order ? m->from : m->to, order ? m->to : m->from);
    gw_sbuf_init(&b, FRAME_LIMIT);
    gw_proto_msg_append(&b, m, m->from, 0, 0);
    cm.id = m->id;
    cm.ts = m->ts;
    cm.sender = m->from;
    cm.recipient = m->to;
    cm.kind = m->kind ? m->kind : "text";
    cm.body = m->body;
    cm.frame_json = b.overflow ? NULL : b.data;
    gw_cache_on_message(h->env.cache, &cm, conv);
    gw_sbuf_free(&b);
}
