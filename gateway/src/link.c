/*
 * link.c - the component link: a libuv TCP stream, our own XMPP stream reader
 * (xmlstream.c, on expat) and the XEP-0114 handshake.
 *
 * Reading: each read from the socket is fed to the stream reader, which calls
 * back with the server's stream header (whose id the handshake digests) and
 * with each complete stanza as a small element tree, handled here before the
 * read callback returns.
 *
 * Writing: stanzas are appended to one output buffer; a uv_prepare hook
 * writes it once per loop iteration (uv_try_write first, the rest handed to
 * uv_write with the buffer), so a burst of sends costs one system call. The
 * bytes not yet handed to the kernel are bounded (OUT_MAX): a server that
 * stops reading for that long loses the connection, and the router writes its
 * chats again after the reconnect, as after any lost connection.
 *
 * The stream header carries allowMultiple when configured, which lets several
 * gateways share one component domain on Openfire (ENVIRONMENT notes).
 */
#include "link.h"
#include "gw.h"
#include "log.h"
#include "payload.h"
#include "text.h"
#include "ticket.h"
#include "xmlstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* Bytes written and not yet taken by the kernel before the connection is given up. */
#define OUT_MAX  (32u << 20)
#define READ_BUF 65536

typedef enum { L_DOWN, L_CONNECTING, L_HANDSHAKE, L_UP, L_STOPPED } lstate_t;

typedef struct pending_iq {
    struct pending_iq *next;
    char id[40];
    char from[256]; /* the only entity whose answer counts: the server's domain */
    uint64_t deadline_ms;
    gw_link_iq_cb cb;
    void *ud;
} pending_iq_t;

/*
 * One TCP connection. It outlives its place in the link: after the link lets
 * go of it (l == NULL) it waits for libuv to close its handle and cancel its
 * requests, and frees itself then.
 */
typedef struct lconn {
    gw_link_t *l;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_getaddrinfo_t gai;
    int tcp_init;  /* tcp needs uv_close */
    int resolving; /* gai is in flight */
    int reading;
    size_t inflight; /* bytes in uv_write requests not yet completed */
} lconn_t;

typedef struct wreq {
    uv_write_t req;
    lconn_t *c;
    char *buf; /* owned */
    size_t len;
} wreq_t;

struct gw_link {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    gw_link_cbs_t cbs;
    void *ud;

    lconn_t *conn;      /* current connection, or NULL */
    gw_xmlstream_t *xs; /* the reader, reset for each connection */
    /* Bytes to write, not yet handed to libuv; out.overflow: OUT_MAX passed (with what
     * libuv holds), and the connection is dropped at the next flush. */
    gw_sbuf_t out;
    int no_send; /* gw_link_handle_xml: answers are dropped */
    char *rbuf;

    uv_timer_t reconnect_timer;
    uv_timer_t keepalive_timer;
    uv_timer_t handshake_timer;
    uv_timer_t iq_timer;
    uv_prepare_t flush;
    int dirty;

    lstate_t state;
    unsigned attempt;
    char stream_id[128];

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
static void expire_iqs(gw_link_t *l, int all);
static void send_gateway(gw_link_t *l, int lease);
static void send_full_web_list(gw_link_t *l);
static void flush_web_delta(gw_link_t *l);
static void flush_acks(gw_link_t *l);
static void start_heartbeat(gw_link_t *l);
static void conn_lost(gw_link_t *l, int err, const char *why);
static void on_handshake_timeout(uv_timer_t *t);

/* ---- writing ------------------------------------------------------------ */

/*
 * Bounds the output to OUT_MAX with what libuv still holds, before an append or
 * a build straight into l->out. Past it, l->out.overflow is set (by the sbuf),
 * and the connection, with whatever the output holds, is dropped at the next
 * flush, so a partly built stanza never goes out.
 */
static void out_limit(gw_link_t *l)
{
    size_t inflight = l->conn ? l->conn->inflight : 0;

    l->out.limit = inflight < OUT_MAX ? OUT_MAX - inflight : 0;
}

static void out_append(gw_link_t *l, const char *s, size_t n)
{
    out_limit(l);
    gw_sbuf_append(&l->out, s, n);
    l->dirty = 1;
}

/* 1 when the connection can take stanzas: TCP connected and not being dropped. */
static int can_write(const gw_link_t *l)
{
    return l->conn != NULL && l->conn->reading && !l->no_send;
}

/*
 * Without a version-1 companion, a chat handed to the kernel is as routed as
 * XEP-0114 can tell (docs/companion-protocol.md section 10).
 */
static void check_routed(gw_link_t *l)
{
    if (l->state == L_UP && l->conn != NULL && l->companion == C_V0 &&
        l->mark_confirmed < l->mark_written && l->out.len == 0 && l->conn->inflight == 0) {
        l->mark_confirmed = l->mark_written;
        l->cbs.on_routed(l->ud, l->mark_confirmed);
    }
}

static void on_written(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    lconn_t *c = w->c;
    gw_link_t *l = c->l;

    c->inflight -= w->len;
    free(w->buf);
    free(w);
    if (l == NULL || l->conn != c)
        return; /* a connection already given up */
    if (status < 0) {
        conn_lost(l, status, "write failed");
        return;
    }
    check_routed(l);
}

/* Hands the output to the kernel, or to libuv for what the kernel does not take now. */
static void flush_out(gw_link_t *l)
{
    lconn_t *c = l->conn;
    size_t off = 0;

    if (c == NULL || !c->reading)
        return;
    if (l->out.overflow) {
        conn_lost(l, 0, "the server stopped reading (write queue full)");
        return;
    }
    if (l->out.len == 0) {
        check_routed(l);
        return;
    }
    if (c->inflight == 0) {
        /* Nothing queued in libuv: write at once, in order. */
        uv_buf_t buf = uv_buf_init(l->out.data, (unsigned int)l->out.len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
        if (n < 0 && n != UV_EAGAIN) {
            conn_lost(l, n, "write failed");
            return;
        }
        if (n > 0)
            off = (size_t)n;
    }
    if (off < l->out.len) {
        wreq_t *w = malloc(sizeof(*w));
        uv_buf_t buf;
        int rc;
        if (w == NULL) {
            conn_lost(l, UV_ENOMEM, "out of memory");
            return;
        }
        /* The request takes the buffer; the link starts a new one. */
        w->c = c;
        w->buf = l->out.data;
        w->len = l->out.len - off;
        buf = uv_buf_init(l->out.data + off, (unsigned int)w->len);
        gw_sbuf_init(&l->out, OUT_MAX);
        rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written);
        if (rc != 0) {
            free(w->buf);
            free(w);
            conn_lost(l, rc, "write failed");
            return;
        }
        c->inflight += w->len;
        return;
    }
    l->out.len = 0;
    check_routed(l);
}

static void on_flush(uv_prepare_t *h)
{
    gw_link_t *l = h->data;

    if (!l->dirty)
        return;
    l->dirty = 0;
    if (l->iqs)
        expire_iqs(l, 0);
    flush_out(l);
}

/* ---- stanzas ----------------------------------------------------------- */

static void send_stanza_text(gw_link_t *l, gw_sbuf_t *b)
{
    if (!b->overflow && can_write(l) && l->state == L_UP)
        out_append(l, b->data, b->len);
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

static void reply_iq(gw_link_t *l, const gw_xml_el_t *iq, const char *type, const char *inner)
{
    gw_sbuf_t b;

    gw_sbuf_init(&b, 65536);
    gw_sbuf_puts(&b, "<iq");
    attr(&b, "type", type);
    attr(&b, "id", gw_xml_attr(iq, "id"));
    attr(&b, "from", gw_xml_attr(iq, "to"));
    attr(&b, "to", gw_xml_attr(iq, "from"));
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
static void check_companion(gw_link_t *l, const gw_xml_el_t *st, const char *type)
{
    const gw_xml_el_t *q = gw_xml_child(st, "query", NULL);
    const gw_xml_el_t *c = q ? q->child : NULL;

    int v0 = 0, v1 = 0;

    if (l->state != L_UP || l->companion != C_UNKNOWN)
        return;
    uv_timer_stop(&l->handshake_timer);
    if (strcmp(type, "result") == 0)
        for (; c; c = c->next) {
            const char *var = strcmp(c->name, "feature") == 0 ? gw_xml_attr(c, "var") : NULL;
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
static const char *error_condition(const gw_xml_el_t *st)
{
    const gw_xml_el_t *err = gw_xml_child(st, "error", NULL);
    const gw_xml_el_t *c = err ? err->child : NULL;

    while (c && strcmp(c->name, "text") == 0)
        c = c->next;
    return c ? c->name : "undefined-condition";
}

/*
 * The companion refused one of this instance's version-1 requests. Unknown
 * instance (it restarted, or the lease ran out): register again, at most once
 * a second. Anything else (forbidden: the companion serves another gateway
 * domain) would repeat forever: say so once and stop speaking version 1.
 */
static void v1_refused(gw_link_t *l, const gw_xml_el_t *st, const char *id)
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
static void handle_status(gw_link_t *l, const gw_xml_el_t *status)
{
    const char *node = gw_xml_attr(status, "node");
    const char *boot = gw_xml_attr(status, "boot");
    const char *mark = gw_xml_attr(status, "mark");
    const char *sync = gw_xml_attr(status, "sync");
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
static int from_is(const gw_xml_el_t *st, const char *jid)
{
    const char *from = gw_xml_attr(st, "from");

    return from != NULL && strcasecmp(from, jid) == 0;
}

/*
 * Completes the pending request answered by st; returns 1 when there was one.
 * An answer counts only with the request's id (random, see new_iq_id) and
 * from the entity it was sent to: anyone on the server can send the component
 * an IQ result, and a guessed id from anyone else must not settle a
 * registration.
 */
static int finish_iq(gw_link_t *l, const gw_xml_el_t *st, const char *type)
{
    const char *id = gw_xml_attr(st, "id");
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
            cond = error_condition(st);
            p->cb(p->ud, GW_EINVAL, cond);
        } else {
            /* A companion's answer to <user/> says what it did: status='created' and so on. */
            const gw_xml_el_t *u = gw_xml_child(st, "user", NS_COMPANION);
            p->cb(p->ud, 0, u ? gw_xml_attr(u, "status") : NULL);
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
static int pass_on_answer(gw_link_t *l, const gw_xml_el_t *st, const char *type)
{
    const char *id = gw_xml_attr(st, "id");
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
        const gw_xml_el_t *u = gw_xml_child(st, "user", NS_COMPANION);
        const char *status = u ? gw_xml_attr(u, "status") : NULL;
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

static int on_iq(gw_link_t *l, const gw_xml_el_t *st)
{
    const char *type = gw_xml_attr(st, "type");
    const gw_xml_el_t *child;
    const char *ns;

    if (type && gw_xml_attr(st, "id") && strcmp(gw_xml_attr(st, "id"), DISCO_ID) == 0 &&
        (strcmp(type, "result") == 0 || strcmp(type, "error") == 0) &&
        from_is(st, l->cfg->xmpp_domain)) {
        check_companion(l, st, type);
        return 1;
    }
    if (type && l->state == L_UP && gw_xml_attr(st, "from") &&
        strcmp(gw_xml_attr(st, "from"), l->cfg->xmpp_domain) == 0 &&
        (strcmp(type, "result") == 0 || strcmp(type, "error") == 0)) {
        const gw_xml_el_t *status = gw_xml_child(st, "status", NS_COMPANION1);
        const char *id = gw_xml_attr(st, "id");
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
            gw_warn("link", "IQ error from %s (id %s)", gw_xml_attr(st, "from") ?: "?",
                    gw_xml_attr(st, "id") ?: "?");
        return 1;
    }
    child = st->child;
    ns = child ? child->ns : NULL;
    if (strcmp(type, "get") == 0 && ns && strcmp(ns, NS_DISCO_INFO) == 0) {
        const char *node = gw_xml_attr(child, "node");
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

static const gw_xml_el_t *child_ns(const gw_xml_el_t *st, const char *name, const char *ns)
{
    return gw_xml_child(st, name, ns);
}

static void deliver(gw_link_t *l, const gw_xml_el_t *msg, int copied, uint64_t seq)
{
    const char *type = gw_xml_attr(msg, "type");
    const gw_xml_el_t *body;
    const char *text;
    gw_link_msg_t m;

    if (type == NULL)
        type = "normal";
    if (strcmp(type, "chat") != 0 && strcmp(type, "normal") != 0) {
        if (strcmp(type, "error") == 0)
            gw_info("link", "dropped error message from %s to %s", gw_xml_attr(msg, "from") ?: "?",
                    gw_xml_attr(msg, "to") ?: "?");
        else
            gw_debug("link", "dropped %s message", type);
        gw_link_ack(l, seq);
        return;
    }
    body = gw_xml_child(msg, "body", NULL);
    if (body == NULL) {
        gw_debug("link", "dropped message without body from %s", gw_xml_attr(msg, "from") ?: "?");
        gw_link_ack(l, seq);
        return;
    }
    text = body->text;
    m.from = gw_xml_attr(msg, "from");
    m.to = gw_xml_attr(msg, "to");
    m.id = gw_xml_attr(msg, "id");
    {
        const gw_xml_el_t *oid = gw_xml_child(msg, "origin-id", NS_SID);
        m.origin_id = oid ? gw_xml_attr(oid, "id") : NULL;
    }
    m.kind = "text";
    m.type = type;
    m.body = text;
    m.body_len = body->text_len;
    m.copied = copied;
    m.seq = seq;
    {
        /* XEP-0066: a picture is a message whose body is the out-of-band URL. */
        const gw_xml_el_t *oob = gw_xml_child(msg, "x", NS_OOB);
        const gw_xml_el_t *url = oob ? gw_xml_child(oob, "url", NULL) : NULL;
        if (url && url->text_len == body->text_len && memcmp(url->text, text, body->text_len) == 0)
            m.kind = "image";
    }
    if (m.from == NULL || m.to == NULL || m.body_len == 0) {
        gw_debug("link", "dropped message without from, to or body text");
        gw_link_ack(l, seq); /* nothing to store: handled */
    } else {
        l->cbs.on_message(l->ud, &m);
    }
}

static int on_message(gw_link_t *l, const gw_xml_el_t *st)
{
    const gw_xml_el_t *copy;

    if (l->state != L_UP)
        return 1;
    copy = child_ns(st, "copy", NS_COMPANION);
    if (copy != NULL) {
        const char *from = gw_xml_attr(st, "from");
        const gw_xml_el_t *fwd = child_ns(copy, "forwarded", NS_FORWARD);
        const gw_xml_el_t *inner = fwd ? gw_xml_child(fwd, "message", NULL) : NULL;
        /* Only the companion on our own XMPP domain may hand us copies. */
        const char *seqtext = gw_xml_attr(copy, "seq");
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

static int on_stream_error(gw_link_t *l, const gw_xml_el_t *st)
{
    const gw_xml_el_t *c = st->child;
    const char *cond = "unknown";
    const char *hint = "";

    for (; c; c = c->next)
        if (strcmp(c->name, "text") != 0) {
            cond = c->name;
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

static int on_handshake(gw_link_t *l, const gw_xml_el_t *st)
{

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

/* The stream's top-level elements, as the reader completes them. */
static int on_stanza(void *ud, const gw_xml_el_t *st)
{
    gw_link_t *l = ud;
    if (strcmp(st->name, "error") == 0 && strcmp(st->ns, NS_STREAMS) == 0) {
        on_stream_error(l, st);
        return GW_ELINK; /* the server closes the stream after an error: so do we */
    }
    if (strcmp(st->name, "handshake") == 0)
        on_handshake(l, st);
    else if (strcmp(st->name, "message") == 0)
        on_message(l, st);
    else if (strcmp(st->name, "iq") == 0)
        on_iq(l, st);
    /* A handler may have given the connection up (a full write queue is dropped later). */
    return l->conn != NULL ? 0 : GW_ELINK;
}

static void on_skipped(void *ud, const char *name, const char *why)
{
    GW_UNUSED(ud);
    gw_warn("link", "dropped a <%s> stanza from the server: %s", name, why);
}

static int on_stream_close(void *ud)
{
    gw_link_t *l = ud;

    gw_warn("link", "the server closed the component stream");
    GW_UNUSED(l);
    return GW_ELINK;
}

/* The server's stream header: its id is what the handshake digests. */
static int on_stream_open(void *ud, const gw_xml_el_t *h)
{
    gw_link_t *l = ud;
    const char *id = gw_xml_attr(h, "id");
    char digest[41];
    char line[64];

    if (l->state != L_CONNECTING)
        return GW_EINVAL;
    if (id == NULL || id[0] == '\0' || strlen(id) >= sizeof(l->stream_id)) {
        gw_error("link", "server sent no usable stream id; closing");
        return GW_EINVAL;
    }
    snprintf(l->stream_id, sizeof(l->stream_id), "%s", id);
    if (gw_sha1_hex2(l->stream_id, strlen(l->stream_id), l->cfg->component_secret,
                     strlen(l->cfg->component_secret), digest) != 0)
        return GW_EINVAL;
    snprintf(line, sizeof(line), "<handshake>%s</handshake>", digest);
    out_append(l, line, strlen(line));
    l->state = L_HANDSHAKE;
    uv_timer_stop(&l->handshake_timer);
    uv_timer_start(&l->handshake_timer, on_handshake_timeout,
                   (uint64_t)l->cfg->handshake_timeout_ms, 0);
    return 0;
}

static void on_handshake_timeout(uv_timer_t *t)
{
    gw_link_t *l = t->data;

    if ((l->state == L_HANDSHAKE || l->state == L_CONNECTING) && l->conn) {
        gw_error("link", "no handshake answer from %s:%d within %d ms; reconnecting",
                 l->cfg->xmpp_host, l->cfg->xmpp_port, l->cfg->handshake_timeout_ms);
        conn_lost(l, UV_ETIMEDOUT, NULL);
    }
}

static void free_conn_handle(uv_handle_t *h)
{
    free(h->data);
}

/* Lets go of a connection: its handle closes, its requests are cancelled, then it is freed. */
static void release_conn(lconn_t *c)
{
    c->l = NULL;
    if (c->tcp_init) {
        c->tcp.data = c;
        uv_close((uv_handle_t *)&c->tcp, free_conn_handle);
    } else if (c->resolving) {
        uv_cancel((uv_req_t *)&c->gai); /* on_resolved frees it, cancelled or not */
    } else {
        free(c);
    }
}

/*
 * The connection is over (or never came up): drop what it had not written,
 * fail the pending requests, tell the router and schedule the reconnect.
 * Chats come back from the router's outbox after the reconnect (it keeps them
 * until routed); the web user list, heartbeats and disco are sent afresh on
 * every handshake; an acknowledgement lost here only makes the companion send
 * that copy again.
 */
static void conn_lost(gw_link_t *l, int err, const char *why)
{
    lconn_t *c = l->conn;
    int was_up = l->state == L_UP;

    if (c == NULL)
        return;
    uv_timer_stop(&l->handshake_timer);
    uv_timer_stop(&l->heartbeat_timer);
    uv_timer_stop(&l->mark_timer);
    if (l->out.len > 0 || c->inflight > 0)
        gw_info("link", "%zu unsent byte(s) dropped with the connection; chats are written again",
                l->out.len + c->inflight);
    l->out.len = 0;
    l->out.overflow = 0;
    l->conn = NULL;
    release_conn(c);
    expire_iqs(l, 1);
    l->companion = C_UNKNOWN;
    if (l->state == L_STOPPED)
        return;
    l->state = L_DOWN;
    if (why == NULL)
        why = err ? uv_strerror(err) : "";
    if (was_up)
        gw_warn("link", "component link to %s:%d lost%s%s", l->cfg->xmpp_host, l->cfg->xmpp_port,
                why[0] ? ": " : "", why);
    else
        gw_warn("link", "cannot connect component to %s:%d%s%s", l->cfg->xmpp_host,
                l->cfg->xmpp_port, why[0] ? ": " : "", why);
    if (was_up)
        l->cbs.on_down(l->ud);
    schedule_reconnect(l);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    lconn_t *c = h->data;

    GW_UNUSED(suggested);
    if (c->l == NULL) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init(c->l->rbuf, READ_BUF);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    lconn_t *c = s->data;
    gw_link_t *l = c->l;
    int rc;

    GW_UNUSED(buf);
    if (l == NULL || l->conn != c)
        return;
    if (n < 0) {
        conn_lost(l, (int)n, n == UV_EOF ? "closed by the server" : NULL);
        return;
    }
    if (n == 0)
        return;
    rc = gw_xmlstream_feed(l->xs, buf->base, (size_t)n);
    if (rc != 0 && l->conn == c) {
        if (rc == GW_EINVAL || rc == GW_ELIMIT || rc == GW_ENOMEM) {
            /* Tell the server why, as RFC 6120 asks, then go. */
            char e[256];
            snprintf(e, sizeof(e),
                     "<stream:error><%s xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                     "</stream:error></stream:stream>",
                     gw_xmlstream_condition(l->xs));
            out_append(l, e, strlen(e));
            flush_out(l);
            if (l->conn == c)
                conn_lost(l, 0, gw_xmlstream_error(l->xs));
        } else {
            conn_lost(l, 0, "stream ended");
        }
    }
}

static void on_connected(uv_connect_t *req, int status)
{
    lconn_t *c = req->data;
    gw_link_t *l = c->l;
    gw_sbuf_t b;
    int rc;

    if (l == NULL || l->conn != c)
        return;
    if (status < 0) {
        conn_lost(l, status, NULL);
        return;
    }
    /* Nagle adds tens of milliseconds to every small stanza at low rates. */
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 60);
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        conn_lost(l, rc, NULL);
        return;
    }
    c->reading = 1;
    if (gw_xmlstream_reset(l->xs) != 0) {
        conn_lost(l, UV_ENOMEM, "out of memory");
        return;
    }
    gw_sbuf_init(&b, 4096);
    gw_sbuf_puts(&b, "<?xml version='1.0'?><stream:stream");
    attr(&b, "to", l->cfg->component_domain);
    gw_sbuf_puts(&b, " xmlns='jabber:component:accept' xmlns:stream='" NS_STREAMS "'");
    if (l->cfg->allow_multiple)
        gw_sbuf_puts(&b, " allowMultiple='true'");
    gw_sbuf_puts(&b, ">");
    if (!b.overflow)
        out_append(l, b.data, b.len);
    gw_sbuf_free(&b);
    flush_out(l);
}

static void connect_addr(gw_link_t *l, lconn_t *c, const struct sockaddr *sa)
{
    int rc = uv_tcp_init(l->loop, &c->tcp);

    if (rc == 0) {
        c->tcp_init = 1;
        c->tcp.data = c;
        c->creq.data = c;
        rc = uv_tcp_connect(&c->creq, &c->tcp, sa, on_connected);
    }
    if (rc != 0)
        conn_lost(l, rc, NULL);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    lconn_t *c = req->data;
    gw_link_t *l = c->l;

    c->resolving = 0;
    if (l == NULL || l->conn != c) {
        uv_freeaddrinfo(res);
        free(c);
        return;
    }
    if (status < 0 || res == NULL) {
        uv_freeaddrinfo(res);
        conn_lost(l, status < 0 ? status : UV_EAI_NONAME, NULL);
        return;
    }
    connect_addr(l, c, res->ai_addr);
    uv_freeaddrinfo(res);
}

static void do_connect(gw_link_t *l)
{
    lconn_t *c = calloc(1, sizeof(*c));
    struct sockaddr_storage ss;
    char port[16];
    int rc;

    if (c == NULL) {
        schedule_reconnect(l);
        return;
    }
    c->l = l;
    l->conn = c;
    l->state = L_CONNECTING;
    l->out.len = 0;
    l->out.overflow = 0;
    l->stream_id[0] = '\0';
    gw_debug("link", "connecting to %s:%d", l->cfg->xmpp_host, l->cfg->xmpp_port);
    /* Connecting, the stream header and the handshake answer share one bound. */
    uv_timer_stop(&l->handshake_timer);
    uv_timer_start(&l->handshake_timer, on_handshake_timeout,
                   (uint64_t)l->cfg->handshake_timeout_ms, 0);
    if (uv_ip4_addr(l->cfg->xmpp_host, l->cfg->xmpp_port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(l->cfg->xmpp_host, l->cfg->xmpp_port, (struct sockaddr_in6 *)&ss) == 0) {
        connect_addr(l, c, (const struct sockaddr *)&ss);
        return;
    }
    {
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        snprintf(port, sizeof(port), "%d", l->cfg->xmpp_port);
        c->gai.data = c;
        rc = uv_getaddrinfo(l->loop, &c->gai, on_resolved, l->cfg->xmpp_host, port, &hints);
        if (rc == 0)
            c->resolving = 1;
        else
            conn_lost(l, rc, NULL);
    }
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
    if (l->state == L_UP && can_write(l))
        out_append(l, " ", 1);
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
    {
        static const gw_xmlstream_cbs_t xcbs = {on_stream_open, on_stanza, on_skipped,
                                                on_stream_close};
        l->rbuf = malloc(READ_BUF);
        if (l->rbuf == NULL || gw_xmlstream_new(&xcbs, l, NULL, &l->xs) != 0) {
            free(l->rbuf);
            free(l);
            return GW_ENOMEM;
        }
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
    gw_sbuf_init(&l->out, OUT_MAX);
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
    if (l->state != L_UP || !can_write(l) || l->out.overflow)
        return GW_ELINK;
    /* Built straight into the output: no copy per message. */
    out_limit(l);
    l->dirty = 1;
    if (build_chat(l, &l->out, user, to, id, origin_id, kind, body, body_len) != 0)
        return GW_ELINK; /* not written: the connection is dropped at the next flush */
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

    if (l->state != L_UP || !can_write(l))
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
    if (l->conn != NULL) {
        lconn_t *c = l->conn;
        if (can_write(l) && (was == L_UP || was == L_HANDSHAKE)) {
            /* One write of what was pending and the stream's end; the socket closes next. */
            out_append(l, "</stream:stream>", 16);
            flush_out(l); /* a failed write gives the connection up itself */
        }
        if (l->conn == c) {
            l->conn = NULL;
            release_conn(c);
        }
        l->out.len = 0;
    }
    expire_iqs(l, 1);
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
    if (l == NULL)
        return;
    if (l->conn != NULL) {
        /* Never stopped: the loop is gone, so the connection is only forgotten. */
        l->conn->l = NULL;
        l->conn = NULL;
    }
    gw_sbuf_free(&l->web_delta);
    gw_sbuf_free(&l->web_full);
    gw_sbuf_free(&l->acks);
    gw_xmlstream_free(l->xs);
    gw_sbuf_free(&l->out);
    free(l->rbuf);
    free(l);
}

/* gw_link_handle_xml: one element inside a made-up stream header. */
typedef struct frag {
    gw_link_t *l;
    int n;
} frag_t;

static int frag_open(void *ud, const gw_xml_el_t *h)
{
    GW_UNUSED(ud);
    GW_UNUSED(h);
    return 0;
}

static int frag_stanza(void *ud, const gw_xml_el_t *st)
{
    frag_t *f = ud;
    gw_link_t *l = f->l;

    if (f->n++ > 0)
        return GW_EINVAL;
    if (strcmp(st->name, "message") == 0)
        on_message(l, st);
    else if (strcmp(st->name, "iq") == 0)
        on_iq(l, st);
    else if (strcmp(st->name, "error") == 0)
        on_stream_error(l, st);
    return 0;
}

static int frag_close(void *ud)
{
    GW_UNUSED(ud);
    return GW_EINVAL;
}

int gw_link_handle_xml(gw_link_t *l, const char *xml, size_t len)
{
    static const char head[] =
        "<stream:stream xmlns='jabber:component:accept' xmlns:stream='" NS_STREAMS "'>";
    static const gw_xmlstream_cbs_t cbs = {frag_open, frag_stanza, NULL, frag_close};
    gw_xmlstream_t *x;
    frag_t f = {l, 0};
    lstate_t saved = l->state;
    int rc;

    if (gw_xmlstream_new(&cbs, &f, NULL, &x) != 0)
        return GW_ENOMEM;
    l->state = L_UP;
    l->no_send = 1;
    rc = gw_xmlstream_feed(x, head, sizeof(head) - 1);
    if (rc == 0)
        rc = gw_xmlstream_feed(x, xml, len);
    l->no_send = 0;
    l->state = saved;
    gw_xmlstream_free(x);
    if (rc == GW_ENOMEM)
        return rc;
    return rc == 0 && f.n == 1 ? 0 : GW_EINVAL;
}
