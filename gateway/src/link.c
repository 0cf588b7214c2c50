/*
 * link.c - the component link: libstrophe stepped from the libuv loop.
 *
 * How libstrophe runs here: the library owns the socket and its send queue;
 * we learn the socket through the sockopt callback (where TCP_NODELAY is also
 * set), watch it with a uv_poll, and call xmpp_run_once(ctx, 0) whenever it
 * is readable, writable while output is pending, or when we have queued a
 * stanza (a uv_prepare hook flushes once per loop iteration, so a burst of
 * sends costs one write).
 *
 * Why raw mode: libstrophe's component mode writes a fixed stream header, and
 * Openfire needs an extra allowMultiple attribute to let several gateways
 * share one domain. So the link connects in raw mode, opens the stream with
 * its own attributes and performs the XEP-0114 handshake itself. libstrophe
 * 0.12 has no getter for the stream id the server chose; its debug log line
 * for the received stream header is the only public place it appears, so the
 * log handler picks it up from there.
 *
 * libstrophe 0.12.2 also dereferences conn->sm_state on every stanza, but only
 * xmpp_connect_client() allocates it. Each connection therefore borrows a
 * state from a throw-away client connection that fails at once (see
 * borrow_sm_state()); tests/link keeps stanzas flowing both ways so a
 * regression would crash the suite.
 */
#include "link.h"
#include "gw.h"
#include "log.h"
#include "payload.h"
#include "text.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <strophe.h>
#include <sys/socket.h>

#define NS_STREAMS     "http://etherx.jabber.org/streams"
#define NS_STANZAS     "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_DISCO_INFO  "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_PING        "urn:xmpp:ping"
#define NS_COMPANION   "urn:imgw:companion:0"
#define NS_COMPANION1  "urn:imgw:companion:1"
#define NS_FORWARD     "urn:xmpp:forward:0"
#define NS_PRIVILEGE   "urn:xmpp:privilege:2"
#define NS_SID         "urn:xmpp:sid:0"
#define NS_OOB         "jabber:x:oob"

typedef enum { L_DOWN, L_CONNECTING, L_HANDSHAKE, L_UP, L_STOPPED } lstate_t;

typedef struct pending_iq {
    struct pending_iq *next;
    char id[40];
    char from[256]; /* the only entity whose answer counts: the server's domain */
    uint64_t deadline_ms;
    gw_link_iq_cb cb;
    void *ud;
} pending_iq_t;

struct gw_link {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    gw_link_cbs_t cbs;
    void *ud;

    xmpp_ctx_t *ctx;
    xmpp_log_t logger;
    xmpp_conn_t *conn; /* current connection, or NULL */
    xmpp_conn_t *dead; /* disconnected connection to release outside its callbacks */
    uv_poll_t *poll;   /* watches the current socket; NULL when none */
    int fd;
    int poll_events;

    uv_timer_t reconnect_timer;
    uv_timer_t keepalive_timer;
    uv_timer_t handshake_timer;
    uv_timer_t iq_timer;
    uv_prepare_t flush;
    int dirty;

    lstate_t state;
    unsigned attempt;
    char stream_id[128];
    int stream_id_seen;

    pending_iq_t *iqs; /* companion requests awaiting an answer */
    unsigned long iq_seq;

    /* Companion (docs/companion-protocol.md sections 7-10). */
    enum { C_UNKNOWN, C_V0, C_V1 } companion; /* on this connection, from disco */
    char boot[33];        /* this process's instance: random hex, drawn at start */
    unsigned long v1_seq; /* ids of version-1 requests */
    uint64_t v1_reregistered_ms;
    uint64_t mark_written;   /* chats written so far (their marks are 1..mark_written) */
    uint64_t mark_sent;      /* mark of the last <gateway> written */
    uint64_t mark_confirmed; /* reported through on_routed */
    size_t web_count;        /* web users announced and not taken back */
    uint64_t web_sum;        /* XOR of their FNV-1a-64 hashes */
    gw_sbuf_t web_delta;     /* <on/>/<off/> children waiting to be sent */
    size_t web_ndelta;
    gw_sbuf_t web_full; /* the full list being collected (list_web_users) */
    size_t web_nfull;
    int web_first_chunk;
    gw_sbuf_t acks; /* sequence numbers to acknowledge, space separated */
    size_t nacks;
    uv_timer_t heartbeat_timer;
    uv_timer_t mark_timer;
    uv_timer_t ack_timer;
    uv_timer_t web_timer;
};

static void schedule_reconnect(gw_link_t *l);
static void update_poll(gw_link_t *l);
static void expire_iqs(gw_link_t *l, int all);
static void send_gateway(gw_link_t *l, int lease);
static void send_full_web_list(gw_link_t *l);
static void flush_web_delta(gw_link_t *l);
static void flush_acks(gw_link_t *l);
static void start_heartbeat(gw_link_t *l);

/* ---- logging ---------------------------------------------------------- */

static void strophe_log(void *ud, xmpp_log_level_t level, const char *area, const char *msg)
{
    gw_link_t *l = ud;
    static const char open_prefix[] = "RECV: <stream:stream";

    if (level == XMPP_LEVEL_DEBUG) {
        if (strncmp(msg, open_prefix, sizeof(open_prefix) - 1) == 0) {
            const char *id = strstr(msg, " id=\"");
            l->stream_id[0] = '\0';
            if (id) {
                size_t n;
                id += 5;
                n = strcspn(id, "\"");
                if (n < sizeof(l->stream_id)) {
                    memcpy(l->stream_id, id, n);
                    l->stream_id[n] = '\0';
                }
            }
            l->stream_id_seen = 1;
        }
        gw_debug("xmpp", "%s: %.300s", area, msg);
        return;
    }
    if (level == XMPP_LEVEL_INFO)
        gw_info("xmpp", "%s: %s", area, msg);
    else if (level == XMPP_LEVEL_WARN)
        gw_warn("xmpp", "%s: %s", area, msg);
    else
        gw_error("xmpp", "%s: %s", area, msg);
}

/* ---- what a lost connection leaves behind ------------------------------ */

/*
 * Drops the stanzas libstrophe had not yet written. Chats come back from the
 * router's outbox after the reconnect (it keeps them until routed); the web
 * user list, heartbeats and disco are sent afresh on every handshake; an
 * acknowledgement lost here only makes the companion send that copy again.
 */
static void drop_unsent(gw_link_t *l, xmpp_conn_t *conn)
{
    char *s;
    size_t n = 0;

    while ((s = xmpp_conn_send_queue_drop_element(conn, XMPP_QUEUE_YOUNGEST)) != NULL) {
        if (strlen(s) > 1) /* keep-alive whitespace does not count */
            n++;
        xmpp_free(l->ctx, s);
    }
    if (n)
        gw_info("link", "%zu unsent stanza(s) dropped with the connection; chats are written again",
                n);
}

/* ---- libuv plumbing ---------------------------------------------------- */

static void step(gw_link_t *l)
{
    l->dirty = 0;
    if (l->iqs)
        expire_iqs(l, 0);
    xmpp_run_once(l->ctx, 0);
    /*
     * Without a version-1 companion, a chat handed to the kernel is as routed
     * as XEP-0114 can tell (docs/companion-protocol.md section 10).
     */
    if (l->state == L_UP && l->conn != NULL && l->companion == C_V0 &&
        l->mark_confirmed < l->mark_written && xmpp_conn_send_queue_len(l->conn) == 0) {
        l->mark_confirmed = l->mark_written;
        l->cbs.on_routed(l->ud, l->mark_confirmed);
    }
    if (l->dead != NULL && l->dead != l->conn) {
        /* Released here, never from inside its own callback. */
        xmpp_conn_release(l->dead);
        l->dead = NULL;
    }
    update_poll(l);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    gw_link_t *l = h->data;

    GW_UNUSED(events);
    if (status < 0)
        gw_debug("link", "poll error: %s", uv_strerror(status));
    if (l != NULL)
        step(l);
}

static void on_flush(uv_prepare_t *h)
{
    gw_link_t *l = h->data;

    if (l->dirty && l->conn != NULL)
        step(l);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void close_poll(gw_link_t *l)
{
    if (l->poll) {
        l->poll->data = NULL;
        uv_close((uv_handle_t *)l->poll, free_handle);
        l->poll = NULL;
    }
    l->fd = -1;
    l->poll_events = 0;
}

static void update_poll(gw_link_t *l)
{
    int want;

    if (l->poll == NULL || l->conn == NULL)
        return;
    want = UV_READABLE;
    if (l->state == L_CONNECTING || xmpp_conn_send_queue_len(l->conn) > 0)
        want |= UV_WRITABLE;
    if (want != l->poll_events) {
        uv_poll_start(l->poll, want, on_poll);
        l->poll_events = want;
    }
}

static int on_sockopt(xmpp_conn_t *conn, void *sock)
{
    int fd = *(int *)sock;
    int one = 1;

    /* Nagle adds tens of milliseconds to every small stanza at low rates. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return xmpp_sockopt_cb_keepalive(conn, sock);
}

/* ---- stanzas ----------------------------------------------------------- */

static void send_stanza_text(gw_link_t *l, gw_sbuf_t *b)
{
    if (!b->overflow && l->conn != NULL && l->state == L_UP) {
        xmpp_send_raw(l->conn, b->data, b->len);
        l->dirty = 1;
    }
    gw_sbuf_free(b);
}

static void attr(gw_sbuf_t *b, const char *name, const char *v)
{
    if (v == NULL)
        return;
    gw_sbuf_printf(b, " %s='", name);
    gw_xml_escape(b, v, strlen(v));
    gw_sbuf_puts(b, "'");
}

static void reply_iq(gw_link_t *l, xmpp_stanza_t *iq, const char *type, const char *inner)
{
    gw_sbuf_t b;

    gw_sbuf_init(&b, 65536);
    gw_sbuf_puts(&b, "<iq");
    attr(&b, "type", type);
    attr(&b, "id", xmpp_stanza_get_id(iq));
    attr(&b, "from", xmpp_stanza_get_to(iq));
    attr(&b, "to", xmpp_stanza_get_from(iq));
    if (inner) {
        gw_sbuf_puts(&b, ">");
        gw_sbuf_puts(&b, inner);
        gw_sbuf_puts(&b, "</iq>");
    } else {
        gw_sbuf_puts(&b, "/>");
    }
    send_stanza_text(l, &b);
}

#define DISCO_ID "imgw-companion-disco"

/* Same-JID mode needs the companion: say so plainly when the server lacks it. */
static void check_companion(gw_link_t *l, xmpp_stanza_t *st, const char *type)
{
    xmpp_stanza_t *q = xmpp_stanza_get_child_by_name(st, "query");
    xmpp_stanza_t *c = q ? xmpp_stanza_get_children(q) : NULL;

    int v0 = 0, v1 = 0;

    if (l->state != L_UP || l->companion != C_UNKNOWN)
        return;
    uv_timer_stop(&l->handshake_timer);
    if (strcmp(type, "result") == 0)
        for (; c; c = xmpp_stanza_get_next(c)) {
            const char *var =
                xmpp_stanza_is_tag(c) && strcmp(xmpp_stanza_get_name(c), "feature") == 0
                    ? xmpp_stanza_get_attribute(c, "var")
                    : NULL;
            if (var && strcmp(var, NS_COMPANION) == 0)
                v0 = 1;
            else if (var && strcmp(var, NS_COMPANION1) == 0)
                v1 = 1;
        }
    if (v0 && v1 && l->cfg->companion_v1) {
        gw_info("link", "companion found on %s (version 1: leases, acknowledged copies and sends)",
                l->cfg->xmpp_domain);
        l->companion = C_V1;
        send_gateway(l, l->cfg->companion_lease_s);
        send_full_web_list(l);
        start_heartbeat(l);
        return;
    }
    /* Version 0 (or none): presence per user, chats routed once flushed. */
    l->companion = C_V0;
    if (v0) {
        gw_info("link", "companion found on %s (version 0)", l->cfg->xmpp_domain);
        send_full_web_list(l);
        l->dirty = 1;
        return;
    }
    gw_warn("link",
            "%s does not announce the imgw companion (" NS_COMPANION "): same-JID mode needs "
            "openfire-plugin/ or prosody-plugin/ installed and plugin.imgw.gateway.domain / "
            "imgw_gateway set to %s",
            l->cfg->xmpp_domain, l->cfg->component_domain);
}

/* ---- companion version 1 (docs/companion-protocol.md sections 7-10) ------ */

/* FNV-1a, 64 bits: the per-user hash whose XOR is the web list's checksum. */
static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Starts a version-1 request: <iq type='set' id=… from=GW to=DOMAIN>. */
static void v1_iq_open(gw_link_t *l, gw_sbuf_t *b)
{
    gw_sbuf_printf(b, "<iq type='set' id='v1-%s-%lu'", l->boot, ++l->v1_seq);
    attr(b, "from", l->cfg->component_domain);
    attr(b, "to", l->cfg->xmpp_domain);
    gw_sbuf_puts(b, ">");
}

/* Section 7: the heartbeat, which also carries the mark of the last chat written. */
static void send_gateway(gw_link_t *l, int lease)
{
    gw_sbuf_t b;

    if (l->companion != C_V1 || l->state != L_UP || l->conn == NULL)
        return;
    gw_sbuf_init(&b, 1024);
    v1_iq_open(l, &b);
    gw_sbuf_printf(&b,
                   "<gateway xmlns='" NS_COMPANION1 "' node='%d' boot='%s' lease='%d' mark='%llu' "
                   "users='%zu' sum='%016llx'/></iq>",
                   l->cfg->node_id, l->boot, lease, (unsigned long long)l->mark_written,
                   l->web_count, (unsigned long long)l->web_sum);
    l->mark_sent = l->mark_written;
    send_stanza_text(l, &b);
}

static void on_heartbeat(uv_timer_t *t)
{
    gw_link_t *l = t->data;

    send_gateway(l, l->cfg->companion_lease_s);
}

static void start_heartbeat(gw_link_t *l)
{
    uint64_t every = (uint64_t)l->cfg->companion_lease_s * 1000u / 3u;

    uv_timer_start(&l->heartbeat_timer, on_heartbeat, every, every);
}

/* Chats were written: a mark follows within 100 ms, so the companion can confirm them. */
static void on_mark_timer(uv_timer_t *t)
{
    gw_link_t *l = t->data;

    if (l->mark_written > l->mark_sent)
        send_gateway(l, l->cfg->companion_lease_s);
}

/* The XMPP error condition of an error stanza ("undefined-condition" when none). */
static const char *error_condition(xmpp_stanza_t *st)
{
    xmpp_stanza_t *err = xmpp_stanza_get_child_by_name(st, "error");
    xmpp_stanza_t *c = err ? xmpp_stanza_get_children(err) : NULL;

    while (c && (!xmpp_stanza_is_tag(c) || strcmp(xmpp_stanza_get_name(c), "text") == 0))
        c = xmpp_stanza_get_next(c);
    return c ? xmpp_stanza_get_name(c) : "undefined-condition";
}

/*
 * The companion refused one of this instance's version-1 requests. Unknown
 * instance (it restarted, or the lease ran out): register again, at most once
 * a second. Anything else (forbidden: the companion serves another gateway
 * domain) would repeat forever: say so once and stop speaking version 1.
 */
static void v1_refused(gw_link_t *l, xmpp_stanza_t *st, const char *id)
{
    const char *cond = error_condition(st);
    uint64_t now = gw_now_ms();

    if (strcmp(cond, "item-not-found") == 0) {
        if (now - l->v1_reregistered_ms < 1000)
            return;
        l->v1_reregistered_ms = now;
        gw_warn("link", "companion does not know this gateway instance (id %s); registering again",
                id);
        send_gateway(l, l->cfg->companion_lease_s);
        send_full_web_list(l);
        return;
    }
    gw_error("link",
             "companion on %s refused a version-1 request (%s): check that its gateway setting "
             "(plugin.imgw.gateway.domain / imgw_gateway) is %s; version 1 is off on this "
             "connection",
             l->cfg->xmpp_domain, cond, l->cfg->component_domain);
    l->companion = C_V0;
    uv_timer_stop(&l->heartbeat_timer);
    uv_timer_stop(&l->mark_timer);
    l->dirty = 1;
}

/* A status from the companion (section 7); any instance may receive any instance's. */
/* Applies a status meant for this instance (mark confirmed, resync asked for). */
static void apply_status(gw_link_t *l, const char *mark, const char *sync)
{
    char *end;
    unsigned long long m;

    if (mark != NULL && mark[0] >= '0' && mark[0] <= '9') {
        m = strtoull(mark, &end, 10);
        /* Never beyond what was written: a status cannot confirm the future. */
        if (*end == '\0' && m <= l->mark_written && m > l->mark_confirmed) {
            l->mark_confirmed = m;
            l->cbs.on_routed(l->ud, m);
        }
    }
    if (sync != NULL && strcmp(sync, "resync") == 0) {
        gw_info("link", "companion asked for the full list of web users");
        send_full_web_list(l);
    }
}

/*
 * A status from the companion (section 7). With allowMultiple any instance may
 * receive any instance's: one for another node is passed on to it through the
 * relay ("st-<boot>-<mark>", detail = sync), so that a status never depends on
 * the server's rotation landing right.
 */
static void handle_status(gw_link_t *l, xmpp_stanza_t *status)
{
    const char *node = xmpp_stanza_get_attribute(status, "node");
    const char *boot = xmpp_stanza_get_attribute(status, "boot");
    const char *mark = xmpp_stanza_get_attribute(status, "mark");
    const char *sync = xmpp_stanza_get_attribute(status, "sync");
    char mine[8], id[72];
    char *end;
    long n;

    if (node == NULL || boot == NULL)
        return;
    snprintf(mine, sizeof(mine), "%d", l->cfg->node_id);
    if (strcmp(node, mine) == 0) {
        if (strcmp(boot, l->boot) == 0)
            apply_status(l, mark, sync);
        return; /* an earlier process of this node: nothing to do */
    }
    n = strtol(node, &end, 10);
    if (*end != '\0' || n < 0 || n > 1023 || l->cbs.on_foreign_answer == NULL ||
        strlen(boot) > 32 || strspn(boot, "0123456789abcdef") != strlen(boot) || mark == NULL ||
        strlen(mark) > 20 || strspn(mark, "0123456789") != strlen(mark) || sync == NULL ||
        (strcmp(sync, "ok") != 0 && strcmp(sync, "resync") != 0))
        return;
    snprintf(id, sizeof(id), "st-%s-%s", boot, mark);
    l->cbs.on_foreign_answer(l->ud, (int)n, id, 0, sync);
}

/* Section 8: sends the waiting <on/>/<off/> children, at most 1000 per request. */
static void send_web_request(gw_link_t *l, gw_sbuf_t *children, int reset)
{
    gw_sbuf_t b;

    gw_sbuf_init(&b, children->len + 1024);
    v1_iq_open(l, &b);
    gw_sbuf_printf(&b, "<web xmlns='" NS_COMPANION1 "' node='%d' boot='%s' reset='%s'>",
                   l->cfg->node_id, l->boot, reset ? "true" : "false");
    gw_sbuf_append(&b, children->data ? children->data : "", children->len);
    gw_sbuf_puts(&b, "</web></iq>");
    send_stanza_text(l, &b);
}

static void web_child(gw_sbuf_t *b, const char *name, const char *user)
{
    gw_sbuf_printf(b, "<%s u='", name);
    gw_xml_escape(b, user, strlen(user));
    gw_sbuf_puts(b, "'/>");
}

static void flush_web_delta(gw_link_t *l)
{
    if (l->web_ndelta == 0)
        return;
    if (l->companion == C_V1 && l->state == L_UP)
        send_web_request(l, &l->web_delta, 0);
    gw_sbuf_free(&l->web_delta);
    gw_sbuf_init(&l->web_delta, 1u << 20);
    l->web_ndelta = 0;
}

static void on_web_timer(uv_timer_t *t)
{
    flush_web_delta(t->data);
}

/* Version 0 (section 4): one presence IQ per user. */
static void send_presence_v0(gw_link_t *l, const char *user, int available)
{
    gw_sbuf_t b;

    gw_sbuf_init(&b, 4096);
    gw_sbuf_printf(&b, "<iq type='set' id='wp-%s-%lu'", l->boot, ++l->v1_seq);
    attr(&b, "from", l->cfg->component_domain);
    attr(&b, "to", l->cfg->xmpp_domain);
    gw_sbuf_puts(&b, "><presence xmlns='" NS_COMPANION "'");
    attr(&b, "user", user);
    attr(&b, "available", available ? "true" : "false");
    gw_sbuf_puts(&b, "/></iq>");
    send_stanza_text(l, &b);
}

/*
 * The whole list, after each handshake and when the companion asks: the first
 * request resets the instance's set, later ones add. The checksum is
 * recomputed from the list, which is the truth.
 */
static void send_full_web_list(gw_link_t *l)
{
    if (l->cfg->mode_value != GW_MODE_SAMEJID || l->state != L_UP || l->cbs.list_web_users == NULL)
        return;
    /* Deltas are covered by the full list. */
    gw_sbuf_free(&l->web_delta);
    gw_sbuf_init(&l->web_delta, 1u << 20);
    l->web_ndelta = 0;
    gw_sbuf_init(&l->web_full, 1u << 20);
    l->web_nfull = 0;
    l->web_first_chunk = 1;
    l->web_count = 0;
    l->web_sum = 0;
    l->cbs.list_web_users(l->ud, l);
    if (l->companion == C_V1 && (l->web_nfull > 0 || l->web_first_chunk))
        send_web_request(l, &l->web_full, l->web_first_chunk);
    gw_sbuf_free(&l->web_full);
    l->web_nfull = 0;
    l->web_first_chunk = 0;
}

void gw_link_web_list(gw_link_t *l, const char *user)
{
    l->web_count++;
    l->web_sum ^= fnv1a64(user);
    if (l->companion == C_V0) {
        send_presence_v0(l, user, 1);
        return;
    }
    if (l->companion != C_V1)
        return;
    web_child(&l->web_full, "on", user);
    if (++l->web_nfull >= 1000) {
        send_web_request(l, &l->web_full, l->web_first_chunk);
        l->web_first_chunk = 0;
        gw_sbuf_free(&l->web_full);
        gw_sbuf_init(&l->web_full, 1u << 20);
        l->web_nfull = 0;
    }
}

void gw_link_web_user(gw_link_t *l, const char *user, int on)
{
    if (l->cfg->mode_value != GW_MODE_SAMEJID)
        return;
    /* The count and checksum follow every change, sent or not: they describe the set. */
    if (on)
        l->web_count++;
    else if (l->web_count > 0)
        l->web_count--;
    l->web_sum ^= fnv1a64(user);
    if (l->state != L_UP)
        return; /* the full list goes after the next handshake */
    if (l->companion == C_V0) {
        send_presence_v0(l, user, on);
        return;
    }
    if (l->companion != C_V1)
        return; /* disco pending: the full list follows its answer */
    web_child(&l->web_delta, on ? "on" : "off", user);
    if (++l->web_ndelta >= 1000)
        flush_web_delta(l);
    else if (!uv_is_active((uv_handle_t *)&l->web_timer))
        uv_timer_start(&l->web_timer, on_web_timer, 0, 0);
}

/* Section 9: acknowledgements, batched. */
static void flush_acks(gw_link_t *l)
{
    gw_sbuf_t b;

    if (l->nacks == 0 || l->companion != C_V1 || l->state != L_UP)
        return;
    gw_sbuf_init(&b, l->acks.len + 1024);
    v1_iq_open(l, &b);
    gw_sbuf_puts(&b, "<acks xmlns='" NS_COMPANION1 "'>");
    gw_sbuf_append(&b, l->acks.data, l->acks.len);
    gw_sbuf_puts(&b, "</acks></iq>");
    send_stanza_text(l, &b);
    gw_sbuf_free(&l->acks);
    gw_sbuf_init(&l->acks, 16384);
    l->nacks = 0;
}

static void on_ack_timer(uv_timer_t *t)
{
    flush_acks(t->data);
}

void gw_link_ack(gw_link_t *l, uint64_t seq)
{
    if (seq == 0)
        return;
    if (l->nacks >= 400) {
        flush_acks(l);
        if (l->nacks >= 400) {
            /* Cannot send now (link down): the companion will send these copies again. */
            gw_sbuf_free(&l->acks);
            gw_sbuf_init(&l->acks, 16384);
            l->nacks = 0;
        }
    }
    gw_sbuf_printf(&l->acks, "%s%llu", l->nacks ? " " : "", (unsigned long long)seq);
    l->nacks++;
    if (l->nacks >= 400)
        flush_acks(l);
    else if (!uv_is_active((uv_handle_t *)&l->ack_timer))
        uv_timer_start(&l->ack_timer, on_ack_timer, 50, 0);
}

int gw_link_companion_v1(const gw_link_t *l)
{
    return l->companion == C_V1;
}

/* Completes the pending request answered by st; returns 1 when there was one. */
/* 1 when st comes from exactly jid (domains compare case-insensitively). */
static int from_is(xmpp_stanza_t *st, const char *jid)
{
    const char *from = xmpp_stanza_get_from(st);

    return from != NULL && strcasecmp(from, jid) == 0;
}

/*
 * Completes the pending request answered by st; returns 1 when there was one.
 * An answer counts only with the request's id (random, see new_iq_id) and
 * from the entity it was sent to: anyone on the server can send the component
 * an IQ result, and a guessed id from anyone else must not settle a
 * registration.
 */
static int finish_iq(gw_link_t *l, xmpp_stanza_t *st, const char *type)
{
    const char *id = xmpp_stanza_get_id(st);
    pending_iq_t **pp = &l->iqs;

    if (id == NULL)
        return 0;
    while (*pp && (strcmp((*pp)->id, id) != 0 || !from_is(st, (*pp)->from)))
        pp = &(*pp)->next;
    if (*pp == NULL)
        return 0;
    {
        pending_iq_t *p = *pp;
        const char *cond = NULL;
        *pp = p->next;
        if (strcmp(type, "error") == 0) {
            xmpp_stanza_t *err = xmpp_stanza_get_child_by_name(st, "error");
            xmpp_stanza_t *c = err ? xmpp_stanza_get_children(err) : NULL;
            while (c && (!xmpp_stanza_is_tag(c) || strcmp(xmpp_stanza_get_name(c), "text") == 0))
                c = xmpp_stanza_get_next(c);
            cond = c ? xmpp_stanza_get_name(c) : "undefined-condition";
            p->cb(p->ud, GW_EINVAL, cond);
        } else {
            /* A companion's answer to <user/> says what it did: status='created' and so on. */
            xmpp_stanza_t *u = xmpp_stanza_get_child_by_name_and_ns(st, "user", NS_COMPANION);
            p->cb(p->ud, 0, u ? xmpp_stanza_get_attribute(u, "status") : NULL);
        }
        free(p);
    }
    return 1;
}

/* A fresh IQ id nobody can predict: prefix and 96 random bits in hex. */
static int new_iq_id(const char *prefix, char *out, size_t outlen)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char rnd[12];
    size_t n = strlen(prefix);

    if (n + 2 * sizeof(rnd) + 1 > outlen || uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0)
        return GW_EIO;
    memcpy(out, prefix, n);
    for (size_t i = 0; i < sizeof(rnd); i++) {
        out[n + 2 * i] = digits[rnd[i] >> 4];
        out[n + 2 * i + 1] = digits[rnd[i] & 15];
    }
    out[n + 2 * sizeof(rnd)] = '\0';
    return 0;
}

/*
 * An answer from the server to another gateway's registration: with
 * allowMultiple the server deals IQ results round-robin too, so it may come
 * here. The id says whose it is ("reg-<node>-<random>"); it goes on to that
 * node through the relay (gw_link_finish_answer there). Returns 1 when passed on.
 */
static int pass_on_answer(gw_link_t *l, xmpp_stanza_t *st, const char *type)
{
    const char *id = xmpp_stanza_get_id(st);
    char *end;
    long node;

    if (id == NULL || strncmp(id, "reg-", 4) != 0 || !from_is(st, l->cfg->xmpp_domain) ||
        l->cbs.on_foreign_answer == NULL)
        return 0;
    node = strtol(id + 4, &end, 10);
    if (end == id + 4 || *end != '-' || node < 0 || node > 1023 || node == l->cfg->node_id ||
        strlen(id) > 64)
        return 0;
    if (strcmp(type, "error") == 0) {
        l->cbs.on_foreign_answer(l->ud, (int)node, id, GW_EINVAL, error_condition(st));
    } else {
        xmpp_stanza_t *u = xmpp_stanza_get_child_by_name_and_ns(st, "user", NS_COMPANION);
        const char *status = u ? xmpp_stanza_get_attribute(u, "status") : NULL;
        l->cbs.on_foreign_answer(l->ud, (int)node, id, 0, status);
    }
    return 1;
}

int gw_link_finish_answer(gw_link_t *l, const char *id, int status, const char *detail)
{
    pending_iq_t **pp = &l->iqs;

    if (strncmp(id, "st-", 3) == 0) {
        /* A status for this node that reached another instance: "st-<boot>-<mark>". */
        size_t blen = strlen(l->boot);
        if (status != 0 || strncmp(id + 3, l->boot, blen) != 0 || id[3 + blen] != '-')
            return GW_ENOTFOUND;
        apply_status(l, id + 4 + blen, detail);
        return 0;
    }

    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    if (*pp == NULL)
        return GW_ENOTFOUND;
    {
        pending_iq_t *p = *pp;
        *pp = p->next;
        p->cb(p->ud, status == 0 ? 0 : GW_EINVAL,
              detail && detail[0] ? detail : (status == 0 ? NULL : "undefined-condition"));
        free(p);
    }
    return 0;
}

/* Fails every pending request (link down or stopping) or only the expired ones. */
static void expire_iqs(gw_link_t *l, int all)
{
    uint64_t now = gw_now_ms();
    pending_iq_t **pp = &l->iqs;

    while (*pp) {
        pending_iq_t *p = *pp;
        if (all || p->deadline_ms <= now) {
            *pp = p->next;
            p->cb(p->ud, GW_ELINK, all ? "link-down" : "timeout");
            free(p);
        } else {
            pp = &p->next;
        }
    }
}

static int on_iq(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    gw_link_t *l = ud;
    const char *type = xmpp_stanza_get_type(st);
    xmpp_stanza_t *child;
    const char *ns;

    GW_UNUSED(conn);
    if (type && xmpp_stanza_get_id(st) && strcmp(xmpp_stanza_get_id(st), DISCO_ID) == 0 &&
        (strcmp(type, "result") == 0 || strcmp(type, "error") == 0) &&
        from_is(st, l->cfg->xmpp_domain)) {
        check_companion(l, st, type);
        return 1;
    }
    if (type && l->state == L_UP && xmpp_stanza_get_from(st) &&
        strcmp(xmpp_stanza_get_from(st), l->cfg->xmpp_domain) == 0 &&
        (strcmp(type, "result") == 0 || strcmp(type, "error") == 0)) {
        xmpp_stanza_t *status = xmpp_stanza_get_child_by_name_and_ns(st, "status", NS_COMPANION1);
        const char *id = xmpp_stanza_get_id(st);
        char prefix[48];
        if (status != NULL && strcmp(type, "result") == 0) {
            handle_status(l, status);
            return 1;
        }
        snprintf(prefix, sizeof(prefix), "v1-%s-", l->boot);
        if (id && strncmp(id, prefix, strlen(prefix)) == 0) {
            if (strcmp(type, "error") == 0 && l->companion == C_V1)
                v1_refused(l, st, id);
            return 1;
        }
    }
    if (type && (strcmp(type, "result") == 0 || strcmp(type, "error") == 0) &&
        finish_iq(l, st, type))
        return 1;
    if (type && (strcmp(type, "result") == 0 || strcmp(type, "error") == 0) &&
        pass_on_answer(l, st, type))
        return 1;
    if (type == NULL || (strcmp(type, "get") != 0 && strcmp(type, "set") != 0)) {
        if (type && strcmp(type, "error") == 0)
            gw_warn("link", "IQ error from %s (id %s)", xmpp_stanza_get_from(st) ?: "?",
                    xmpp_stanza_get_id(st) ?: "?");
        return 1;
    }
    child = xmpp_stanza_get_children(st);
    while (child && !xmpp_stanza_is_tag(child))
        child = xmpp_stanza_get_next(child);
    ns = child ? xmpp_stanza_get_ns(child) : NULL;
    if (strcmp(type, "get") == 0 && ns && strcmp(ns, NS_DISCO_INFO) == 0) {
        const char *node = xmpp_stanza_get_attribute(child, "node");
        if (node == NULL) {
            reply_iq(l, st, "result",
                     "<query xmlns='" NS_DISCO_INFO "'>"
                     "<identity category='component' type='c2s' name='imgw web gateway'/>"
                     "<feature var='" NS_DISCO_INFO "'/>"
                     "<feature var='" NS_DISCO_ITEMS "'/>"
                     "<feature var='" NS_PING "'/>"
                     "</query>");
            return 1;
        }
    } else if (strcmp(type, "get") == 0 && ns && strcmp(ns, NS_DISCO_ITEMS) == 0) {
        reply_iq(l, st, "result", "<query xmlns='" NS_DISCO_ITEMS "'/>");
        return 1;
    } else if (strcmp(type, "get") == 0 && ns && strcmp(ns, NS_PING) == 0) {
        reply_iq(l, st, "result", NULL);
        return 1;
    }
    /* XEP-0114 components must answer every get/set. */
    reply_iq(l, st, "error",
             "<error type='cancel'><service-unavailable xmlns='" NS_STANZAS "'/></error>");
    return 1;
}

static xmpp_stanza_t *child_ns(xmpp_stanza_t *st, const char *name, const char *ns)
{
    return xmpp_stanza_get_child_by_name_and_ns(st, name, ns);
}

static void deliver(gw_link_t *l, xmpp_stanza_t *msg, int copied, uint64_t seq)
{
    const char *type = xmpp_stanza_get_type(msg);
    xmpp_stanza_t *body;
    char *text;
    gw_link_msg_t m;

    if (type == NULL)
        type = "normal";
    if (strcmp(type, "chat") != 0 && strcmp(type, "normal") != 0) {
        if (strcmp(type, "error") == 0)
            gw_info("link", "dropped error message from %s to %s", xmpp_stanza_get_from(msg) ?: "?",
                    xmpp_stanza_get_to(msg) ?: "?");
        else
            gw_debug("link", "dropped %s message", type);
        gw_link_ack(l, seq);
        return;
    }
    body = xmpp_stanza_get_child_by_name(msg, "body");
    if (body == NULL) {
        gw_debug("link", "dropped message without body from %s", xmpp_stanza_get_from(msg) ?: "?");
        gw_link_ack(l, seq);
        return;
    }
    text = xmpp_stanza_get_text(body);
    m.from = xmpp_stanza_get_from(msg);
    m.to = xmpp_stanza_get_to(msg);
    m.id = xmpp_stanza_get_id(msg);
    {
        xmpp_stanza_t *oid = xmpp_stanza_get_child_by_name_and_ns(msg, "origin-id", NS_SID);
        m.origin_id = oid ? xmpp_stanza_get_attribute(oid, "id") : NULL;
    }
    m.kind = "text";
    m.type = type;
    m.body = text ? text : "";
    m.body_len = text ? strlen(text) : 0;
    m.copied = copied;
    m.seq = seq;
    {
        /* XEP-0066: a picture is a message whose body is the out-of-band URL. */
        xmpp_stanza_t *oob = xmpp_stanza_get_child_by_name_and_ns(msg, "x", NS_OOB);
        xmpp_stanza_t *url = oob ? xmpp_stanza_get_child_by_name(oob, "url") : NULL;
        char *u = url ? xmpp_stanza_get_text(url) : NULL;
        if (u && text && strcmp(u, text) == 0)
            m.kind = "image";
        if (u)
            xmpp_free(l->ctx, u);
    }
    if (m.from == NULL || m.to == NULL || m.body_len == 0) {
        gw_debug("link", "dropped message without from, to or body text");
        gw_link_ack(l, seq); /* nothing to store: handled */
    } else {
        l->cbs.on_message(l->ud, &m);
    }
    if (text)
        xmpp_free(l->ctx, text);
}

static int on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    gw_link_t *l = ud;
    xmpp_stanza_t *copy;

    GW_UNUSED(conn);
    if (l->state != L_UP)
        return 1;
    copy = child_ns(st, "copy", NS_COMPANION);
    if (copy != NULL) {
        const char *from = xmpp_stanza_get_from(st);
        xmpp_stanza_t *fwd = child_ns(copy, "forwarded", NS_FORWARD);
        xmpp_stanza_t *inner = fwd ? xmpp_stanza_get_child_by_name(fwd, "message") : NULL;
        /* Only the companion on our own XMPP domain may hand us copies. */
        const char *seqtext = xmpp_stanza_get_attribute(copy, "seq");
        uint64_t seq = 0;
        /* Only the companion on our own XMPP domain may hand us copies. */
        if (from == NULL || strcmp(from, l->cfg->xmpp_domain) != 0 || inner == NULL) {
            gw_warn("link", "dropped companion copy from %s", from ?: "?");
            return 1;
        }
        if (seqtext != NULL) {
            char *end;
            size_t n = strlen(seqtext);
            if (n > 0 && n <= 20 && seqtext[0] >= '0' && seqtext[0] <= '9') {
                seq = strtoull(seqtext, &end, 10);
                if (*end != '\0')
                    seq = 0;
            }
        }
        deliver(l, inner, 1, seq);
        return 1;
    }
    deliver(l, st, 0, 0);
    return 1;
}

static int on_stream_error(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    gw_link_t *l = ud;
    xmpp_stanza_t *c = xmpp_stanza_get_children(st);
    const char *cond = "unknown";
    const char *hint = "";

    GW_UNUSED(conn);
    for (; c; c = xmpp_stanza_get_next(c))
        if (xmpp_stanza_is_tag(c) && strcmp(xmpp_stanza_get_name(c), "text") != 0) {
            cond = xmpp_stanza_get_name(c);
            break;
        }
    if (strcmp(cond, "conflict") == 0)
        hint = ": the component domain is already bound by another connection "
               "(run several gateways with allow_multiple = yes)";
    else if (strcmp(cond, "not-authorized") == 0)
        hint = ": the server rejected the handshake; check component_secret";
    else if (strcmp(cond, "host-unknown") == 0)
        hint = ": the server does not accept this component domain; check component_domain "
               "and the server's external component settings";
    else if (strcmp(cond, "internal-server-error") == 0)
        hint = ": the server has no secret configured for this component";
    gw_error("link", "stream error '%s' from %s:%d for %s%s", cond, l->cfg->xmpp_host,
             l->cfg->xmpp_port, l->cfg->component_domain, hint);
    return 1;
}

/* A server that never answers disco gets version 0 treatment rather than none. */
static void on_disco_timeout(uv_timer_t *t)
{
    gw_link_t *l = t->data;

    if (l->state != L_UP || l->companion != C_UNKNOWN)
        return;
    gw_warn("link", "%s did not answer disco#info within %d ms; assuming no version-1 companion",
            l->cfg->xmpp_domain, l->cfg->handshake_timeout_ms);
    l->companion = C_V0;
    send_full_web_list(l);
    l->dirty = 1;
}

static int on_handshake(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    gw_link_t *l = ud;

    GW_UNUSED(conn);
    GW_UNUSED(st);
    if (l->state != L_HANDSHAKE)
        return 1;
    uv_timer_stop(&l->handshake_timer);
    l->state = L_UP;
    l->attempt = 0;
    gw_info("link", "component %s connected to %s:%d", l->cfg->component_domain, l->cfg->xmpp_host,
            l->cfg->xmpp_port);
    /* Same-JID mode learns the companion's version from disco; component mode has none. */
    l->companion = l->cfg->mode_value == GW_MODE_SAMEJID ? C_UNKNOWN : C_V0;
    if (l->cfg->mode_value == GW_MODE_SAMEJID) {
        gw_sbuf_t b;
        gw_sbuf_init(&b, 1024);
        gw_sbuf_puts(&b, "<iq type='get' id='" DISCO_ID "'");
        attr(&b, "from", l->cfg->component_domain);
        attr(&b, "to", l->cfg->xmpp_domain);
        gw_sbuf_puts(&b, "><query xmlns='" NS_DISCO_INFO "'/></iq>");
        send_stanza_text(l, &b);
        uv_timer_start(&l->handshake_timer, on_disco_timeout,
                       (uint64_t)l->cfg->handshake_timeout_ms, 0);
    }
    l->cbs.on_up(l->ud);
    return 1;
}

/* ---- connection lifecycle --------------------------------------------- */

static void send_handshake(gw_link_t *l)
{
    gw_sbuf_t b;
    char *digest;

    gw_sbuf_init(&b, 4096);
    gw_sbuf_puts(&b, l->stream_id);
    gw_sbuf_puts(&b, l->cfg->component_secret);
    if (b.overflow || l->stream_id[0] == '\0') {
        gw_error("link", "server sent no usable stream id; closing");
        gw_sbuf_free(&b);
        xmpp_disconnect(l->conn);
        return;
    }
    digest = xmpp_sha1(l->ctx, (const unsigned char *)b.data, b.len);
    gw_sbuf_free(&b);
    if (digest == NULL) {
        xmpp_disconnect(l->conn);
        return;
    }
    xmpp_send_raw_string(l->conn, "<handshake>%s</handshake>", digest);
    xmpp_free(l->ctx, digest);
    l->state = L_HANDSHAKE;
    l->dirty = 1;
}

static void on_handshake_timeout(uv_timer_t *t)
{
    gw_link_t *l = t->data;

    if (l->state == L_HANDSHAKE && l->conn) {
        gw_error("link", "no handshake answer from %s:%d within %d ms; reconnecting",
                 l->cfg->xmpp_host, l->cfg->xmpp_port, l->cfg->handshake_timeout_ms);
        xmpp_disconnect(l->conn);
        l->dirty = 1;
    }
}

static void conn_cb(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error, xmpp_stream_error_t *se,
                    void *ud)
{
    gw_link_t *l = ud;

    GW_UNUSED(se);
    switch (ev) {
    case XMPP_CONN_RAW_CONNECT: {
        char *attrs[] = {
            "to",
            l->cfg->component_domain,
            "xmlns",
            "jabber:component:accept",
            "xmlns:stream",
            NS_STREAMS,
            "allowMultiple",
            "true",
        };
        size_t n = l->cfg->allow_multiple ? 8 : 6;
        l->stream_id_seen = 0;
        xmpp_conn_open_stream(conn, attrs, n);
        l->dirty = 1;
        break;
    }
    case XMPP_CONN_CONNECT:
        /* The server's stream header has arrived (raw mode). */
        if (!l->stream_id_seen)
            gw_warn("link", "stream header not seen in the log; handshake may fail");
        send_handshake(l);
        uv_timer_stop(&l->handshake_timer);
        uv_timer_start(&l->handshake_timer, on_handshake_timeout,
                       (uint64_t)l->cfg->handshake_timeout_ms, 0);
        break;
    case XMPP_CONN_DISCONNECT:
    case XMPP_CONN_FAIL: {
        int was_up = l->state == L_UP;
        uv_timer_stop(&l->handshake_timer);
        uv_timer_stop(&l->heartbeat_timer);
        uv_timer_stop(&l->mark_timer);
        drop_unsent(l, conn);
        expire_iqs(l, 1);
        l->companion = C_UNKNOWN;
        close_poll(l);
        if (conn == l->conn) {
            l->dead = conn;
            l->conn = NULL;
        }
        if (l->state == L_STOPPED)
            break;
        l->state = L_DOWN;
        if (was_up)
            gw_warn("link", "component link to %s:%d lost%s%s", l->cfg->xmpp_host,
                    l->cfg->xmpp_port, error ? ": " : "", error ? strerror(error) : "");
        else
            gw_warn("link", "cannot connect component to %s:%d%s%s", l->cfg->xmpp_host,
                    l->cfg->xmpp_port, error ? ": " : "", error ? strerror(error) : "");
        if (was_up)
            l->cbs.on_down(l->ud);
        schedule_reconnect(l);
        break;
    }
    }
}

static void dummy_cb(xmpp_conn_t *c, xmpp_conn_event_t e, int err, xmpp_stream_error_t *se,
                     void *ud)
{
    GW_UNUSED(c);
    GW_UNUSED(e);
    GW_UNUSED(err);
    GW_UNUSED(se);
    GW_UNUSED(ud);
}

/* Works around the libstrophe 0.12.2 component-mode crash (see the top of this file). */
static xmpp_sm_state_t *borrow_sm_state(gw_link_t *l)
{
    xmpp_conn_t *tmp = xmpp_conn_new(l->ctx);
    xmpp_sm_state_t *sm;

    if (tmp == NULL)
        return NULL;
    xmpp_conn_set_jid(tmp, "x@invalid");
    xmpp_connect_client(tmp, "invalid.invalid", 1, dummy_cb, NULL);
    sm = xmpp_conn_get_sm_state(tmp);
    xmpp_conn_release(tmp);
    return sm;
}

/* libstrophe's sockopt callback has no user data; the link is found through the ctx's one conn. */
static gw_link_t *sockopt_link;

static int on_sockopt_track(xmpp_conn_t *conn, void *sock)
{
    gw_link_t *l = sockopt_link;
    int fd = *(int *)sock;

    if (l != NULL && conn == l->conn) {
        close_poll(l);
        l->poll = malloc(sizeof(*l->poll));
        if (l->poll != NULL) {
            if (uv_poll_init(l->loop, l->poll, fd) != 0) {
                free(l->poll);
                l->poll = NULL;
            } else {
                l->poll->data = l;
                l->fd = fd;
                l->poll_events = 0;
            }
        }
    }
    return on_sockopt(conn, sock);
}

static void do_connect(gw_link_t *l)
{
    xmpp_sm_state_t *sm;
    int rc;

    if (l->dead) {
        xmpp_conn_release(l->dead);
        l->dead = NULL;
    }
    l->conn = xmpp_conn_new(l->ctx);
    if (l->conn == NULL) {
        schedule_reconnect(l);
        return;
    }
    sm = borrow_sm_state(l);
    if (sm == NULL || xmpp_conn_set_sm_state(l->conn, sm) != XMPP_EOK) {
        gw_error("link", "cannot allocate libstrophe stream state");
        if (sm)
            xmpp_free_sm_state(sm);
        xmpp_conn_release(l->conn);
        l->conn = NULL;
        schedule_reconnect(l);
        return;
    }
    xmpp_conn_set_jid(l->conn, l->cfg->component_domain);
    xmpp_conn_set_flags(l->conn, XMPP_CONN_FLAG_DISABLE_TLS);
    xmpp_conn_set_sockopt_callback(l->conn, on_sockopt_track);
    xmpp_handler_add(l->conn, on_message, NULL, "message", NULL, l);
    xmpp_handler_add(l->conn, on_iq, NULL, "iq", NULL, l);
    xmpp_handler_add(l->conn, on_handshake, NULL, "handshake", NULL, l);
    xmpp_handler_add(l->conn, on_stream_error, NS_STREAMS, "error", NULL, l);
    l->state = L_CONNECTING;
    gw_debug("link", "connecting to %s:%d", l->cfg->xmpp_host, l->cfg->xmpp_port);
    sockopt_link = l;
    rc =
        xmpp_connect_raw(l->conn, l->cfg->xmpp_host, (unsigned short)l->cfg->xmpp_port, conn_cb, l);
    if (rc != XMPP_EOK) {
        gw_warn("link", "cannot connect to %s:%d (libstrophe error %d)", l->cfg->xmpp_host,
                l->cfg->xmpp_port, rc);
        close_poll(l);
        l->dead = l->conn;
        l->conn = NULL;
        l->state = L_DOWN;
        schedule_reconnect(l);
        return;
    }
    update_poll(l);
}

static void on_reconnect_timer(uv_timer_t *t)
{
    gw_link_t *l = t->data;

    if (l->state == L_DOWN)
        do_connect(l);
}

static void schedule_reconnect(gw_link_t *l)
{
    uint64_t base = (uint64_t)l->cfg->reconnect_min_ms;
    uint64_t cap = (uint64_t)l->cfg->reconnect_max_ms;
    uint64_t delay;

    for (unsigned i = 0; i < l->attempt && base < cap; i++)
        base *= 2;
    if (base > cap)
        base = cap;
    /* "Equal jitter": half fixed, half random, so gateways do not reconnect in step. */
    delay = base / 2 + (uint64_t)random() % (base / 2 + 1);
    if (l->attempt < 64)
        l->attempt++;
    gw_info("link", "reconnecting in %llu ms (attempt %u)", (unsigned long long)delay, l->attempt);
    uv_timer_start(&l->reconnect_timer, on_reconnect_timer, delay, 0);
}

static void on_keepalive(uv_timer_t *t)
{
    gw_link_t *l = t->data;

    /* Openfire closes a silent component after xmpp.component.idle (6 min). */
    if (l->state == L_UP && l->conn) {
        xmpp_send_raw(l->conn, " ", 1);
        l->dirty = 1;
    }
}

/* ---- public API -------------------------------------------------------- */

int gw_link_new(uv_loop_t *loop, const gw_config_t *cfg, const gw_link_cbs_t *cbs, void *ud,
                gw_link_t **out)
{
    gw_link_t *l = calloc(1, sizeof(*l));

    if (l == NULL)
        return GW_ENOMEM;
    l->loop = loop;
    l->cfg = cfg;
    l->cbs = *cbs;
    l->ud = ud;
    l->fd = -1;
    l->logger.handler = strophe_log;
    l->logger.userdata = l;
    xmpp_initialize();
    l->ctx = xmpp_ctx_new(NULL, &l->logger);
    if (l->ctx == NULL) {
        free(l);
        return GW_ENOMEM;
    }
    uv_timer_init(loop, &l->reconnect_timer);
    uv_timer_init(loop, &l->keepalive_timer);
    uv_timer_init(loop, &l->handshake_timer);
    uv_timer_init(loop, &l->iq_timer);
    l->iq_timer.data = l;
    uv_timer_init(loop, &l->heartbeat_timer);
    uv_timer_init(loop, &l->mark_timer);
    uv_timer_init(loop, &l->ack_timer);
    uv_timer_init(loop, &l->web_timer);
    l->heartbeat_timer.data = l->mark_timer.data = l->ack_timer.data = l->web_timer.data = l;
    gw_sbuf_init(&l->web_delta, 1u << 20);
    gw_sbuf_init(&l->web_full, 1u << 20);
    gw_sbuf_init(&l->acks, 16384);
    {
        /* The instance's boot: random, so a restarted process is a new instance. */
        unsigned char r[16];
        if (uv_random(NULL, NULL, r, sizeof(r), 0, NULL) != 0) {
            uint64_t t = gw_now_ms() ^ ((uint64_t)random() << 20);
            memcpy(r, &t, sizeof(t));
            memcpy(r + 8, &t, sizeof(t));
        }
        for (size_t i = 0; i < sizeof(r); i++)
            snprintf(l->boot + 2 * i, 3, "%02x", r[i]);
    }
    uv_prepare_init(loop, &l->flush);
    l->reconnect_timer.data = l->keepalive_timer.data = l->handshake_timer.data = l;
    l->flush.data = l;
    l->state = L_DOWN;
    *out = l;
    return 0;
}

int gw_link_start(gw_link_t *l)
{
    uint64_t ka = (uint64_t)l->cfg->keepalive_s * 1000u;

    uv_prepare_start(&l->flush, on_flush);
    uv_timer_start(&l->keepalive_timer, on_keepalive, ka, ka);
    do_connect(l);
    return 0;
}

static int build_chat(gw_link_t *l, gw_sbuf_t *b, const char *user, const char *to, const char *id,
                      const char *origin_id, const char *kind, const char *body, size_t body_len)
{
    char from[256];

    if (l->cfg->mode_value == GW_MODE_SAMEJID) {
        snprintf(from, sizeof(from), "%s@%s/web", user, l->cfg->xmpp_domain);
        gw_sbuf_puts(b, "<message");
        attr(b, "from", l->cfg->component_domain);
        attr(b, "to", l->cfg->xmpp_domain);
        attr(b, "id", id);
        gw_sbuf_puts(b, "><privilege xmlns='" NS_PRIVILEGE "'><forwarded xmlns='" NS_FORWARD
                        "'><message xmlns='jabber:client' type='chat'");
    } else {
        snprintf(from, sizeof(from), "%s@%s", user, l->cfg->component_domain);
        gw_sbuf_puts(b, "<message type='chat'");
    }
    attr(b, "from", from);
    attr(b, "to", to);
    attr(b, "id", id);
    gw_sbuf_puts(b, "><body>");
    gw_xml_escape(b, body, body_len);
    gw_sbuf_puts(b, "</body>");
    if (kind && strcmp(kind, "image") == 0) {
        gw_sbuf_puts(b, "<x xmlns='" NS_OOB "'><url>");
        gw_xml_escape(b, body, body_len);
        gw_sbuf_puts(b, "</url></x>");
    }
    if (origin_id) {
        gw_sbuf_puts(b, "<origin-id xmlns='" NS_SID "'");
        attr(b, "id", origin_id);
        gw_sbuf_puts(b, "/>");
    }
    if (l->cfg->mode_value == GW_MODE_SAMEJID)
        gw_sbuf_puts(b, "</message></forwarded></privilege>");
    gw_sbuf_puts(b, "</message>");
    return b->overflow ? GW_ENOMEM : 0;
}

int gw_link_send_chat(gw_link_t *l, const char *user, const char *to, const char *id,
                      const char *origin_id, const char *kind, const char *body, size_t body_len,
                      uint64_t *mark)
{
    gw_sbuf_t b;
    int rc;

    if (l->state != L_UP || l->conn == NULL)
        return GW_ELINK;
    gw_sbuf_init(&b, (size_t)l->cfg->max_body_bytes * 6 + 2048);
    rc = build_chat(l, &b, user, to, id, origin_id, kind, body, body_len);
    if (rc != 0) {
        gw_sbuf_free(&b);
        return rc;
    }
    xmpp_send_raw(l->conn, b.data, b.len);
    l->dirty = 1;
    gw_sbuf_free(&b);
    *mark = ++l->mark_written;
    /* Version 1 (or not yet known): a mark follows soon, so the companion can confirm it. */
    if (l->companion != C_V0 && !uv_is_active((uv_handle_t *)&l->mark_timer))
        uv_timer_start(&l->mark_timer, on_mark_timer, 100, 0);
    return 0;
}

static void on_iq_timer(uv_timer_t *t)
{
    gw_link_t *l = t->data;

    expire_iqs(l, 0);
    if (l->iqs)
        uv_timer_start(&l->iq_timer, on_iq_timer, (uint64_t)l->cfg->handshake_timeout_ms / 4 + 1,
                       0);
}

int gw_link_register_user(gw_link_t *l, const char *user, gw_link_iq_cb cb, void *ud)
{
    pending_iq_t *p;
    gw_sbuf_t b;
    char prefix[16];

    if (l->state != L_UP || l->conn == NULL)
        return GW_ELINK;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return GW_ENOMEM;
    snprintf(prefix, sizeof(prefix), "reg-%d-", l->cfg->node_id);
    if (new_iq_id(prefix, p->id, sizeof(p->id)) != 0) {
        free(p);
        return GW_EIO;
    }
    snprintf(p->from, sizeof(p->from), "%s", l->cfg->xmpp_domain);
    p->deadline_ms = gw_now_ms() + (uint64_t)l->cfg->handshake_timeout_ms;
    p->cb = cb;
    p->ud = ud;
    gw_sbuf_init(&b, 4096);
    gw_sbuf_puts(&b, "<iq type='set'");
    attr(&b, "id", p->id);
    attr(&b, "from", l->cfg->component_domain);
    attr(&b, "to", l->cfg->xmpp_domain);
    gw_sbuf_puts(&b, "><user xmlns='" NS_COMPANION "' action='create'><username>");
    gw_xml_escape(&b, user, strlen(user));
    gw_sbuf_puts(&b, "</username></user></iq>");
    if (b.overflow) {
        gw_sbuf_free(&b);
        free(p);
        return GW_ENOMEM;
    }
    p->next = l->iqs;
    l->iqs = p;
    send_stanza_text(l, &b);
    if (!uv_is_active((uv_handle_t *)&l->iq_timer))
        uv_timer_start(&l->iq_timer, on_iq_timer, (uint64_t)l->cfg->handshake_timeout_ms + 1, 0);
    return 0;
}

int gw_link_is_up(const gw_link_t *l)
{
    return l->state == L_UP;
}

void gw_link_stop(gw_link_t *l)
{
    int was = l->state;

    if (was == L_UP) {
        flush_acks(l);
        flush_web_delta(l);
        /* Lease 0: the companion releases this instance's web users now, not in 30 s. */
        send_gateway(l, 0);
    }
    l->state = L_STOPPED;
    if (l->conn && (was == L_UP || was == L_HANDSHAKE)) {
        /* Queues </stream:stream>; one step writes it and what was pending.
         * The socket itself is closed when the connection is released. */
        xmpp_disconnect(l->conn);
        xmpp_run_once(l->ctx, 0);
    }
    expire_iqs(l, 1);
    close_poll(l);
    uv_close((uv_handle_t *)&l->reconnect_timer, NULL);
    uv_close((uv_handle_t *)&l->keepalive_timer, NULL);
    uv_close((uv_handle_t *)&l->handshake_timer, NULL);
    uv_close((uv_handle_t *)&l->iq_timer, NULL);
    uv_close((uv_handle_t *)&l->heartbeat_timer, NULL);
    uv_close((uv_handle_t *)&l->mark_timer, NULL);
    uv_close((uv_handle_t *)&l->ack_timer, NULL);
    uv_close((uv_handle_t *)&l->web_timer, NULL);
    uv_close((uv_handle_t *)&l->flush, NULL);
}

void gw_link_free(gw_link_t *l)
{
    xmpp_conn_t *c;

    if (l == NULL)
        return;
    /*
     * Releasing a connection that is still open fires its DISCONNECT callback,
     * which would park it in l->dead; detach it first so it is released once.
     */
    c = l->conn;
    l->conn = NULL;
    if (l->dead) {
        xmpp_conn_release(l->dead);
        l->dead = NULL;
    }
    if (c)
        xmpp_conn_release(c);
    gw_sbuf_free(&l->web_delta);
    gw_sbuf_free(&l->web_full);
    gw_sbuf_free(&l->acks);
    if (sockopt_link == l)
        sockopt_link = NULL;
    xmpp_ctx_free(l->ctx);
    xmpp_shutdown();
    free(l);
}

int gw_link_handle_xml(gw_link_t *l, const char *xml, size_t len)
{
    char *text = malloc(len + 1);
    xmpp_stanza_t *st;
    const char *name;
    lstate_t saved = l->state;

    if (text == NULL)
        return GW_ENOMEM;
    memcpy(text, xml, len);
    text[len] = '\0';
    /* libstrophe takes a C string: a NUL inside ends the text, as it would end a parse. */
    st = xmpp_stanza_new_from_string(l->ctx, text);
    free(text);
    if (st == NULL)
        return GW_EINVAL;
    name = xmpp_stanza_get_name(st);
    l->state = L_UP;
    if (name != NULL && strcmp(name, "message") == 0)
        on_message(NULL, st, l);
    else if (name != NULL && strcmp(name, "iq") == 0)
        on_iq(NULL, st, l);
    else if (name != NULL && strcmp(name, "error") == 0)
        on_stream_error(NULL, st, l);
    l->state = saved;
    xmpp_stanza_release(st);
    return 0;
}
