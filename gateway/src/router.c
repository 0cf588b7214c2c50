/*
 * router.c - sessions, authentication and message routing.
 */
#include "router.h"
#include "cache.h"
#include "front.h"
#include "gw.h"
#include "history.h"
#include "link.h"
#include "log.h"
#include "metrics.h"
#include "msgid.h"
#include "outbox.h"
#include "proto.h"
#include "relay.h"
#include "session.h"
#include "store.h"
#include "text.h"
#include "ticket.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JID_MAX 320

struct gw_router {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    gw_registry_t *reg;
    gw_strset_t *known; /* users known to exist on the XMPP server */
    gw_link_t *link;
    gw_front_t *front;
    gw_store_t *store; /* history (PostgreSQL); may be disabled */
    gw_cache_t *cache; /* hot state (Redis); may be disabled */
    gw_history_t *history;
    gw_relay_t *relay;      /* other gateways' users (Redis); may be disabled */
    gw_outbox_t *outbox;    /* browser sends until the XMPP server has routed them */
    uv_timer_t drain_timer; /* shutdown: waiting for the outbox */
    uint64_t drain_deadline;
    gw_cidmap_t *cids;        /* recent client ids, for retried sends */
    const char *users_domain; /* domain of web users' JIDs */
    gw_msgid_gen_t ids;       /* message id generator */
    gw_msgid_key_t idkey;     /* signs the stanza ids of our sends (msgid.h) */
    char *allowed_domains;    /* where web users may send (allowed_domains, or our two domains) */
    gw_router_stats_t st;
    void (*done)(void *);
    void *done_ud;
};

/* A new message id; its timestamp is gw_msgid_ts(id). */
static uint64_t next_id(gw_router_t *r)
{
    return gw_msgid_next(&r->ids, gw_now_ms());
}

/*
 * The id of a message from XMPP. A message a web user sent through a gateway
 * of this domain comes back with the signed stanza id that gateway gave it
 * (msgid.h); keeping its id lets the sender's ack and the recipient's msg
 * carry the same id and ts. Any other stanza id, whoever sent it, is never
 * used as a key: the message gets a fresh id.
 */
static uint64_t incoming_id(gw_router_t *r, const gw_link_msg_t *lm, const char *from)
{
    uint64_t id = 0;

    if (lm->id != NULL)
        id = gw_msgid_verify(&r->idkey, lm->id, strlen(lm->id), from, lm->origin_id);
    return id ? id : next_id(r);
}

static void send_error(gw_session_t *s, const char *code, const char *reason, const char *cid)
{
    gw_payload_t *p = gw_proto_error(code, reason, cid);

    gw_session_send(s, p);
    gw_payload_unref(p);
}

static void send_payload(gw_session_t *s, gw_payload_t *p)
{
    gw_session_send(s, p);
    gw_payload_unref(p);
}

/* ---- front callbacks ---------------------------------------------------- */

static void on_open(void *ud, gw_session_t *s)
{
    GW_UNUSED(ud);
    gw_debug("router", "session %" PRIu64 " opened", s->id);
}

static void on_close(void *ud, gw_session_t *s)
{
    gw_router_t *r = ud;
    char user[80];

    if (s->user != NULL) {
        int announced = s->user->announced;
        snprintf(user, sizeof(user), "%s", s->user->id);
        if (gw_registry_detach(r->reg, s) == 1 && announced) {
            gw_link_web_user(r->link, user, 0);
            gw_cache_web_user(r->cache, user, 0);
            gw_relay_user_here(r->relay, user, 0);
            gw_debug("router", "user %s has no more sessions", user);
        }
    }
    gw_history_forget(r->history, s);
    free(s->open_conv);
    s->open_conv = NULL;
}

static size_t session_count(void *ud)
{
    gw_router_t *r = ud;

    return gw_registry_session_count(r->reg);
}

static int http_get(void *ud, const char *path, char *buf, size_t len, const char **ctype)
{
    gw_router_t *r = ud;
    gw_router_stats_t st;
    int n, m;

    gw_router_get_stats(r, &st);
    if (strcmp(path, "/health") == 0) {
        *ctype = "application/json";
        n = snprintf(buf, len,
                     "{\"status\":\"%s\",\"link\":\"%s\",\"sessions\":%zu,\"users\":%zu,"
                     "\"link_queue\":%zu,\"version\":\"%s\"}\n",
                     gw_link_is_up(r->link) ? "ok" : "degraded",
                     gw_link_is_up(r->link) ? "up" : "down", st.sessions, st.users,
                     gw_outbox_waiting(r->outbox), GW_VERSION);
        return n < 0 || (size_t)n >= len ? -1 : n;
    }
    if (strcmp(path, "/metrics") == 0) {
        *ctype = "text/plain; version=0.0.4";
        n = snprintf(buf, len,
                     "# TYPE imgw_link_up gauge\nimgw_link_up %d\n"
                     "# TYPE imgw_sessions gauge\nimgw_sessions %zu\n"
                     "# TYPE imgw_users gauge\nimgw_users %zu\n"
                     "# TYPE imgw_link_queue gauge\nimgw_link_queue %zu\n"
                     "# TYPE imgw_outbox gauge\nimgw_outbox %zu\n"
                     "# TYPE imgw_sent_total counter\nimgw_sent_total %" PRIu64 "\n"
                     "# TYPE imgw_sent_queued_total counter\nimgw_sent_queued_total %" PRIu64 "\n"
                     "# TYPE imgw_sends_refused_total counter\nimgw_sends_refused_total %" PRIu64
                     "\n"
                     "# TYPE imgw_delivered_total counter\nimgw_delivered_total %" PRIu64 "\n"
                     "# TYPE imgw_frames_out_total counter\nimgw_frames_out_total %" PRIu64 "\n"
                     "# TYPE imgw_dropped_no_session_total counter\n"
                     "imgw_dropped_no_session_total %" PRIu64 "\n",
                     gw_link_is_up(r->link), st.sessions, st.users, gw_outbox_waiting(r->outbox),
                     gw_outbox_len(r->outbox), st.sent, st.queued, st.refused, st.delivered,
                     st.frames_out, st.dropped);
        if (n < 0 || (size_t)n >= len)
            return -1;
        if (gw_store_enabled(r->store)) {
            gw_store_stats_t ss;
            gw_store_get_stats(r->store, &ss);
            m = snprintf(buf + n, len - (size_t)n,
                         "# TYPE imgw_store_up gauge\nimgw_store_up %d\n"
                         "# TYPE imgw_store_queue gauge\nimgw_store_queue %zu\n"
                         "# TYPE imgw_spool_bytes gauge\nimgw_spool_bytes %zu\n"
                         "# TYPE imgw_stored_total counter\nimgw_stored_total %" PRIu64 "\n"
                         "# TYPE imgw_store_batches_total counter\n"
                         "imgw_store_batches_total %" PRIu64 "\n"
                         "# TYPE imgw_spooled_total counter\nimgw_spooled_total %" PRIu64 "\n"
                         "# TYPE imgw_replayed_total counter\nimgw_replayed_total %" PRIu64 "\n"
                         "# TYPE imgw_store_refused_total counter\n"
                         "imgw_store_refused_total %" PRIu64 "\n"
                         "# TYPE imgw_dead_letters_total counter\n"
                         "imgw_dead_letters_total %" PRIu64 "\n"
                         "# TYPE imgw_store_batch_failures_total counter\n"
                         "imgw_store_batch_failures_total %" PRIu64 "\n"
                         "# TYPE imgw_spool_rejected_total counter\n"
                         "imgw_spool_rejected_total %" PRIu64 "\n",
                         gw_store_is_up(r->store), ss.queued, ss.spool_bytes, ss.written,
                         ss.batches, ss.spooled, ss.replayed, ss.refused, ss.dead_letters,
                         ss.batch_failures, ss.spool_rejected);
            if (m < 0 || (size_t)m >= len - (size_t)n)
                return -1;
            n += m;
        }
        if (r->cfg->redis_host[0] != '\0') {
            gw_relay_stats_t rs;
            gw_relay_get_stats(r->relay, &rs);
            m = snprintf(buf + n, len - (size_t)n,
                         "# TYPE imgw_relay_forwarded_total counter\n"
                         "imgw_relay_forwarded_total %" PRIu64 "\n"
                         "# TYPE imgw_relay_received_total counter\n"
                         "imgw_relay_received_total %" PRIu64 "\n"
                         "# TYPE imgw_relay_refused_total counter\n"
                         "imgw_relay_refused_total %" PRIu64 "\n"
                         "# TYPE imgw_relay_errors_total counter\n"
                         "imgw_relay_errors_total %" PRIu64 "\n",
                         rs.forwarded, rs.received, rs.refused, rs.errors);
            if (m < 0 || (size_t)m >= len - (size_t)n)
                return -1;
            n += m;
        }
        m = gw_metrics_render(buf + n, len - (size_t)n, r->cfg->redis_host[0] ? r->cache : NULL,
                              r->relay);
        return m < 0 ? -1 : n + m;
    }
    return -1;
}

static void welcome(gw_router_t *r, gw_session_t *s)
{
    char jid[JID_MAX];
    char sid[32];

    snprintf(jid, sizeof(jid), "%s@%s", s->user->id, r->users_domain);
    snprintf(sid, sizeof(sid), "%" PRIx64 "-%" PRIu64, (uint64_t)r->cfg->node_id, s->id);
    s->welcomed = 1;
    if (s->tp->welcomed)
        s->tp->welcomed(s->tp_ctx, s);
    if (!s->user->announced) {
        /*
         * The user's first session in: only now, once the account is known to be usable
         * (same-JID mode registers it first), do the companion (the user becomes online
         * on the XMPP server), the cache and the relay hear of the user: a refused login
         * never shows anyone online.
         */
        s->user->announced = 1;
        gw_link_web_user(r->link, s->user->id, 1);
        gw_cache_web_user(r->cache, s->user->id, 1);
        gw_relay_user_here(r->relay, s->user->id, 1);
    }
    send_payload(s, gw_proto_welcome(s->user->id, jid, sid));
    gw_debug("router", "session %" PRIu64 " is %s", s->id, jid);
    if (s->recover_after)
        gw_history_recover(r->history, s, s->recover_after);
}

/*
 * Users known to exist on the XMPP server, so that only a user's first login
 * since start costs a registration round trip. Bounded: when full it is
 * emptied, which only costs a few extra "conflict" answers.
 */
#define KNOWN_MAX 200000

static int known_user(gw_router_t *r, const char *user)
{
    return gw_strset_has(r->known, user);
}

/* User data of a registration request: the user id, not the session, which may close first. */
typedef struct reg_ctx {
    gw_router_t *r;
    char user[];
} reg_ctx_t;

/*
 * Closes the sessions of user still waiting for their welcome: the account
 * cannot be used (code, close 4401: retrying the same ticket cannot help) or
 * cannot be checked now (close 1013, try again later).
 */
static void refuse_waiting(gw_router_t *r, const char *user, int retry, const char *code,
                           const char *reason)
{
    gw_user_t *u = gw_registry_find(r->reg, user);
    gw_session_t *next;

    if (u == NULL)
        return;
    u->registering = 0;
    for (gw_session_t *s = u->sessions; s; s = next) {
        next = s->next; /* closing may detach s */
        if (s->welcomed || s->closing)
            continue;
        send_error(s, code, reason, NULL);
        gw_session_close(s, retry ? 1013 : 4401, retry ? "try again later" : code);
    }
}

/*
 * The companion's answer to a registration. Only a result lets the user in:
 * "created", "exists" (the companion made or adopted this account earlier) or
 * "adopted" (an existing account, adoption being on), or a bare result from an
 * older companion, which answered that way only for a fresh account. Any
 * error, "conflict" included (an account the companion did not create), keeps
 * the user out: taking it as success once let a ticket for "admin" adopt the
 * administrator's account.
 */
static void on_registered(void *ud, int status, const char *condition)
{
    reg_ctx_t *ctx = ud;
    gw_router_t *r = ctx->r;
    const char *user = ctx->user;
    gw_user_t *u;

    if (status == 0) {
        if (gw_strset_count(r->known) >= KNOWN_MAX)
            gw_strset_clear(r->known);
        gw_strset_add(r->known, user);
        if (condition == NULL || strcmp(condition, "exists") != 0)
            gw_info("router", "registered %s@%s through the companion (%s)", user,
                    r->cfg->xmpp_domain, condition ? condition : "created");
        u = gw_registry_find(r->reg, user);
        if (u != NULL) {
            u->registering = 0;
            for (gw_session_t *s = u->sessions; s; s = s->next)
                if (!s->welcomed && !s->closing)
                    welcome(r, s);
        }
    } else if (status == GW_ELINK) {
        gw_warn("router", "registration of %s not answered (%s); refusing the login for now", user,
                condition ? condition : "?");
        refuse_waiting(r, user, 1, "unavailable",
                       "the XMPP server did not confirm the account; try again later");
    } else {
        gw_warn("router", "registration of %s refused by the companion (%s); refusing the login",
                user, condition ? condition : "?");
        refuse_waiting(r, user, 0, "account_unavailable",
                       "this user's XMPP account cannot be used from the web (it exists and was "
                       "not created by imgw, or it is an administrator's)");
    }
    free(ctx);
}

static void handle_hello(gw_router_t *r, gw_session_t *s, const gw_frame_t *f)
{
    char user[72];
    int rc;

    if (f->ticket != NULL) {
        rc = gw_ticket_verify_cfg(r->cfg, f->ticket, gw_now_ms() / 1000u, user, sizeof(user));
        if (rc == GW_EEXPIRED) {
            send_error(s, "expired_ticket", "the ticket has expired", NULL);
            gw_session_close(s, 4401, "expired ticket");
            return;
        }
        if (rc != 0) {
            gw_info("router", "session %" PRIu64 ": ticket refused (%s)", s->id, gw_strerror(rc));
            send_error(s, "bad_ticket", "the ticket is not valid", NULL);
            gw_session_close(s, 4401, "bad ticket");
            return;
        }
    } else if (r->cfg->dev_mode && gw_user_id_ok(f->user)) {
        snprintf(user, sizeof(user), "%s", f->user);
    } else {
        send_error(s, "bad_hello",
                   r->cfg->dev_mode ? "'user' must be a user id ([A-Za-z0-9_.-], 1-64)"
                                    : "a ticket is required",
                   NULL);
        gw_session_close(s, 4401, "bad hello");
        return;
    }
    if (!gw_user_id_canonical(user)) {
        /* Never folded silently: see gw_user_id_canonical() and docs/protocol.md. */
        send_error(s, f->ticket ? "bad_ticket" : "bad_hello",
                   "the user id must be lower case ([a-z0-9_.-], 1-64); it is never case-folded",
                   NULL);
        gw_session_close(s, 4401, "user id not lower case");
        return;
    }
    rc = gw_registry_attach(r->reg, s, user, (unsigned)r->cfg->max_sessions_per_user);
    if (rc == GW_ELIMIT) {
        send_error(s, "too_many_sessions", "this user has too many open sessions", NULL);
        gw_session_close(s, 4429, "too many sessions");
        return;
    }
    if (rc < 0) {
        gw_session_close(s, 1011, "out of memory");
        return;
    }
    if (f->last_id)
        s->recover_after = gw_proto_parse_id(f->last_id);
    if (r->cfg->mode_value == GW_MODE_SAMEJID && !known_user(r, user)) {
        /*
         * Same-JID mode: the XMPP account must exist, and be one the companion
         * manages, before the user can chat. The first session of an unknown user
         * asks the companion to create it and is welcomed when a result comes
         * (on_registered); the user's other sessions wait with it.
         */
        if (!s->user->registering) {
            size_t ulen = strlen(user);
            reg_ctx_t *ud = malloc(sizeof(*ud) + ulen + 1);
            if (ud != NULL) {
                ud->r = r;
                memcpy(ud->user, user, ulen + 1);
            }
            if (ud != NULL && gw_link_register_user(r->link, user, on_registered, ud) == 0) {
                s->user->registering = 1;
                return;
            }
            free(ud);
            /*
             * Link down: the account cannot be checked, and an unchecked user must not act
             * as an XMPP account it may not own. Known users (checked since start) get in.
             */
            send_error(s, "unavailable",
                       "the XMPP server is unreachable and this account is not confirmed yet; try "
                       "again later",
                       NULL);
            gw_session_close(s, 1013, "try again later");
            return;
        } else {
            return; /* welcomed with the other sessions of this user */
        }
    }
    welcome(r, s);
}

/* A browser send between acceptance and durability. */
typedef struct pending_send {
    gw_router_t *r;
    uint64_t session_id; /* the session to acknowledge (the latest that sent this cid) */
    uint64_t id, ts;
    uint64_t t0_ns;           /* for imgw_send_ack_seconds */
    gw_outbox_entry_t *entry; /* in the outbox until routed */
    char user[72];
    char to[JID_MAX];
    char cid[72];
    char kind[8];
    size_t body_len;
    char body[];
} pending_send_t;

/* Shows the sender's other tabs what one tab sent. */
static void echo_to_tabs(gw_router_t *r, gw_session_t *sender, const gw_msg_t *m)
{
    gw_user_t *u = sender->user;
    gw_payload_t *enc[2] = {NULL, NULL}; /* encoded once per value of "open" */

    if (u == NULL || u->nsessions < 2)
        return;
    for (gw_session_t *o = u->sessions; o; o = o->next) {
        int open = o->open_conv && strcmp(o->open_conv, m->to) == 0;
        if (o == sender || !o->welcomed)
            continue;
        if (enc[open] == NULL)
            enc[open] = gw_proto_msg(m, m->to, open);
        gw_history_push(r->history, o, enc[open], m->id);
    }
    gw_payload_unref(enc[0]);
    gw_payload_unref(enc[1]);
}

/* Ends a send that was not accepted: the browser gets code, the cid is forgotten. */
static void refuse_send(pending_send_t *p, gw_session_t *s, const char *code, const char *reason)
{
    p->r->st.refused++;
    gw_cidmap_del(p->r->cids, p->user, p->cid);
    if (s)
        send_error(s, code, reason, p->cid);
    free(p);
}

/*
 * The message is durable (stored, spooled, or there is no store) or was
 * refused: hand it to the outbox (which writes it to XMPP and keeps it until
 * routed), acknowledge it and show it in the other tabs. A duplicate is a
 * retry of a cid the store already has (after a restart, when the recent-cid
 * map is gone): it is acknowledged with the id and ts of the stored message
 * and not written again (the first one is in the outbox journal of the run
 * that took it, or was routed).
 */
static void complete_send(pending_send_t *p, int status, uint64_t stored_id, uint64_t stored_ts)
{
    gw_router_t *r = p->r;
    gw_session_t *s = gw_registry_find_session(r->reg, p->user, p->session_id);
    gw_cid_entry_t *e = gw_cidmap_get(r->cids, p->user, p->cid);
    char from[JID_MAX];
    gw_msg_t m;
    int queued;

    if (e && e->pending == p)
        e->pending = NULL;
    if (s)
        gw_session_answered(s);
    if (status < 0) {
        gw_outbox_cancel(r->outbox, p->entry);
        refuse_send(p, s, "store_unavailable",
                    "the message could not be stored (history database unavailable and the "
                    "spool full); retry later");
        return;
    }
    if (status == GW_STORE_DEAD_LETTER) {
        gw_outbox_cancel(r->outbox, p->entry);
        refuse_send(p, s, "store_refused",
                    "the history database refused this message (kept for the operator); it was "
                    "not sent");
        return;
    }
    if (status == GW_STORE_DUPLICATE) {
        if (stored_id != 0) {
            p->id = stored_id;
            p->ts = stored_ts;
        } else {
            gw_warn("router", "retry of %s's cid %s: the stored id is unknown; acking %" PRIu64,
                    p->user, p->cid, p->id);
        }
        if (e) {
            e->id = p->id;
            e->ts = p->ts;
        }
        gw_outbox_cancel(r->outbox, p->entry);
    } else {
        gw_outbox_ready(r->outbox, p->entry);
    }
    queued = status != GW_STORE_DUPLICATE && !gw_link_is_up(r->link);
    r->st.sent++;
    if (queued)
        r->st.queued++;
    snprintf(from, sizeof(from), "%s@%s", p->user, r->users_domain);
    m.id = p->id;
    m.ts = p->ts;
    m.from = from;
    m.to = p->to;
    m.body = p->body;
    m.body_len = p->body_len;
    m.kind = p->kind;
    m.cid = p->cid;
    if (status == GW_STORE_STORED && gw_store_enabled(r->store))
        gw_history_stored(r->history, &m);
    if (s) {
        send_payload(s, gw_proto_ack(p->cid, p->id, p->ts, queued));
        gw_hist_since(&gw_metrics.send_ack, p->t0_ns);
        echo_to_tabs(r, s, &m);
    }
    free(p);
}

static void on_send_stored(void *ud, int status, uint64_t id, uint64_t ts)
{
    complete_send(ud, status, id, ts);
}

/* Writes one outbox send to XMPP (the outbox's write hook). */
static int outbox_write(void *ud, const gw_outbox_msg_t *m, uint64_t *mark)
{
    gw_router_t *r = ud;
    char from[JID_MAX], idtext[GW_MSGID_STANZA_MAX];

    /* Signed, so that the copy coming back is recognised as ours (msgid.h). */
    snprintf(from, sizeof(from), "%s@%s", m->user, r->users_domain);
    if (gw_msgid_sign(&r->idkey, m->id, from, m->cid, idtext, sizeof(idtext)) != 0)
        return GW_EINVAL;
    return gw_link_send_chat(r->link, m->user, m->to, idtext, m->cid, m->kind, m->body, m->body_len,
                             mark);
}

/* The key a send is stored under: <sender JID>/<cid>, which its copy comes back with. */
static void send_key(const gw_router_t *r, const char *user, const char *cid, char *from,
                     size_t from_len, char *key, size_t key_len)
{
    snprintf(from, from_len, "%s@%s", user, r->users_domain);
    snprintf(key, key_len, "%s/%s", from, cid ? cid : "");
}

static void handle_send(gw_router_t *r, gw_session_t *s, const gw_frame_t *f)
{
    char to[JID_MAX], from[JID_MAX], stanza_id[JID_MAX + 80];
    gw_cid_entry_t *e;
    pending_send_t *p;
    gw_store_msg_t sm;
    gw_outbox_msg_t om;

    if (gw_jid_resolve(f->to, r->users_domain, to, sizeof(to)) != 0) {
        r->st.refused++;
        send_error(s, "bad_recipient", "'to' is not a user id or a bare JID", f->cid);
        return;
    }
    /* Web users reach the site's own domains only (allowed_domains), never an address. */
    if (!gw_domain_list_has(r->allowed_domains, strchr(to, '@') + 1)) {
        r->st.refused++;
        send_error(s, "domain_not_allowed",
                   "'to' is on a domain web users cannot send to (see allowed_domains)", f->cid);
        return;
    }
    /* A retried send (same cid): acknowledge it again, never send it twice. */
    e = gw_cidmap_get(r->cids, s->user->id, f->cid);
    if (e != NULL) {
        r->st.retries++;
        if (e->pending) {
            pending_send_t *ps = e->pending;
            gw_session_t *old = gw_registry_find_session(r->reg, ps->user, ps->session_id);
            /* The ack goes to the session that asked last; it is owed the answer now. */
            if (old != NULL)
                gw_session_answered(old);
            ps->session_id = s->id;
            gw_session_owe(s);
        } else
            send_payload(
                s, gw_proto_ack(f->cid, e->id, e->ts, gw_outbox_is_waiting(r->outbox, e->id)));
        return;
    }
    if (!gw_link_is_up(r->link) && gw_outbox_waiting(r->outbox) >= (size_t)r->cfg->link_queue_max) {
        r->st.refused++;
        send_error(s, "queue_full",
                   "the XMPP server is unreachable and the send queue is full; retry later",
                   f->cid);
        return;
    }
    p = malloc(sizeof(*p) + f->body_len + 1);
    e = gw_cidmap_put(r->cids, s->user->id, f->cid);
    if (p == NULL || e == NULL) {
        free(p);
        send_error(s, "internal", "out of memory", f->cid);
        return;
    }
    p->r = r;
    p->session_id = s->id;
    p->id = next_id(r);
    p->ts = gw_msgid_ts(p->id);
    p->t0_ns = gw_metrics_now_ns();
    snprintf(p->user, sizeof(p->user), "%s", s->user->id);
    snprintf(p->to, sizeof(p->to), "%s", to);
    snprintf(p->cid, sizeof(p->cid), "%s", f->cid);
    snprintf(p->kind, sizeof(p->kind), "%s", f->kind);
    memcpy(p->body, f->body, f->body_len);
    p->body[f->body_len] = '\0';
    p->body_len = f->body_len;
    /* Journalled before anything else: from here on a crash cannot lose it. */
    om.id = p->id;
    om.ts = p->ts;
    om.user = p->user;
    om.to = p->to;
    om.cid = p->cid;
    om.kind = p->kind;
    om.body = p->body;
    om.body_len = p->body_len;
    p->entry = gw_outbox_add(r->outbox, &om);
    if (p->entry == NULL) {
        gw_cidmap_del(r->cids, s->user->id, f->cid);
        free(p);
        r->st.refused++;
        send_error(s, "store_unavailable", "the message could not be kept; retry later", f->cid);
        return;
    }
    e->id = p->id;
    e->ts = p->ts;
    e->pending = p;
    gw_session_owe(s);
    if (!gw_store_enabled(r->store)) {
        complete_send(p, GW_STORE_STORED, p->id, p->ts);
        return;
    }
    send_key(r, p->user, p->cid, from, sizeof(from), stanza_id, sizeof(stanza_id));
    sm.id = p->id;
    sm.ts = p->ts;
    sm.sender = from;
    sm.recipient = p->to;
    sm.body = p->body;
    sm.kind = p->kind;
    sm.cid = p->cid;
    sm.stanza_id = stanza_id;
    if (gw_store_write(r->store, &sm, on_send_stored, p) != 0)
        complete_send(p, GW_ENOMEM, 0, 0);
}

/* ---- sends an earlier run left unconfirmed (outbox journal) -------------- */

typedef struct replay_send {
    gw_router_t *r;
    gw_outbox_entry_t *entry;
    uv_timer_t retry;
} replay_send_t;

static void replay_store(replay_send_t *rs);

static void free_replay(uv_handle_t *h)
{
    free(h->data);
}

static void on_replay_retry(uv_timer_t *t)
{
    replay_store(t->data);
}

static void on_replay_stored(void *ud, int status, uint64_t id, uint64_t ts)
{
    replay_send_t *rs = ud;

    GW_UNUSED(id);
    GW_UNUSED(ts);
    if (status == GW_STORE_DEAD_LETTER) {
        /* The database refuses it for good (kept for the operator): never sent. */
        gw_warn("router", "a send from an earlier run was refused by the database; not sent");
        gw_outbox_cancel(rs->r->outbox, rs->entry);
        uv_close((uv_handle_t *)&rs->retry, free_replay);
        return;
    }
    if (status < 0) {
        /* Not durable yet (database down and spool full): try again later, calmly. */
        uv_timer_start(&rs->retry, on_replay_retry, 5000, 0);
        return;
    }
    /* Stored now, or it was already (a duplicate): either way it may go out. */
    gw_outbox_ready(rs->r->outbox, rs->entry);
    uv_close((uv_handle_t *)&rs->retry, free_replay);
}

static void replay_store(replay_send_t *rs)
{
    const gw_outbox_msg_t *m = gw_outbox_msg(rs->entry);
    char from[JID_MAX], key[JID_MAX + 80];
    gw_store_msg_t sm;

    send_key(rs->r, m->user, m->cid, from, sizeof(from), key, sizeof(key));
    sm.id = m->id;
    sm.ts = m->ts;
    sm.sender = from;
    sm.recipient = m->to;
    sm.body = m->body;
    sm.kind = m->kind;
    sm.cid = m->cid;
    sm.stanza_id = key;
    if (gw_store_write(rs->r->store, &sm, on_replay_stored, rs) != 0)
        uv_timer_start(&rs->retry, on_replay_retry, 5000, 0);
}

static void replay_one(void *ud, gw_outbox_entry_t *e, const gw_outbox_msg_t *m)
{
    gw_router_t *r = ud;
    replay_send_t *rs;

    GW_UNUSED(m);
    if (!gw_store_enabled(r->store)) {
        gw_outbox_ready(r->outbox, e);
        return;
    }
    rs = calloc(1, sizeof(*rs));
    if (rs == NULL) {
        gw_outbox_ready(r->outbox, e); /* better sent without history than lost */
        return;
    }
    rs->r = r;
    rs->entry = e;
    uv_timer_init(r->loop, &rs->retry);
    rs->retry.data = rs;
    replay_store(rs);
}

static void handle_open(gw_router_t *r, gw_session_t *s, const gw_frame_t *f)
{
    char with[JID_MAX];

    free(s->open_conv);
    s->open_conv = NULL;
    if (!f->with_null) {
        if (gw_jid_resolve(f->with, r->users_domain, with, sizeof(with)) != 0) {
            send_payload(s, gw_proto_error_for("bad_recipient",
                                               "'with' is not a user id or a bare JID", "open"));
            return;
        }
        s->open_conv = strdup(with);
    }
    send_payload(s, gw_proto_opened(s->open_conv));
}

static void on_frame(void *ud, gw_session_t *s, const char *data, size_t len)
{
    gw_router_t *r = ud;
    gw_frame_t f;
    const char *code = NULL, *reason = NULL;
    char cid[80];

    if (gw_proto_parse(data, len, (size_t)r->cfg->max_body_bytes, &f, &code, &reason, cid,
                       sizeof(cid)) != 0) {
        char op[16];
        /* Requests answered without a cid are named by their op, so the client knows which. */
        if (!cid[0] && gw_proto_failed_op(data, len, op, sizeof(op)) == 0)
            send_payload(s, gw_proto_error_for(code, reason, op));
        else
            send_error(s, code, reason, cid[0] ? cid : NULL);
        if (s->user == NULL) {
            gw_session_close(s, 4401, "authentication required");
        }
        return;
    }
    if ((s->user == NULL || !s->welcomed) && f.op != GW_OP_HELLO) {
        send_error(s, "not_authenticated", "send hello first", NULL);
        gw_session_close(s, 4401, "authentication required");
        gw_frame_free(&f);
        return;
    }
    switch (f.op) {
    case GW_OP_HELLO:
        if (s->user != NULL)
            send_error(s, "bad_frame", "already authenticated", NULL);
        else
            handle_hello(r, s, &f);
        break;
    case GW_OP_SEND: handle_send(r, s, &f); break;
    case GW_OP_OPEN: handle_open(r, s, &f); break;
    case GW_OP_PING: send_payload(s, gw_proto_pong(f.t_json)); break;
    case GW_OP_HISTORY:
    case GW_OP_READ: {
        char with[JID_MAX];
        if (gw_jid_resolve(f.with, r->users_domain, with, sizeof(with)) != 0) {
            send_payload(s, gw_proto_error_for("bad_recipient",
                                               "'with' is not a user id or a bare JID",
                                               f.op == GW_OP_HISTORY ? "history" : "read"));
            break;
        }
        if (f.op == GW_OP_HISTORY)
            gw_history_page(r->history, s, with, f.before, f.limit);
        else
            gw_history_read(r->history, s, with, f.id);
        break;
    }
    case GW_OP_CHATS: gw_history_chats(r->history, s, f.limit); break;
    }
    gw_frame_free(&f);
}

/* ---- link callbacks ------------------------------------------------------ */

static void list_one_user(void *ud, gw_user_t *u)
{
    gw_router_t *r = ud;

    if (u->announced)
        gw_link_web_list(r->link, u->id);
}

static void list_web_users(void *ud, gw_link_t *l)
{
    gw_router_t *r = ud;

    GW_UNUSED(l);
    gw_registry_foreach(r->reg, list_one_user, r);
}

static void on_link_up(void *ud)
{
    gw_router_t *r = ud;

    gw_metrics.link_ups++;
    gw_info("router", "XMPP link up; %zu session(s) here, %zu send(s) to write",
            gw_registry_session_count(r->reg), gw_outbox_waiting(r->outbox));
    /* Older sends first: what a lost connection may have swallowed, then what waited. */
    gw_outbox_link_up(r->outbox);
}

static void on_link_down(void *ud)
{
    gw_router_t *r = ud;

    gw_metrics.link_downs++;
    gw_outbox_link_down(r->outbox);
    gw_warn("router", "XMPP link down; browser sends wait in the outbox (limit %d)",
            r->cfg->link_queue_max);
}

/* An answer for another gateway's request reached us: pass it on through the relay. */
static void on_foreign_answer(void *ud, int node, const char *id, int status, const char *detail)
{
    gw_router_t *r = ud;

    gw_debug("router", "answer %s belongs to gateway %d; passing it on", id, node);
    gw_relay_pass_answer(r->relay, node, id, status, detail);
}

/* Another gateway passed on an answer to one of our requests. */
static void on_relayed_answer(void *ud, const char *id, int status, const char *detail)
{
    gw_router_t *r = ud;

    gw_link_finish_answer(r->link, id, status, detail);
}

static void on_link_routed(void *ud, uint64_t mark)
{
    gw_router_t *r = ud;

    gw_outbox_routed(r->outbox, mark);
}

/* A message from XMPP: stored first, then shown (live only what history has). */
typedef struct pending_in {
    gw_router_t *r;
    uint64_t id, ts, seq;
    char *from, *to, *body;
    size_t body_len;
    const char *kind; /* static: "text" or "image" */
    char user[72];
} pending_in_t;

static void pending_in_free(pending_in_t *p)
{
    free(p->from);
    free(p->to);
    free(p->body);
    free(p);
}

/* Shows a message from XMPP to the user's sessions here and forwards it to other gateways. */
static void push_incoming(gw_router_t *r, const char *user, const gw_msg_t *m)
{
    gw_user_t *u = gw_registry_find(r->reg, user);
    gw_payload_t *closed = NULL, *opened = NULL;

    if (u == NULL) {
        /* Maybe another gateway holds the user's browsers (allow_multiple). */
        gw_payload_t *p = gw_proto_msg(m, m->from, 0);
        if (p)
            gw_relay_forward(r->relay, user, (const char *)gw_payload_data(p), p->len);
        gw_payload_unref(p);
        r->st.dropped++;
        gw_debug("router", "no session for %s here; message from %s not pushed", m->to, m->from);
        return;
    }
    for (gw_session_t *s = u->sessions; s; s = s->next) {
        int open = s->open_conv && strcmp(s->open_conv, m->from) == 0;
        gw_payload_t **slot = open ? &opened : &closed;
        if (!s->welcomed)
            continue;
        if (*slot == NULL)
            *slot = gw_proto_msg(m, m->from, open);
        gw_history_push(r->history, s, *slot, m->id);
        r->st.frames_out++;
    }
    /* Other gateways may hold more of the user's browsers (allow_multiple). */
    if (closed == NULL)
        closed = gw_proto_msg(m, m->from, 0);
    if (closed != NULL)
        gw_relay_forward(r->relay, user, (const char *)gw_payload_data(closed), closed->len);
    gw_payload_unref(closed);
    gw_payload_unref(opened);
    r->st.delivered++;
}

static void on_incoming_stored(void *ud, int status, uint64_t id, uint64_t ts)
{
    pending_in_t *p = ud;
    gw_router_t *r = p->r;
    gw_msg_t m = {p->id, p->ts, p->from, p->to, p->body, p->body_len, p->kind, NULL};

    if (status < 0) {
        /*
         * Not durable (database down and the spool full): shown nowhere and not
         * acknowledged, so a version-1 companion sends it again later.
         */
        r->st.in_refused++;
        gw_warn("router", "message from %s to %s could not be stored; not shown%s", p->from, p->to,
                p->seq ? " (the companion will send it again)" : "");
        pending_in_free(p);
        return;
    }
    if (status == GW_STORE_DEAD_LETTER) {
        /* Durable, but not in the history (the database refused it): shown nowhere, and
         * acknowledged, since sending it again would only be refused again. */
        gw_link_ack(r->link, p->seq);
        pending_in_free(p);
        return;
    }
    if (status == GW_STORE_DUPLICATE) {
        /*
         * Our own send coming back, or a copy sent again after a crash: shown with the
         * id and ts it was first stored under, so browsers that have it drop it. The
         * cache has it already.
         */
        if (id != 0) {
            m.id = id;
            m.ts = ts;
        }
    } else {
        gw_history_stored(r->history, &m);
    }
    push_incoming(r, p->user, &m);
    gw_link_ack(r->link, p->seq);
    pending_in_free(p);
}

/*
 * Stores a message from XMPP, whether or not its recipient is online here,
 * and shows it once it is durable. The de-duplication key is
 * <sender>/<origin-id or id>, which is also the key a browser send is stored
 * under, so our own sends coming back are stored once.
 */
static void store_incoming(gw_router_t *r, const gw_link_msg_t *lm, const gw_msg_t *m,
                           const char *user)
{
    char stanza_id[JID_MAX + 160];
    gw_store_msg_t sm;
    pending_in_t *p = calloc(1, sizeof(*p));
    const char *key = lm->origin_id ? lm->origin_id : lm->id;

    if (key && strlen(key) < 128)
        snprintf(stanza_id, sizeof(stanza_id), "%s/%s", m->from, key);
    else
        snprintf(stanza_id, sizeof(stanza_id), "gw-%" PRIu64, m->id);
    if (p == NULL)
        return; /* not acknowledged: a version-1 companion sends it again */
    p->r = r;
    p->id = m->id;
    p->ts = m->ts;
    p->seq = lm->seq;
    p->kind = strcmp(m->kind, "image") == 0 ? "image" : "text";
    snprintf(p->user, sizeof(p->user), "%s", user);
    p->from = strdup(m->from);
    p->to = strdup(m->to);
    p->body = malloc(m->body_len + 1);
    if (!p->from || !p->to || !p->body) {
        pending_in_free(p);
        return;
    }
    memcpy(p->body, m->body, m->body_len);
    p->body[m->body_len] = '\0';
    p->body_len = m->body_len;
    sm.id = m->id;
    sm.ts = m->ts;
    sm.sender = m->from;
    sm.recipient = m->to;
    sm.body = m->body;
    sm.kind = m->kind;
    sm.cid = NULL;
    sm.stanza_id = stanza_id;
    if (gw_store_write(r->store, &sm, on_incoming_stored, p) != 0)
        pending_in_free(p);
}

static void on_link_message(void *ud, const gw_link_msg_t *lm)
{
    gw_router_t *r = ud;
    char to[JID_MAX], from[JID_MAX];
    const char *at, *dom;
    char user[72];
    size_t ulen;
    gw_msg_t m;

    if (gw_jid_bare(lm->to, to, sizeof(to)) != 0 ||
        gw_jid_bare(lm->from, from, sizeof(from)) != 0) {
        gw_link_ack(r->link, lm->seq); /* nothing to keep: handled */
        return;
    }
    for (char *p = to; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    for (char *p = from; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    at = strchr(to, '@');
    if (at == NULL) {
        gw_debug("router", "dropped message to the bare domain %s", to);
        gw_link_ack(r->link, lm->seq);
        return;
    }
    dom = at + 1;
    ulen = (size_t)(at - to);
    if (strcmp(dom, r->users_domain) != 0 || ulen >= sizeof(user)) {
        gw_debug("router", "dropped message to %s: not a web user's JID", to);
        gw_link_ack(r->link, lm->seq);
        return;
    }
    memcpy(user, to, ulen);
    user[ulen] = '\0';
    if (!gw_utf8_valid(lm->body, lm->body_len)) {
        gw_link_ack(r->link, lm->seq);
        return;
    }
    m.id = incoming_id(r, lm, from);
    m.ts = gw_msgid_ts(m.id);
    m.from = from;
    m.to = to;
    m.body = lm->body;
    m.body_len = lm->body_len;
    m.kind = lm->kind && strcmp(lm->kind, "image") == 0 ? "image" : "text";
    m.cid = NULL;
    if (gw_store_enabled(r->store)) {
        store_incoming(r, lm, &m, user);
        return;
    }
    /* No history configured: nothing to wait for. */
    push_incoming(r, user, &m);
    gw_link_ack(r->link, lm->seq);
}

/*
 * A message another gateway forwarded for one of our users, checked by
 * relay.c member by member: encoded here like a local one (at most two
 * frames: "open" is each session's own), never passed on as it came.
 */
static void on_relayed(void *ud, const char *user, const gw_msg_t *m)
{
    gw_router_t *r = ud;
    gw_user_t *u = gw_registry_find(r->reg, user);
    gw_payload_t *enc[2] = {NULL, NULL};

    if (u == NULL)
        return;
    for (gw_session_t *s = u->sessions; s; s = s->next) {
        int open = s->open_conv && strcmp(s->open_conv, m->from) == 0;
        if (!s->welcomed)
            continue;
        if (enc[open] == NULL && (enc[open] = gw_proto_msg(m, m->from, open)) == NULL)
            continue;
        gw_history_push(r->history, s, enc[open], m->id);
        r->st.frames_out++;
    }
    gw_payload_unref(enc[0]);
    gw_payload_unref(enc[1]);
}

/*
 * The relay's subscription was down from since_ms: messages other gateways
 * forwarded for our users meanwhile were lost. Every session here recovers
 * from history what was stored since a little before (browsers drop the ids
 * they have).
 */
#define RELAY_GAP_MARGIN_MS 5000

typedef struct gap_ctx {
    gw_router_t *r;
    uint64_t after;
} gap_ctx_t;

static void recover_user(void *ud, gw_user_t *u)
{
    gap_ctx_t *g = ud;

    /* A session recovering already pages on to the present; it needs no second replay. */
    for (gw_session_t *s = u->sessions; s; s = s->next)
        if (s->welcomed && !s->closing && s->recovery == NULL)
            gw_history_recover(g->r->history, s, g->after);
}

static void on_relay_gap(void *ud, uint64_t since_ms)
{
    gw_router_t *r = ud;
    uint64_t from = since_ms > GW_MSGID_EPOCH_MS + RELAY_GAP_MARGIN_MS
                        ? since_ms - RELAY_GAP_MARGIN_MS
                        : GW_MSGID_EPOCH_MS + 1;
    gap_ctx_t g = {r, (from - GW_MSGID_EPOCH_MS) << 22};

    if (!gw_store_enabled(r->store))
        return;
    gw_info("router",
            "relay was down for %" PRIu64 " ms: %zu session(s) recover what they may "
            "have missed",
            gw_now_ms() - since_ms, gw_registry_session_count(r->reg));
    gw_registry_foreach(r->reg, recover_user, &g);
}

/* ---- lifecycle ------------------------------------------------------------ */

int gw_router_start(uv_loop_t *loop, const gw_config_t *cfg, gw_router_t **out)
{
    static const gw_front_cbs_t fcbs = {on_open, on_frame, on_close, session_count, http_get};
    static const gw_link_cbs_t lcbs = {on_link_up,     on_link_down,   on_link_message,
                                       on_link_routed, list_web_users, on_foreign_answer};
    gw_router_t *r = calloc(1, sizeof(*r));
    int rc;

    if (r == NULL)
        return GW_ENOMEM;
    r->loop = loop;
    r->cfg = cfg;
    r->users_domain = cfg->mode_value == GW_MODE_SAMEJID ? cfg->xmpp_domain : cfg->component_domain;
    r->ids.node = (unsigned)cfg->node_id;
    if (cfg->allowed_domains[0] != '\0') {
        r->allowed_domains = strdup(cfg->allowed_domains);
    } else {
        size_t n = strlen(cfg->xmpp_domain) + strlen(cfg->component_domain) + 2;
        r->allowed_domains = malloc(n);
        if (r->allowed_domains)
            snprintf(r->allowed_domains, n, "%s %s", cfg->xmpp_domain, cfg->component_domain);
    }
    if (r->allowed_domains == NULL) {
        rc = GW_ENOMEM;
        goto fail;
    }
    if ((rc = gw_msgid_key_derive(&r->idkey, cfg->component_secret,
                                  strlen(cfg->component_secret))) != 0)
        goto fail;
    if ((rc = gw_registry_new(&r->reg)) != 0)
        goto fail;
    if ((rc = gw_strset_new(&r->known)) != 0)
        goto fail;
    if ((rc = gw_cidmap_new(65536, &r->cids)) != 0)
        goto fail;
    if ((rc = gw_cache_new(loop, cfg, &r->cache)) != 0)
        goto fail;
    if ((rc = gw_relay_new(loop, cfg, on_relayed, r, &r->relay)) != 0)
        goto fail;
    gw_relay_on_gap(r->relay, on_relay_gap, r);
    gw_relay_on_answer(r->relay, on_relayed_answer, r);
    if ((rc = gw_store_new(loop, cfg, cfg->schema_dir, &r->store)) != 0)
        goto fail;
    if ((rc = gw_link_new(loop, cfg, &lcbs, r, &r->link)) != 0)
        goto fail;
    /* Without a store, the outbox journal is what makes an accepted send durable. */
    if ((rc = gw_outbox_new(cfg->spool_dir, !gw_store_enabled(r->store),
                            (size_t)cfg->link_queue_max, outbox_write, r, &r->outbox)) != 0)
        goto fail;
    uv_timer_init(loop, &r->drain_timer);
    r->drain_timer.data = r;
    if ((rc = gw_front_new(loop, cfg, &fcbs, r, &r->front)) != 0)
        goto fail;
    {
        gw_history_env_t env = {loop, cfg, r->store, r->cache, r->reg, r->users_domain};
        if ((rc = gw_history_new(&env, &r->history)) != 0)
            goto fail;
    }
    gw_outbox_replay(r->outbox, replay_one, r);
    gw_link_start(r->link);
    *out = r;
    return 0;

fail:
    gw_router_free(r);
    return rc;
}

static void finish_stop(gw_router_t *r)
{
    size_t left = gw_outbox_len(r->outbox);

    if (left)
        gw_warn("router",
                "%zu accepted send(s) not confirmed by the XMPP server; "
                "they stay in the outbox%s",
                left,
                r->cfg->spool_dir[0] ? " journal for the next start"
                                     : " and are LOST (no spool_dir)");
    uv_close((uv_handle_t *)&r->drain_timer, NULL);
    gw_link_stop(r->link);
    gw_store_stop(r->store);
    gw_cache_stop(r->cache);
    gw_relay_stop(r->relay);
    if (r->done)
        r->done(r->done_ud);
}

/* Shutdown: wait (bounded) until what browsers were told is accepted has been routed. */
static void on_drain(uv_timer_t *t)
{
    gw_router_t *r = t->data;
    size_t left = gw_outbox_len(r->outbox);

    if (left == 0 || !gw_link_is_up(r->link) || gw_now_ms() >= r->drain_deadline) {
        uv_timer_stop(t);
        finish_stop(r);
    }
}

static void on_front_closed(void *ud)
{
    gw_router_t *r = ud;

    gw_front_destroy(r->front);
    r->drain_deadline = gw_now_ms() + (uint64_t)r->cfg->drain_timeout_ms;
    if (gw_outbox_len(r->outbox) > 0 && gw_link_is_up(r->link) && r->cfg->drain_timeout_ms > 0) {
        gw_info("router", "waiting up to %d ms for %zu send(s) to be confirmed",
                r->cfg->drain_timeout_ms, gw_outbox_len(r->outbox));
        uv_timer_start(&r->drain_timer, on_drain, 10, 10);
        return;
    }
    finish_stop(r);
}

void gw_router_stop(gw_router_t *r, void (*done)(void *ud), void *ud)
{
    r->done = done;
    r->done_ud = ud;
    gw_info("router", "shutting down: closing %zu session(s)", gw_registry_session_count(r->reg));
    gw_front_shutdown(r->front, on_front_closed, r);
}

void gw_router_free(gw_router_t *r)
{
    if (r == NULL)
        return;
    gw_front_free(r->front);
    r->front = NULL;
    gw_link_free(r->link);
    gw_outbox_free(r->outbox);
    gw_registry_free(r->reg);
    gw_strset_free(r->known);
    gw_cidmap_free(r->cids);
    gw_history_free(r->history);
    gw_store_free(r->store);
    gw_cache_free(r->cache);
    gw_relay_free(r->relay);
    free(r->allowed_domains);
    free(r);
}

void gw_router_get_stats(const gw_router_t *r, gw_router_stats_t *st)
{
    *st = r->st;
    st->sessions = gw_registry_session_count(r->reg);
    st->users = gw_registry_user_count(r->reg);
}

int gw_router_port(const gw_router_t *r)
{
    return gw_front_port(r->front);
}
