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
#define RECOVER_MAX 5000 /* messages replayed after hello.last_id; past it, reset */
#define PAGE_MAX    100  /* messages per recovery query */
#define HOLD_MAX    1024 /* live messages held back while a replay runs */
#define WAIT_MS     5    /* a replay waiting for room looks again after this */
#define RETRY_MS    250  /* a page the database could not answer is asked again after this */
#define RETRY_MAX   20   /* ... this many times (5 s), then the replay ends with reset */
#define FRAME_LIMIT (16u * 1024u * 1024u)

struct gw_history {
    gw_history_env_t env;
};

/*
 * The replay after hello.last_id, one per session that asked for it; s->recovery
 * points here. The replay goes page by page, each page asked for only when the
 * session's queue has room for it, so a prompt client is never flooded into
 * "overloaded". Live messages for the session that arrive meanwhile are held and
 * sent after the replay, before "recovered"; a held message that a later page
 * also returns is dropped from the held ones, and a live copy of a message the
 * replay already sent (a copy the XMPP server returns late, a forward from
 * another gateway) is dropped for the rest of the session: every message once.
 * docs/protocol.md, "Recovery", gives the order as clients see it.
 */
enum { R_PAGES, R_FLUSH, R_DONE };

typedef struct held {
    uint64_t id;
    gw_payload_t *p;
} held_t;

typedef struct recovery {
    gw_history_t *h;
    uint64_t session_id;
    char user[72];
    char jid[JID_MAX];
    uint64_t cursor; /* largest id replayed (hello.last_id at first) */
    uint64_t *ids;   /* the ids replayed, ascending (all runs) */
    size_t nids, capids;
    size_t count;   /* messages replayed by this run */
    uint64_t again; /* another replay from this id is asked for (a relay gap); 0: none */
    held_t *held;   /* grows up to HOLD_MAX; freed when the replay is done */
    size_t nheld, capheld, flushed;
    int state;
    int reset;    /* recovered.reset: the client must reload what it shows */
    int querying; /* a page query is in flight: its callback owns the struct */
    int retries;  /* page queries the database failed in a row */
    int orphan;   /* the session is gone: freed once nothing refers to it */
    uv_timer_t timer;
} recovery_t;

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

/* A query for s: s is owed its answer until ctx_done(). */
static hctx_t *ctx_new(gw_history_t *h, gw_session_t *s)
{
    hctx_t *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->h = h;
    c->session_id = s->id;
    snprintf(c->user, sizeof(c->user), "%s", s->user->id);
    gw_history_user_jid(h, s->user->id, c->jid, sizeof(c->jid));
    gw_session_owe(s);
    return c;
}

static gw_session_t *ctx_session(const hctx_t *c)
{
    return gw_registry_find_session(c->h->env.reg, c->user, c->session_id);
}

/* The query is answered (or never will be): frees c. */
static void ctx_done(hctx_t *c)
{
    gw_session_t *s = ctx_session(c);

    if (s != NULL)
        gw_session_answered(s);
    free(c);
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
    ctx_done(c);
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
        ctx_done(c);
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
        ctx_done(c);
        return;
    }
    chats = calloc(n ? n : 1, sizeof(*chats));
    if (chats == NULL) {
        ctx_done(c);
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
    ctx_done(c);
}

static void on_chats_cache(void *ud, int status, const gw_chat_t *chats, size_t n)
{
    hctx_t *c = ud;
    gw_session_t *s;

    if (status == 0) {
        s = ctx_session(c);
        if (s)
            send_chats(s, chats, n);
        ctx_done(c);
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
        ctx_done(c);
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
        ctx_done(c);
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
    ctx_done(c);
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
        ctx_done(c);
}

/* ---- recovery ------------------------------------------------------------------- */

static void rec_step(recovery_t *r);

static void rec_free_cb(uv_handle_t *t)
{
    free(t->data);
}

/* Frees r once nothing refers to it (its timer closes first). */
static void rec_release(recovery_t *r)
{
    for (size_t i = r->flushed; i < r->nheld; i++)
        gw_payload_unref(r->held[i].p);
    free(r->held);
    r->held = NULL;
    r->nheld = r->flushed = r->capheld = 0;
    free(r->ids);
    r->ids = NULL;
    uv_close((uv_handle_t *)&r->timer, rec_free_cb);
}

static gw_session_t *rec_session(const recovery_t *r)
{
    gw_session_t *s = gw_registry_find_session(r->h->env.reg, r->user, r->session_id);

    return s != NULL && s->recovery == r ? s : NULL;
}

/*
 * How many more frames the session's queue should take now: up to three
 * quarters of session_queue_max, counting what is queued and the answers the
 * session is owed, so that acks, reads and pongs always find room.
 */
static size_t rec_room(const recovery_t *r, const gw_session_t *s)
{
    size_t max = (size_t)r->h->env.cfg->session_queue_max * 3 / 4;
    size_t used = (size_t)s->qlen + s->owed;

    return used < max ? max - used : 0;
}

static int rec_page_size(const recovery_t *r)
{
    int half = r->h->env.cfg->session_queue_max / 2;

    return half < 1 ? 1 : half > PAGE_MAX ? PAGE_MAX : half;
}

static int rec_replayed(const recovery_t *r, uint64_t id)
{
    size_t lo = 0, hi = r->nids;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->ids[mid] == id)
            return 1;
        if (r->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* Adds id to the replayed ids, keeping them ascending; -1 when out of memory. */
static int rec_note(recovery_t *r, uint64_t id)
{
    size_t lo = 0, hi;

    if (r->nids >= 4 * RECOVER_MAX) {
        /*
         * Replays after many relay gaps: the oldest half goes. They only stop a late
         * live copy being sent again, which the client drops by id anyway.
         */
        size_t keep = r->nids / 2;
        memmove(r->ids, r->ids + (r->nids - keep), keep * sizeof(*r->ids));
        r->nids = keep;
    }
    hi = r->nids;
    if (r->nids == r->capids) {
        size_t ncap = r->capids ? 2 * r->capids : 128;
        uint64_t *ni = realloc(r->ids, ncap * sizeof(*ni));
        if (ni == NULL)
            return -1;
        r->ids = ni;
        r->capids = ncap;
    }
    /* A later run may replay ids below the last one: find the place. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    memmove(r->ids + lo + 1, r->ids + lo, (r->nids - lo) * sizeof(*r->ids));
    r->ids[lo] = id;
    r->nids++;
    return 0;
}

static void on_rec_timer(uv_timer_t *t)
{
    rec_step(t->data);
}

/* Looks again soon: the session's queue is too full for the next step. */
static void rec_wait(recovery_t *r)
{
    uv_timer_start(&r->timer, on_rec_timer, WAIT_MS, 0);
}

static void on_rec_page(void *ud, int status, const gw_rows_t *rows)
{
    recovery_t *r = ud;
    gw_session_t *s;
    size_t n;
    int page = rec_page_size(r);

    r->querying = 0;
    if (r->orphan) {
        rec_release(r);
        return;
    }
    s = rec_session(r);
    if (s == NULL)
        return; /* closing: gw_history_forget() releases r */
    if (status != 0) {
        /*
         * The database did not answer: right after a gateway start its connection may
         * still be coming up, and every reconnecting browser told to reload at once
         * would hit it with chat lists and history together. Ask again for a while;
         * without the database the client cannot know what it missed: it must reload.
         */
        if (++r->retries <= RETRY_MAX) {
            uv_timer_start(&r->timer, on_rec_timer, RETRY_MS, 0);
            return;
        }
        r->reset = 1;
        r->state = R_FLUSH;
        rec_step(r);
        return;
    }
    r->retries = 0;
    n = gw_rows_count(rows);
    for (size_t i = 0; i < n; i++) {
        gw_msg_t m;
        const char *conv;
        gw_sbuf_t b;

        row_msg(rows, i, r->jid, &m, &conv);
        if (m.id <= r->cursor)
            continue;
        r->cursor = m.id;
        if (rec_replayed(r, m.id))
            continue; /* an earlier run replayed it */
        if (rec_note(r, m.id) != 0) {
            r->reset = 1;
            break;
        }
        r->count++;
        /* A live copy held meanwhile goes out here, as part of the replay, instead. */
        for (size_t k = r->flushed; k < r->nheld; k++)
            if (r->held[k].id == m.id && r->held[k].p != NULL) {
                gw_payload_unref(r->held[k].p);
                r->held[k].p = NULL;
            }
        gw_sbuf_init(&b, FRAME_LIMIT);
        gw_proto_msg_append(&b, &m, conv, s->open_conv && strcmp(s->open_conv, conv) == 0, 1);
        send_frame(s, &b);
    }
    if (r->reset || n < (size_t)page) {
        r->state = R_FLUSH;
    } else if (r->count >= RECOVER_MAX) {
        r->reset = 1; /* more may follow than the gateway replays */
        r->state = R_FLUSH;
    }
    rec_step(r);
}

/* Sends what is next when the session's queue has room: a page, then held messages. */
static void rec_step(recovery_t *r)
{
    gw_session_t *s;
    gw_sbuf_t b;
    size_t room;

    if (r->orphan || r->querying || r->state == R_DONE)
        return;
    s = rec_session(r);
    if (s == NULL)
        return;
    room = rec_room(r, s);
    if (r->state == R_PAGES) {
        int page = rec_page_size(r);
        if (room < (size_t)page) {
            rec_wait(r);
            return;
        }
        r->querying = 1;
        if (gw_store_recover(r->h->env.store, r->jid, r->cursor, page, on_rec_page, r) != 0) {
            r->querying = 0;
            r->reset = 1;
            r->state = R_FLUSH;
            rec_wait(r);
        }
        return;
    }
    for (; r->flushed < r->nheld && room > 0; r->flushed++) {
        gw_payload_t *p = r->held[r->flushed].p;
        if (p == NULL)
            continue;
        gw_session_send(s, p);
        gw_payload_unref(p);
        room--;
    }
    if (r->flushed < r->nheld) {
        rec_wait(r);
        return;
    }
    /* Only the replayed ids stay, for as long as the session lives (late copies). */
    free(r->held);
    r->held = NULL;
    r->nheld = r->flushed = r->capheld = 0;
    if (r->again != 0 && !r->reset) {
        /* A relay gap began while this run paged: page again from before it. */
        r->cursor = r->again;
        r->again = 0;
        r->state = R_PAGES;
        rec_step(r);
        return;
    }
    r->again = 0;
    r->state = R_DONE;
    gw_sbuf_init(&b, 256);
    gw_sbuf_printf(&b, "{\"op\":\"recovered\",\"count\":%zu,\"reset\":%s}", r->count,
                   r->reset ? "true" : "false");
    send_frame(s, &b);
}

void gw_history_recover(gw_history_t *h, gw_session_t *s, uint64_t after)
{
    recovery_t *r = s->recovery;

    if (r != NULL && gw_store_enabled(h->env.store)) {
        /*
         * Asked again (a relay gap, after a replay at hello or an earlier gap): a
         * finished replay runs once more from after, skipping what it replayed
         * before; one under way pages again from after once it is through.
         */
        if (r->state != R_DONE) {
            if (r->again == 0 || after < r->again)
                r->again = after;
            return;
        }
        r->cursor = after;
        r->count = 0;
        r->reset = 0;
        r->retries = 0;
        r->state = R_PAGES;
        rec_step(r);
        return;
    }
    if (!gw_store_enabled(h->env.store) || s->recovery != NULL ||
        (r = calloc(1, sizeof(*r))) == NULL) {
        gw_sbuf_t b;
        gw_sbuf_init(&b, 256);
        gw_sbuf_puts(&b, "{\"op\":\"recovered\",\"count\":0,\"reset\":true}");
        send_frame(s, &b);
        return;
    }
    r->h = h;
    r->session_id = s->id;
    snprintf(r->user, sizeof(r->user), "%s", s->user->id);
    gw_history_user_jid(h, s->user->id, r->jid, sizeof(r->jid));
    r->cursor = after;
    r->state = R_PAGES;
    uv_timer_init(h->env.loop, &r->timer);
    r->timer.data = r;
    s->recovery = r;
    rec_step(r);
}

/* The id of a msg frame ({"op":"msg","id":"<digits>",...}), or 0. */
static uint64_t frame_id(gw_payload_t *p)
{
    static const char key[] = "\"id\":\"";
    const char *d = (const char *)gw_payload_data(p);
    size_t len = p->len, kl = sizeof(key) - 1;
    uint64_t v = 0;

    /* Inside a JSON string a quote is escaped, so the first unescaped "id":" is the member. */
    for (size_t i = 1; i + kl < len; i++) {
        if ((d[i - 1] != '{' && d[i - 1] != ',') || memcmp(d + i, key, kl) != 0)
            continue;
        for (i += kl; i < len && d[i] >= '0' && d[i] <= '9'; i++) {
            if (v > (UINT64_MAX - 9) / 10)
                return 0;
            v = v * 10 + (uint64_t)(d[i] - '0');
        }
        return i < len && d[i] == '"' ? v : 0;
    }
    return 0;
}

void gw_history_push(gw_history_t *h, gw_session_t *s, gw_payload_t *p, uint64_t id)
{
    recovery_t *r = s->recovery;

    GW_UNUSED(h);
    if (p == NULL)
        return;
    if (r == NULL) {
        gw_session_send(s, p);
        return;
    }
    if (id == 0)
        id = frame_id(p);
    if (id != 0 && rec_replayed(r, id))
        return; /* the replay sent it already */
    if (r->state == R_DONE) {
        gw_session_send(s, p);
        return;
    }
    if (r->nheld == r->capheld && r->capheld < HOLD_MAX) {
        size_t ncap = r->capheld ? 2 * r->capheld : 16;
        held_t *nh = realloc(r->held, ncap * sizeof(*nh));
        if (nh != NULL) {
            r->held = nh;
            r->capheld = ncap;
        }
    }
    if (r->nheld == r->capheld) {
        /*
         * More live traffic than is worth holding: stop replaying (reset tells
         * the client to reload) and let this one through at once.
         */
        if (r->state == R_PAGES) {
            r->reset = 1;
            r->state = R_FLUSH;
            if (!r->querying)
                rec_wait(r);
        }
        gw_session_send(s, p);
        return;
    }
    r->held[r->nheld].id = id;
    r->held[r->nheld].p = gw_payload_ref(p);
    r->nheld++;
}

void gw_history_forget(gw_history_t *h, gw_session_t *s)
{
    recovery_t *r = s->recovery;

    GW_UNUSED(h);
    if (r == NULL)
        return;
    s->recovery = NULL;
    r->orphan = 1;
    if (!r->querying)
        rec_release(r);
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
