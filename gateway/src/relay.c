/*
 * relay.c - routing between gateways through Redis (hiredis async, libuv loop).
 *
 * The contract is in relay.h, the key and channel schema in docs/redis.md
 * ("Cross-gateway relay"). What this file adds, and why:
 *
 * Two connections. A connection that has sent SUBSCRIBE can only take pub/sub
 * commands, so the directory writes and the forwards go over a command
 * connection and our channel is read on a subscriber connection. Each one
 * reconnects on its own (redisconn.c).
 * Whenever either comes (back) up, every user with a session here is
 * registered again: Redis may have restarted empty, and a forward may have
 * removed us from a set while our subscription was down (see below).
 *
 * The directory. imgw:where:{user} is a SET of node ids with a key TTL of
 * WHERE_TTL_S, refreshed every REFRESH_MS for each local user. The TTL is on
 * the key, not the member, so a crashed gateway's id would live on in the set
 * of a user who also has a session on a live gateway. The forward script
 * therefore removes a member whose channel has no subscriber (PUBLISH answers
 * 0): the gateway is gone or its subscriber connection is down, and in the
 * latter case it registers its users again once it is back. The script runs
 * SMEMBERS, the PUBLISHes and those SREMs atomically, so a gateway that has
 * just subscribed and re-registered cannot have its fresh entry removed by a
 * forward that saw it unsubscribed. A gateway that receives a forward for a
 * user it does not hold removes itself from that user's set too.
 *
 * The envelope (format and reasons in relay.h). A published message is one
 * signed line of header and the frame:
 *   "imgw2 <tag> <ts> <from node> <db> <user>\n<msg frame JSON>"
 * Pub/sub channels are not per database, so the receiver drops an envelope
 * whose db is not its own. Everything in it is checked before the router
 * sees it: the size, the header, the signature and its age, the user id
 * (gw_user_id_ok), and every member of the frame, which must be exactly a msg
 * frame for that user; the router then encodes its own frame from the checked
 * values. Refused envelopes are counted (imgw_relay_refused_total) and logged
 * at most once per WARN_EVERY_MS.
 *
 * The connections themselves (resolution, connect, timeouts, backoff) are
 * redisconn.c's; this file sends each one's handshake when it comes up.
 */
#include "relay.h"
#include "gw.h"
#include "log.h"
#include "proto.h"
#include "redisconn.h"
#include "text.h"
#include "ticket.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHERE_TTL_S        120         /* imgw:where:{user} lives this long without a refresh */
#define REFRESH_MS         60000       /* every local user's entry is refreshed this often */
#define SWEEP_TICK_MS      10          /* a refresh sweep sends one batch per tick */
#define SWEEP_BATCH        500         /* users per batch (two commands each) */
#define PENDING_MAX        10000       /* outstanding commands; forwards wait past it */
#define SWEEP_PENDING_MAX  5000        /* a sweep waits above this, leaving room for forwards */
#define INFLIGHT_MAX       (32u << 20) /* bytes of forwarded envelopes not yet answered */
#define FRAME_MAX          (4u << 20)  /* largest frame forwarded or accepted */
#define HEADER_MAX         160         /* "imgw2 <tag> <ts> <node> <db> <user>\n" */
#define TAG_HEX            32          /* 128 bits of HMAC-SHA256 */
#define ENVELOPE_MAX       (FRAME_MAX + HEADER_MAX)
#define KEY_MAX            96
#define CONNECT_TIMEOUT_MS 3000
#define COMMAND_TIMEOUT_MS 5000
#define WARN_EVERY_MS      10000 /* drop warnings a peer can trigger in a loop are rate-limited */

/*
 * The forward script. KEYS[1] = imgw:where:{user}; ARGV[1] = our node id,
 * ARGV[2] = the envelope, ARGV[3] = '1' when we hold no session of the user
 * (our own id in the set is then stale). Answers the number of gateways the
 * envelope reached.
 */
static const char script_forward[] =
    "local n = 0\n"
    "for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  if id == ARGV[1] then\n"
    "    if ARGV[3] == '1' then redis.call('SREM', KEYS[1], id) end\n"
    "  elseif string.match(id, '^%d+$') and #id <= 4 then\n"
    "    if redis.call('PUBLISH', 'imgw:node:' .. id, ARGV[2]) > 0 then\n"
    "      n = n + 1\n"
    "    else\n"
    "      redis.call('SREM', KEYS[1], id)\n"
    "    end\n"
    "  else\n"
    "    redis.call('SREM', KEYS[1], id)\n"
    "  end\n"
    "end\n"
    "return n\n";

/* ---- the set of users with a session here ------------------------------ */

typedef struct unode {
    struct unode *next;
    uint64_t hash;
    char id[];
} unode_t;

typedef struct uset {
    unode_t **b;
    size_t nb, n;
} uset_t;

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static unode_t **uset_slot(const uset_t *s, const char *id, uint64_t h)
{
    unode_t **pp = &s->b[h & (s->nb - 1)];

    while (*pp != NULL && ((*pp)->hash != h || strcmp((*pp)->id, id) != 0))
        pp = &(*pp)->next;
    return pp;
}

static int uset_has(const uset_t *s, const char *id)
{
    return s->nb > 0 && *uset_slot(s, id, fnv1a(id)) != NULL;
}

static int uset_grow(uset_t *s)
{
    size_t nb = s->nb ? s->nb * 2 : 64;
    unode_t **b = calloc(nb, sizeof(*b));

    if (b == NULL)
        return GW_ENOMEM;
    for (size_t i = 0; i < s->nb; i++) {
        unode_t *e = s->b[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    free(s->b);
    s->b = b;
    s->nb = nb;
    return 0;
}

/* Returns 1 when added, 0 when present, GW_ENOMEM. *grown is set when buckets moved. */
static int uset_add(uset_t *s, const char *id, int *grown)
{
    uint64_t h = fnv1a(id);
    size_t len = strlen(id);
    unode_t **pp, *e;

    *grown = 0;
    if (s->nb > 0 && *uset_slot(s, id, h) != NULL)
        return 0;
    if (s->n >= s->nb) {
        if (uset_grow(s) != 0)
            return GW_ENOMEM;
        *grown = 1;
    }
    e = malloc(sizeof(*e) + len + 1);
    if (e == NULL)
        return GW_ENOMEM;
    memcpy(e->id, id, len + 1);
    e->hash = h;
    pp = &s->b[h & (s->nb - 1)];
    e->next = *pp;
    *pp = e;
    s->n++;
    return 1;
}

/* Returns 1 when removed, 0 when absent. */
static int uset_del(uset_t *s, const char *id)
{
    unode_t **pp, *e;

    if (s->nb == 0)
        return 0;
    pp = uset_slot(s, id, fnv1a(id));
    if (*pp == NULL)
        return 0;
    e = *pp;
    *pp = e->next;
    free(e);
    s->n--;
    return 1;
}

static void uset_free(uset_t *s)
{
    for (size_t i = 0; i < s->nb; i++) {
        unode_t *e = s->b[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(s->b);
    s->b = NULL;
    s->nb = s->n = 0;
}

/* ---- state ---------------------------------------------------------------- */

typedef struct rconn {
    gw_relay_t *r;
    gw_redisconn_t *rc;
    const char *name; /* "command" or "subscriber", for logs */
    int is_sub;
    int hs_left, hs_failed;
} rconn_t;

struct gw_relay {
    uv_loop_t *loop;
    gw_relay_deliver_cb cb;
    void *ud;
    int enabled, stopped;
    int db, node;
    char node_s[8], db_s[8];
    char channel[32];
    gw_relay_key_t key;       /* signs and checks envelopes */
    const char *users_domain; /* our web users' domain: the "to" of every relayed msg */

    rconn_t cmd, sub;
    uv_timer_t refresh, sweep;
    char sha[41];

    uset_t users;
    int sweeping;
    size_t cursor; /* next bucket of the sweep */

    size_t inflight;        /* bytes of envelopes sent and not yet answered */
    uint64_t gap_since_ms;  /* the subscription went down at this time; 0: no gap */
    uint64_t gap_report_ms; /* a gap to report once our users are registered again */
    int gap_quiet_ticks;    /* ticks of gap_timer seen with the sweep done */
    uv_timer_t gap_timer;
    /* Forwards that could not go out (Redis down, or lost with the connection), sent
     * again when the command connection is back: oldest first, bounded. */
    struct fwd *retry_head, *retry_tail;
    size_t retry_bytes;
    void (*gap_cb)(void *ud, uint64_t since_ms);
    void *gap_ud;
    gw_relay_answer_cb answer_cb;
    void *answer_ud;
    uint64_t warned_ms;
    gw_relay_stats_t st;
};

static void sweep_start(gw_relay_t *r);
static void retry_flush(gw_relay_t *r);
static void on_gap_timer(uv_timer_t *t);

/* How often a pending gap report checks whether the directory is registered again. */
#define GAP_TICK_MS 250

/* A forward kept for a retry: the user and the msg frame, as given to gw_relay_forward. */
typedef struct fwd {
    struct fwd *next;
    uint64_t at_ms; /* when it was first given */
    size_t len;
    char user[65];
    char frame[];
} fwd_t;

/* Forwards older than this are not worth retrying: the recipient's browsers recover them. */
#define RETRY_MAX_AGE_MS 60000
#define RETRY_MAX_BYTES  (8u << 20)

/* Counts an error; logs it unless one was logged in the last WARN_EVERY_MS. */
static void drop(gw_relay_t *r, const char *why)
{
    uint64_t now = uv_now(r->loop);

    r->st.errors++;
    if (r->warned_ms == 0 || now - r->warned_ms >= WARN_EVERY_MS) {
        r->warned_ms = now;
        gw_warn("relay", "%s (%" PRIu64 " relay errors so far)", why, r->st.errors);
    }
}

static int where_key(char *buf, size_t len, const char *user)
{
    int n = snprintf(buf, len, "imgw:where:%s", user);

    return n < 0 || (size_t)n >= len ? GW_ERANGE : 0;
}

/* ---- connection state --------------------------------------------------- */

static int cmd_ready(const gw_relay_t *r)
{
    return gw_redisconn_is_up(r->cmd.rc);
}

static int send_argv(rconn_t *c, gw_redisconn_reply_cb *fn, void *priv, int argc, const char **argv,
                     const size_t *lens)
{
    return gw_redisconn_send(c->rc, fn, priv, argc, argv, lens);
}

/*
 * A reply on the command connection made room: forwards that waited for it go
 * out once half of it is free. Called from every reply callback of that
 * connection, since the room may be held by directory writes as well.
 */
static void room_made(gw_relay_t *r)
{
    if (r->retry_head != NULL && cmd_ready(r) && gw_redisconn_pending(r->cmd.rc) < PENDING_MAX / 2)
        retry_flush(r);
}

static void conn_up(rconn_t *c)
{
    gw_relay_t *r = c->r;

    gw_redisconn_up(c->rc);
    gw_info("relay", "redis %s: up%s%s", gw_redisconn_label(c->rc),
            c->is_sub ? ", subscribed to " : "", c->is_sub ? r->channel : "");
    /* Register everyone again: Redis may be new, or a forward may have dropped us. */
    if (cmd_ready(r))
        sweep_start(r);
    if (!c->is_sub)
        retry_flush(r);
    /*
     * Subscribed again after a gap: what was published for us meanwhile is lost,
     * and so is whatever others publish before our users are back in the
     * directory (Redis may have restarted empty). Reported once the sweep that
     * registers them is done.
     */
    if (c->is_sub && r->gap_since_ms != 0) {
        if (r->gap_report_ms == 0 || r->gap_since_ms < r->gap_report_ms)
            r->gap_report_ms = r->gap_since_ms;
        r->gap_since_ms = 0;
        r->gap_quiet_ticks = 0;
        uv_timer_start(&r->gap_timer, on_gap_timer, GAP_TICK_MS, GAP_TICK_MS);
    }
}

/* Reports a gap once both connections are up and the directory sweep is done (twice in a row). */
static void on_gap_timer(uv_timer_t *t)
{
    gw_relay_t *r = t->data;
    uint64_t since = r->gap_report_ms;

    if (r->stopped || since == 0) {
        uv_timer_stop(t);
        return;
    }
    if (!cmd_ready(r) || !gw_redisconn_is_up(r->sub.rc) || r->sweeping) {
        r->gap_quiet_ticks = 0;
        return;
    }
    if (++r->gap_quiet_ticks < 2)
        return;
    uv_timer_stop(t);
    r->gap_report_ms = 0;
    if (r->gap_cb)
        r->gap_cb(r->gap_ud, since);
}

/* A connection went away; for the subscriber, a gap begins. */
static void on_lost(void *ctx)
{
    rconn_t *c = ctx;

    if (c->is_sub && c->r->gap_since_ms == 0)
        c->r->gap_since_ms = gw_now_ms();
}

void gw_relay_on_gap(gw_relay_t *r, void (*cb)(void *ud, uint64_t since_ms), void *ud)
{
    if (r == NULL)
        return;
    r->gap_cb = cb;
    r->gap_ud = ud;
}

/* ---- handshakes ----------------------------------------------------------- */

static void on_message(redisAsyncContext *ac, void *reply, void *priv);

static void on_hs_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    rconn_t *c = gw_redisconn_ctx(ac);
    gw_relay_t *r = c->r;
    redisReply *rep = reply;
    int is_script = priv != NULL;

    if (!gw_redisconn_replied(ac, rep) || !gw_redisconn_in_handshake(c->rc))
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        gw_error("relay", "redis %s: %s failed: %.200s", gw_redisconn_label(c->rc),
                 is_script ? "SCRIPT LOAD" : "SELECT", rep->str);
        c->hs_failed = 1;
    } else if (is_script) {
        if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
            gw_error("relay", "redis %s: unexpected SCRIPT LOAD reply", gw_redisconn_label(c->rc));
            c->hs_failed = 1;
        } else {
            memcpy(r->sha, rep->str, 40);
            r->sha[40] = '\0';
        }
    }
    if (--c->hs_left > 0)
        return;
    if (c->hs_failed)
        gw_redisconn_drop(c->rc, "handshake failed");
    else
        conn_up(c);
}

static int cmd_handshake(rconn_t *c)
{
    gw_relay_t *r = c->r;
    const char *argv[3] = {"SELECT", r->db_s, NULL};
    size_t lens[3] = {6, strlen(r->db_s), 0};
    static char script_tag;

    c->hs_left = 0;
    c->hs_failed = 0;
    if (send_argv(c, on_hs_reply, NULL, 2, argv, lens) != 0)
        return GW_EIO;
    c->hs_left++;
    argv[0] = "SCRIPT";
    argv[1] = "LOAD";
    argv[2] = script_forward;
    lens[0] = 6;
    lens[1] = 4;
    lens[2] = strlen(script_forward);
    if (send_argv(c, on_hs_reply, &script_tag, 3, argv, lens) != 0)
        return GW_EIO;
    c->hs_left++;
    return 0;
}

static int sub_handshake(rconn_t *c, redisAsyncContext *ac)
{
    gw_relay_t *r = c->r;
    const char *argv[2] = {"SUBSCRIBE", r->channel};
    size_t lens[2] = {9, strlen(r->channel)};

    /* Pub/sub is not per database: no SELECT. The confirmation and every
     * message on the channel come to on_message; hiredis keeps the callback
     * until the context is freed and then calls it once with NULL. */
    if (redisAsyncCommandArgv(ac, on_message, r, 2, argv, lens) != REDIS_OK)
        return GW_EIO;
    return 0;
}

/* The socket is up: SELECT and SCRIPT LOAD, or SUBSCRIBE. */
static void on_connected(void *ctx, redisAsyncContext *ac)
{
    rconn_t *c = ctx;

    if ((c->is_sub ? sub_handshake(c, ac) : cmd_handshake(c)) != 0) {
        /* Replies to what did go out arrive as NULL when the context is freed. */
        gw_redisconn_drop(c->rc, "handshake failed");
    }
}

/* ---- directory -------------------------------------------------------------- */

static void on_write_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    rconn_t *c = gw_redisconn_ctx(ac);
    redisReply *rep = reply;

    GW_UNUSED(priv);
    gw_redisconn_replied(ac, rep);
    if (rep == NULL) {
        c->r->st.errors++;
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR)
        drop(c->r, "directory write failed");
    room_made(c->r);
}

/* SADD + EXPIRE (here) or SREM of our node id for user. 0 or a GW_E code. */
static int send_where(gw_relay_t *r, const char *user, int here)
{
    char key[KEY_MAX], ttl[16];
    const char *argv[3];
    size_t lens[3];

    if (where_key(key, sizeof(key), user) != 0)
        return GW_ERANGE;
    argv[0] = here ? "SADD" : "SREM";
    lens[0] = 4;
    argv[1] = key;
    lens[1] = strlen(key);
    argv[2] = r->node_s;
    lens[2] = strlen(r->node_s);
    if (send_argv(&r->cmd, on_write_reply, NULL, 3, argv, lens) != 0)
        return GW_EIO;
    if (!here)
        return 0;
    snprintf(ttl, sizeof(ttl), "%d", WHERE_TTL_S);
    argv[0] = "EXPIRE";
    lens[0] = 6;
    argv[2] = ttl;
    lens[2] = strlen(ttl);
    return send_argv(&r->cmd, on_write_reply, NULL, 3, argv, lens) == 0 ? 0 : GW_EIO;
}

/*
 * One batch of the refresh sweep: pipelines SADD + EXPIRE for the users of
 * the next buckets. Runs on the sweep timer until the whole set is done; a
 * batch waits while many commands are outstanding, so forwards keep room.
 */
static void on_sweep(uv_timer_t *t)
{
    gw_relay_t *r = t->data;
    size_t sent = 0;

    if (!cmd_ready(r)) {
        /* Reconnecting starts a new sweep. */
        r->sweeping = 0;
        uv_timer_stop(&r->sweep);
        return;
    }
    while (r->cursor < r->users.nb && sent < SWEEP_BATCH &&
           gw_redisconn_pending(r->cmd.rc) + 2 <= SWEEP_PENDING_MAX) {
        for (unode_t *e = r->users.b[r->cursor]; e != NULL; e = e->next) {
            if (send_where(r, e->id, 1) != 0) {
                drop(r, "directory refresh not sent");
                r->sweeping = 0;
                uv_timer_stop(&r->sweep);
                return;
            }
            sent++;
        }
        r->cursor++;
    }
    if (r->cursor >= r->users.nb) {
        r->sweeping = 0;
        uv_timer_stop(&r->sweep);
        gw_debug("relay", "directory refreshed for %zu user(s)", r->users.n);
    }
}

static void sweep_start(gw_relay_t *r)
{
    if (r->stopped || r->users.n == 0)
        return;
    r->cursor = 0;
    if (!r->sweeping) {
        r->sweeping = 1;
        uv_timer_start(&r->sweep, on_sweep, 0, SWEEP_TICK_MS);
    }
}

static void on_refresh(uv_timer_t *t)
{
    gw_relay_t *r = t->data;

    if (cmd_ready(r) && !r->sweeping)
        sweep_start(r);
}

/* ---- forwarding ------------------------------------------------------------- */

/*
 * Keeps f for a retry when the command connection is back or has room again
 * (takes ownership). Returns 0 when kept, GW_EFULL when f was too old or the
 * list full, and was freed.
 */
static int retry_keep(gw_relay_t *r, fwd_t *f)
{
    if (r->stopped || gw_now_ms() - f->at_ms > RETRY_MAX_AGE_MS ||
        r->retry_bytes + f->len > RETRY_MAX_BYTES) {
        free(f);
        return GW_EFULL;
    }
    f->next = NULL;
    if (r->retry_tail)
        r->retry_tail->next = f;
    else
        r->retry_head = f;
    r->retry_tail = f;
    r->retry_bytes += f->len;
    return 0;
}

static void on_forward_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    rconn_t *c = gw_redisconn_ctx(ac);
    gw_relay_t *r = c->r;
    redisReply *rep = reply;
    fwd_t *f = priv;
    size_t len = f->len;

    gw_redisconn_replied(ac, rep);
    r->inflight = r->inflight >= len ? r->inflight - len : 0;
    if (rep == NULL) {
        /* Lost with the connection, published or not: again when it is back. */
        r->st.errors++;
        retry_keep(r, f);
        return;
    }
    free(f);
    room_made(r);
    if (rep->type == REDIS_REPLY_INTEGER && rep->integer >= 0) {
        r->st.forwarded += (uint64_t)rep->integer;
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        drop(r, "forward failed in Redis");
        if (strncmp(rep->str, "NOSCRIPT", 8) == 0 && gw_redisconn_is_current(c->rc, ac))
            gw_redisconn_drop(c->rc, "scripts were flushed"); /* the handshake loads it again */
        return;
    }
    drop(r, "unexpected reply to a forward");
}

/* ---- receiving ---------------------------------------------------------------- */

/* Parses a decimal of 1..maxdig digits ending at a space; advances *p past it. */
static int parse_num(const char **p, const char *end, int maxdig, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    int n = 0;

    while (s < end && *s >= '0' && *s <= '9' && n < maxdig) {
        v = v * 10u + (uint64_t)(*s - '0');
        s++;
        n++;
    }
    if (n == 0 || s >= end || *s != ' ')
        return GW_EINVAL;
    *p = s + 1;
    *out = v;
    return 0;
}

int gw_relay_key_derive(gw_relay_key_t *key, const char *secret, size_t len)
{
    static const char label[] = "imgw relay envelope key v1";

    return gw_hmac_sha256(secret, len, label, sizeof(label) - 1, key->k);
}

/* The tag of data[0..len) as TAG_HEX hex digits (no NUL). */
static int tag_hex(const gw_relay_key_t *key, const char *data, size_t len, char hex[TAG_HEX])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char mac[32];

    if (gw_hmac_sha256(key->k, sizeof(key->k), data, len, mac) != 0)
        return GW_EINVAL;
    for (unsigned i = 0; i < TAG_HEX / 2; i++) {
        hex[2 * i] = digits[mac[i] >> 4];
        hex[2 * i + 1] = digits[mac[i] & 15];
    }
    return 0;
}

/*
 * Writes the tag over the zeros at b->data + tag_at: the HMAC of everything after
 * "<tag> ". On failure the envelope (from start) is taken back and b marked overflowed.
 */
static void seal_tail(const gw_relay_key_t *key, gw_sbuf_t *b, size_t start, size_t tag_at)
{
    char hex[TAG_HEX];

    if (b->overflow)
        return;
    if (tag_hex(key, b->data + tag_at + TAG_HEX + 1, b->len - tag_at - TAG_HEX - 1, hex) != 0) {
        b->len = start;
        b->overflow = 1;
        return;
    }
    memcpy(b->data + tag_at, hex, TAG_HEX);
}

void gw_relay_seal(const gw_relay_key_t *key, uint64_t now_ms, int node, int db, const char *user,
                   const char *frame, size_t len, gw_sbuf_t *b)
{
    size_t start, tag_at;

    start = b->len;
    gw_sbuf_puts(b, "imgw2 ");
    tag_at = b->len;
    gw_sbuf_printf(b, "%0*d ", TAG_HEX, 0);
    gw_sbuf_printf(b, "%" PRIu64 " %d %d %s\n", now_ms, node, db, user);
    gw_sbuf_append(b, frame, len);
    seal_tail(key, b, start, tag_at); /* signed: everything after "imgw2 <tag> " */
}

/* The members of a msg frame, strictly: the right types, no NUL, nothing else. */
typedef struct fmembers {
    const char *op, *id, *conv, *from, *to, *body, *kind, *cid;
    size_t body_len;
    int64_t ts;
    int have_ts, have_open;
} fmembers_t;

static int string_member(json_object *v, const char **out, size_t *len)
{
    const char *s;
    int n;

    if (*out != NULL || !json_object_is_type(v, json_type_string))
        return GW_EINVAL;
    s = json_object_get_string(v);
    n = json_object_get_string_len(v);
    if (n < 0 || memchr(s, '\0', (size_t)n) != NULL)
        return GW_EINVAL;
    *out = s;
    if (len)
        *len = (size_t)n;
    return 0;
}

static int read_members(json_object *o, fmembers_t *f)
{
    memset(f, 0, sizeof(*f));
    json_object_object_foreach(o, key, v)
    {
        int rc = GW_EINVAL;
        if (strcmp(key, "op") == 0)
            rc = string_member(v, &f->op, NULL);
        else if (strcmp(key, "id") == 0)
            rc = string_member(v, &f->id, NULL);
        else if (strcmp(key, "conv") == 0)
            rc = string_member(v, &f->conv, NULL);
        else if (strcmp(key, "from") == 0)
            rc = string_member(v, &f->from, NULL);
        else if (strcmp(key, "to") == 0)
            rc = string_member(v, &f->to, NULL);
        else if (strcmp(key, "body") == 0)
            rc = string_member(v, &f->body, &f->body_len);
        else if (strcmp(key, "kind") == 0)
            rc = string_member(v, &f->kind, NULL);
        else if (strcmp(key, "cid") == 0)
            rc = string_member(v, &f->cid, NULL);
        else if (strcmp(key, "ts") == 0 && !f->have_ts && json_object_is_type(v, json_type_int)) {
            f->ts = json_object_get_int64(v);
            f->have_ts = 1;
            rc = 0;
        } else if (strcmp(key, "open") == 0 && !f->have_open &&
                   json_object_is_type(v, json_type_boolean)) {
            f->have_open = 1; /* the receiver decides "open" for each of its sessions */
            rc = 0;
        }
        if (rc != 0)
            return GW_EINVAL;
    }
    return 0;
}

static int cid_ok(const char *cid)
{
    size_t n = strlen(cid);

    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)cid[i] < 0x21 || (unsigned char)cid[i] > 0x7e)
            return 0;
    return 1;
}

int gw_relay_open(const gw_relay_key_t *key, const char *users_domain, int db, uint64_t now_ms,
                  const char *env, size_t len, gw_relay_env_t *out, const char **why)
{
    const char *p = env, *end = env + len, *nl, *frame, *signed_at;
    char hex[TAG_HEX];
    uint64_t ts, node, edb;
    size_t ulen, dlen = strlen(users_domain);
    json_tokener *tok;
    json_object *o;
    fmembers_t f;

    memset(out, 0, sizeof(*out));
    if (len > ENVELOPE_MAX || len < 6 || memcmp(p, "imgw", 4) != 0) {
        *why = "not an imgw envelope";
        return GW_EINVAL;
    }
    if (memcmp(p, "imgw2 ", 6) != 0) {
        *why = "unsigned or unknown envelope version";
        return GW_EAUTH;
    }
    p += 6;
    nl = memchr(p, '\n', (size_t)(end - p) < HEADER_MAX ? (size_t)(end - p) : HEADER_MAX);
    if (nl == NULL || nl - p < TAG_HEX + 1 || p[TAG_HEX] != ' ') {
        *why = "bad envelope header";
        return GW_EINVAL;
    }
    signed_at = p + TAG_HEX + 1;
    p = signed_at;
    if (parse_num(&p, nl, 20, &ts) != 0 || parse_num(&p, nl, 4, &node) != 0 ||
        parse_num(&p, nl, 4, &edb) != 0 || node > 1023) {
        *why = "bad envelope header";
        return GW_EINVAL;
    }
    if (edb != (uint64_t)db) {
        *why = "an envelope for another Redis database";
        return GW_ENOTFOUND;
    }
    ulen = (size_t)(nl - p);
    if (ulen == 0 || ulen >= sizeof(out->user) || memchr(p, '\0', ulen) != NULL) {
        *why = "bad user id";
        return GW_EINVAL;
    }
    memcpy(out->user, p, ulen);
    out->user[ulen] = '\0';
    if (!gw_user_id_ok(out->user)) {
        *why = "bad user id";
        return GW_EINVAL;
    }
    if (tag_hex(key, signed_at, (size_t)(end - signed_at), hex) != 0 ||
        !gw_ct_equal(hex, env + 6, TAG_HEX)) {
        *why = "bad signature (relay_secret differs, or a forgery)";
        return GW_EAUTH;
    }
    if (ts + GW_RELAY_MAX_SKEW_MS < now_ms || ts > now_ms + GW_RELAY_MAX_SKEW_MS) {
        *why = "too old or from the future (clocks apart, or a replay)";
        return GW_EEXPIRED;
    }
    out->node = (int)node;
    frame = nl + 1;
    *why = "not a msg frame for its user";
    if (end - frame == 0 || (size_t)(end - frame) > FRAME_MAX)
        return GW_EINVAL;
    tok = json_tokener_new_ex(4);
    if (tok == NULL)
        return GW_EINVAL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, frame, (int)(end - frame));
    if (o == NULL || json_tokener_get_error(tok) != json_tokener_success ||
        (size_t)json_tokener_get_parse_end(tok) != (size_t)(end - frame) ||
        !json_object_is_type(o, json_type_object)) {
        json_tokener_free(tok);
        json_object_put(o);
        return GW_EINVAL;
    }
    json_tokener_free(tok);
    out->root_ = o;
    if (read_members(o, &f) != 0 || f.op == NULL || strcmp(f.op, "msg") != 0 || f.id == NULL ||
        f.from == NULL || f.conv == NULL || f.to == NULL || f.body == NULL || !f.have_ts ||
        f.ts < 0)
        goto bad;
    out->m.id = gw_proto_parse_id(f.id);
    /* The recipient is exactly the user's JID; the peer is the sender, a bare JID. */
    if (out->m.id == 0 || strncmp(f.to, out->user, ulen) != 0 || f.to[ulen] != '@' ||
        strcmp(f.to + ulen + 1, users_domain) != 0 || strlen(f.to) != ulen + 1 + dlen ||
        !gw_jid_bare_ok(f.from, strlen(f.from)) || strcmp(f.conv, f.from) != 0)
        goto bad;
    if (f.body_len == 0 || !gw_xml_text_ok(f.body, f.body_len))
        goto bad;
    if (f.kind != NULL && strcmp(f.kind, "text") != 0 && strcmp(f.kind, "image") != 0)
        goto bad;
    if (f.cid != NULL && !cid_ok(f.cid))
        goto bad;
    out->m.ts = (uint64_t)f.ts;
    out->m.from = f.from;
    out->m.to = f.to;
    out->m.body = f.body;
    out->m.body_len = f.body_len;
    out->m.kind = f.kind && strcmp(f.kind, "image") == 0 ? "image" : "text";
    out->m.cid = f.cid;
    return 0;
bad:
    gw_relay_env_free(out);
    return GW_EINVAL;
}

void gw_relay_env_free(gw_relay_env_t *e)
{
    if (e->root_)
        json_object_put((json_object *)e->root_);
    memset(e, 0, sizeof(*e));
}

/* Another gateway forwarded to us a user we no longer hold: leave their set. */
static void forget_here(gw_relay_t *r, const char *user)
{
    if (cmd_ready(r) && gw_redisconn_pending(r->cmd.rc) < PENDING_MAX &&
        send_where(r, user, 0) != 0)
        r->st.errors++;
}

/* ---- control envelopes: answers for another gateway -------------------------- */

static int answer_token_ok(const char *s, size_t n, const char *allowed, size_t max)
{
    if (n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strchr(allowed, s[i]) == NULL || s[i] == '\0')
            return 0;
    return 1;
}

int gw_relay_open_answer(const gw_relay_key_t *key, int db, uint64_t now_ms, const char *env,
                         size_t len, char *id, int *status, char *detail)
{
    static const char idchars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-";
    static const char detchars[] = "abcdefghijklmnopqrstuvwxyz-";
    const char *end = env + len, *p, *nl, *sp1, *sp2;
    char hex[TAG_HEX], num[24];
    unsigned long long ts;
    long n;
    int envdb, node;
    char *e;

    if (len < 6 + TAG_HEX + 1 || len > 512 || memcmp(env, "imgwc ", 6) != 0 ||
        memchr(env, '\0', len) != NULL)
        return GW_EINVAL;
    p = env + 6;
    if (p[TAG_HEX] != ' ' ||
        tag_hex(key, p + TAG_HEX + 1, (size_t)(end - p - TAG_HEX - 1), hex) != 0 ||
        !gw_ct_equal(hex, p, TAG_HEX))
        return GW_EAUTH;
    p += TAG_HEX + 1;
    nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL || (size_t)(nl - p) >= sizeof(num) * 3)
        return GW_EINVAL;
    {
        char head[72];
        memcpy(head, p, (size_t)(nl - p));
        head[nl - p] = '\0';
        if (sscanf(head, "%20llu %d %d", &ts, &node, &envdb) != 3 || node < 0 || node > 1023)
            return GW_EINVAL;
    }
    if (envdb != db)
        return GW_ENOTFOUND;
    if ((ts > now_ms ? ts - now_ms : now_ms - ts) > GW_RELAY_MAX_SKEW_MS)
        return GW_EEXPIRED;
    p = nl + 1;
    sp1 = memchr(p, ' ', (size_t)(end - p));
    sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
    if (sp1 == NULL || sp2 == NULL || sp1 == p ||
        !answer_token_ok(p, (size_t)(sp1 - p), idchars, 64) ||
        (size_t)(sp2 - sp1 - 1) >= sizeof(num) || sp2 == sp1 + 1 ||
        !answer_token_ok(sp2 + 1, (size_t)(end - sp2 - 1), detchars, 40))
        return GW_EINVAL;
    memcpy(num, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    num[sp2 - sp1 - 1] = '\0';
    n = strtol(num, &e, 10);
    if (*e != '\0' || n < -1000 || n > 0)
        return GW_EINVAL;
    memcpy(id, p, (size_t)(sp1 - p));
    id[sp1 - p] = '\0';
    memcpy(detail, sp2 + 1, (size_t)(end - sp2 - 1));
    detail[end - sp2 - 1] = '\0';
    *status = (int)n;
    return 0;
}

void gw_relay_on_answer(gw_relay_t *r, gw_relay_answer_cb cb, void *ud)
{
    if (r == NULL)
        return;
    r->answer_cb = cb;
    r->answer_ud = ud;
}

static void on_answer_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    rconn_t *c = gw_redisconn_ctx(ac);

    GW_UNUSED(priv);
    gw_redisconn_replied(ac, reply);
    if (reply != NULL)
        room_made(c->r);
}

void gw_relay_seal_answer(const gw_relay_key_t *key, uint64_t now_ms, int node, int db,
                          const char *iq_id, int status, const char *detail, gw_sbuf_t *b)
{
    size_t start = b->len, tag_at;

    gw_sbuf_puts(b, "imgwc ");
    tag_at = b->len;
    gw_sbuf_printf(b, "%0*d ", TAG_HEX, 0);
    gw_sbuf_printf(b, "%" PRIu64 " %d %d\n%s %d %s", now_ms, node, db, iq_id, status,
                   detail ? detail : "");
    seal_tail(key, b, start, tag_at);
}

void gw_relay_pass_answer(gw_relay_t *r, int node, const char *iq_id, int status,
                          const char *detail)
{
    gw_sbuf_t b;
    char chan[32];
    const char *argv[3];
    size_t lens[3];

    if (r == NULL || !r->enabled || r->stopped || !cmd_ready(r) || node < 0 || node > 1023)
        return;
    gw_sbuf_init(&b, 512);
    gw_relay_seal_answer(&r->key, gw_now_ms(), r->node, r->db, iq_id, status, detail, &b);
    if (!b.overflow) {
        snprintf(chan, sizeof(chan), "imgw:node:%d", node);
        argv[0] = "PUBLISH";
        lens[0] = 7;
        argv[1] = chan;
        lens[1] = strlen(chan);
        argv[2] = b.data;
        lens[2] = b.len;
        if (send_argv(&r->cmd, on_answer_reply, NULL, 3, argv, lens) != 0)
            drop(r, "answer for another gateway not passed on");
    }
    gw_sbuf_free(&b);
}

static void deliver_answer(gw_relay_t *r, const char *env, size_t len)
{
    char id[72], detail[48];
    int status;
    int rc = gw_relay_open_answer(&r->key, r->db, gw_now_ms(), env, len, id, &status, detail);

    if (rc == GW_ENOTFOUND)
        return;
    if (rc != 0) {
        r->st.refused++;
        drop(r, "ignored a relayed answer: bad envelope");
        return;
    }
    if (r->answer_cb)
        r->answer_cb(r->answer_ud, id, status, detail);
}

static void deliver(gw_relay_t *r, const char *env, size_t len)
{
    gw_relay_env_t e;
    const char *why = "";
    char text[160];
    int rc = gw_relay_open(&r->key, r->users_domain, r->db, gw_now_ms(), env, len, &e, &why);

    if (rc == GW_ENOTFOUND) {
        /* Another deployment on the same Redis server, with an overlapping node id. */
        drop(r, "ignored a relayed message for another Redis database");
        return;
    }
    if (rc != 0) {
        r->st.refused++;
        snprintf(text, sizeof(text), "ignored a relayed message: %s", why);
        drop(r, text);
        return;
    }
    if (!uset_has(&r->users, e.user)) {
        gw_debug("relay", "relayed message for %s, who has no session here", e.user);
        forget_here(r, e.user);
        gw_relay_env_free(&e);
        return;
    }
    r->st.received++;
    r->cb(r->ud, e.user, &e.m);
    gw_relay_env_free(&e);
}

static void on_message(redisAsyncContext *ac, void *reply, void *priv)
{
    rconn_t *c = gw_redisconn_ctx(ac);
    gw_relay_t *r = priv;
    redisReply *rep = reply, *kind, *chan;

    if (rep == NULL) {
        gw_redisconn_lost(ac);
        return;
    }
    if (!gw_redisconn_is_current(c->rc, ac))
        return;
    /* hiredis has checked that this is an array of at least two strings. */
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return;
    kind = rep->element[0];
    chan = rep->element[1];
    if (chan->len != strlen(r->channel) || memcmp(chan->str, r->channel, chan->len) != 0)
        return;
    if (kind->len == 9 && memcmp(kind->str, "subscribe", 9) == 0) {
        if (gw_redisconn_in_handshake(c->rc))
            conn_up(c);
        return;
    }
    if (kind->len != 7 || memcmp(kind->str, "message", 7) != 0)
        return;
    if (rep->element[2]->type != REDIS_REPLY_STRING) {
        drop(r, "ignored a relayed message: not a string");
        return;
    }
    if (rep->element[2]->len > 6 && memcmp(rep->element[2]->str, "imgwc ", 6) == 0)
        deliver_answer(r, rep->element[2]->str, rep->element[2]->len);
    else
        deliver(r, rep->element[2]->str, rep->element[2]->len);
}

/* ---- public API ----------------------------------------------------------- */

/* GW_EINVAL when the host name is too long, or GW_ENOMEM. */
static int conn_init(gw_relay_t *r, const gw_config_t *cfg, rconn_t *c, const char *name,
                     int is_sub)
{
    gw_redisconn_opts_t o = {
        .module = "relay",
        .name = name,
        .host = cfg->redis_host,
        .port = cfg->redis_port,
        .user = cfg->redis_user,
        .password = cfg->redis_password,
        .connect_timeout_ms = CONNECT_TIMEOUT_MS,
        .handshake_timeout_ms = CONNECT_TIMEOUT_MS,
        .command_timeout_ms = COMMAND_TIMEOUT_MS,
        .on_connected = on_connected,
        .on_lost = on_lost,
        .ctx = c,
    };

    c->r = r;
    c->name = name;
    c->is_sub = is_sub;
    return gw_redisconn_new(r->loop, &o, &c->rc);
}

int gw_relay_new(uv_loop_t *loop, const gw_config_t *cfg, gw_relay_deliver_cb cb, void *ud,
                 gw_relay_t **out)
{
    gw_relay_t *r = calloc(1, sizeof(*r));
    int rc;

    *out = NULL;
    if (r == NULL)
        return GW_ENOMEM;
    r->loop = loop;
    r->cb = cb;
    r->ud = ud;
    *out = r;
    if (cfg->redis_host == NULL || cfg->redis_host[0] == '\0') {
        gw_info("relay", "redis_host is empty: no routing between gateways");
        return 0;
    }
    r->db = cfg->redis_db;
    r->node = cfg->node_id;
    r->users_domain = cfg->mode_value == GW_MODE_SAMEJID ? cfg->xmpp_domain : cfg->component_domain;
    {
        /* Every gateway of a domain shares component_secret; relay_secret overrides it. */
        const char *secret = cfg->relay_secret[0] ? cfg->relay_secret : cfg->component_secret;
        if (gw_relay_key_derive(&r->key, secret, strlen(secret)) != 0) {
            free(r);
            *out = NULL;
            return GW_EINVAL;
        }
    }
    snprintf(r->node_s, sizeof(r->node_s), "%d", r->node);
    snprintf(r->db_s, sizeof(r->db_s), "%d", r->db);
    snprintf(r->channel, sizeof(r->channel), "imgw:node:%d", r->node);
    rc = conn_init(r, cfg, &r->cmd, "command", 0);
    if (rc == 0)
        rc = conn_init(r, cfg, &r->sub, "subscriber", 1);
    if (rc == GW_EINVAL) {
        gw_error("relay", "redis_host is too long: no routing between gateways");
        gw_redisconn_free(r->cmd.rc);
        r->cmd.rc = NULL;
        return 0;
    }
    if (rc != 0) {
        gw_redisconn_free(r->cmd.rc);
        free(r);
        *out = NULL;
        return rc;
    }
    r->enabled = 1;
    uv_timer_init(loop, &r->refresh);
    uv_timer_init(loop, &r->sweep);
    uv_timer_init(loop, &r->gap_timer);
    r->gap_timer.data = r;
    r->refresh.data = r->sweep.data = r;
    /* The refresh timer should not keep the loop alive on its own. */
    uv_timer_start(&r->refresh, on_refresh, REFRESH_MS, REFRESH_MS);
    uv_unref((uv_handle_t *)&r->refresh);
    gw_redisconn_start(r->cmd.rc);
    gw_redisconn_start(r->sub.rc);
    return 0;
}

void gw_relay_user_here(gw_relay_t *r, const char *user, int here)
{
    int rc, grown;

    if (r == NULL || !r->enabled || r->stopped || user == NULL || !gw_user_id_ok(user))
        return;
    if (here) {
        rc = uset_add(&r->users, user, &grown);
        if (rc < 0) {
            drop(r, "out of memory for the user directory");
            return;
        }
        if (grown && r->sweeping)
            r->cursor = 0; /* buckets moved: start over rather than miss anyone */
    } else {
        uset_del(&r->users, user);
    }
    /* Down or busy: the sweep after reconnecting, or the next refresh, catches up. */
    if (!cmd_ready(r) || gw_redisconn_pending(r->cmd.rc) + 2 > PENDING_MAX) {
        drop(r, "directory update not sent: Redis is down or busy");
        return;
    }
    if (send_where(r, user, here) != 0)
        drop(r, "directory update not sent");
}

/* Sends f now (takes ownership), or keeps it for a retry when that cannot be done now. */
static void forward_one(gw_relay_t *r, fwd_t *f)
{
    char key[KEY_MAX];
    const char *argv[7];
    size_t lens[7];
    gw_sbuf_t env;

    if (where_key(key, sizeof(key), f->user) != 0) {
        free(f);
        return;
    }
    if (!cmd_ready(r)) {
        drop(r, "not forwarded now: Redis is down (kept for a retry)");
        retry_keep(r, f);
        return;
    }
    /*
     * Redis is up but behind: the forward waits in the retry list (bounded as
     * for a Redis that is down) and goes out as replies come back, rather
     * than being dropped while the user's session would never know. Later
     * forwards queue behind it, so a user's messages keep their order.
     */
    if (r->retry_head != NULL || gw_redisconn_pending(r->cmd.rc) >= PENDING_MAX ||
        r->inflight + f->len > INFLIGHT_MAX) {
        if (retry_keep(r, f) != 0)
            drop(r, "not forwarded: too many forwards outstanding, and the retry list is full");
        return;
    }
    gw_sbuf_init(&env, ENVELOPE_MAX);
    gw_relay_seal(&r->key, gw_now_ms(), r->node, r->db, f->user, f->frame, f->len, &env);
    if (env.overflow) {
        gw_sbuf_free(&env);
        drop(r, "not forwarded: envelope too large or out of memory");
        free(f);
        return;
    }
    argv[0] = "EVALSHA";
    lens[0] = 7;
    argv[1] = r->sha;
    lens[1] = 40;
    argv[2] = "1";
    lens[2] = 1;
    argv[3] = key;
    lens[3] = strlen(key);
    argv[4] = r->node_s;
    lens[4] = strlen(r->node_s);
    argv[5] = env.data;
    lens[5] = env.len;
    argv[6] = uset_has(&r->users, f->user) ? "0" : "1";
    lens[6] = 1;
    /* hiredis copies the command into its output buffer. */
    if (send_argv(&r->cmd, on_forward_reply, f, 7, argv, lens) != 0) {
        drop(r, "not forwarded now: Redis refused the command (kept for a retry)");
        retry_keep(r, f);
    } else {
        r->inflight += f->len;
    }
    gw_sbuf_free(&env);
}

/* The command connection is back: the kept forwards go out, oldest first. */
static void retry_flush(gw_relay_t *r)
{
    fwd_t *f = r->retry_head;

    r->retry_head = r->retry_tail = NULL;
    r->retry_bytes = 0;
    while (f) {
        fwd_t *next = f->next;
        if (gw_now_ms() - f->at_ms > RETRY_MAX_AGE_MS) {
            drop(r, "not forwarded: waited more than 60 s");
            free(f);
        } else
            forward_one(r, f);
        f = next;
    }
}

void gw_relay_forward(gw_relay_t *r, const char *user, const char *frame, size_t len)
{
    fwd_t *f;

    if (r == NULL || !r->enabled || r->stopped || user == NULL || frame == NULL)
        return;
    if (!gw_user_id_ok(user) || len == 0 || len > FRAME_MAX || strlen(user) >= sizeof(f->user)) {
        drop(r, "not forwarded: bad user id or frame size");
        return;
    }
    f = malloc(sizeof(*f) + len);
    if (f == NULL) {
        drop(r, "not forwarded: out of memory");
        return;
    }
    f->next = NULL;
    f->at_ms = gw_now_ms();
    f->len = len;
    snprintf(f->user, sizeof(f->user), "%s", user);
    memcpy(f->frame, frame, len);
    forward_one(r, f);
}

void gw_relay_get_stats(const gw_relay_t *r, gw_relay_stats_t *st)
{
    if (r == NULL) {
        memset(st, 0, sizeof(*st));
        return;
    }
    *st = r->st;
}

void gw_relay_stop(gw_relay_t *r)
{
    if (r == NULL || !r->enabled || r->stopped)
        return;
    r->stopped = 1;
    uv_close((uv_handle_t *)&r->refresh, NULL);
    uv_close((uv_handle_t *)&r->sweep, NULL);
    uv_close((uv_handle_t *)&r->gap_timer, NULL);
    /* Outstanding callbacks run now with NULL. */
    gw_redisconn_stop(r->cmd.rc);
    gw_redisconn_stop(r->sub.rc);
}

void gw_relay_free(gw_relay_t *r)
{
    if (r == NULL)
        return;
    uset_free(&r->users);
    while (r->retry_head) {
        fwd_t *next = r->retry_head->next;
        free(r->retry_head);
        r->retry_head = next;
    }
    gw_redisconn_free(r->cmd.rc);
    gw_redisconn_free(r->sub.rc);
    free(r);
}
