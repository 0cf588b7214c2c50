/*
 * redisconn.c - one hiredis async connection on the libuv loop, kept up.
 *
 * The contract is in redisconn.h. What this file adds, and why:
 *
 * libuv hooks. hiredis 0.14.1's adapters/libuv.h ignores a poll error
 * status (libuv stops the handle and reports POLLERR that way), so a refused
 * connect or a reset socket would hang the context forever; it also leaks its
 * event data when uv_poll_init fails. This file has its own small adapter
 * instead (rpoll_*), whose poll callback lets hiredis look at the socket on
 * error.
 *
 * Timeouts. 0.14.1 has no async timeouts, so a watchdog timer bounds connect,
 * handshake and command time. Host names are resolved with uv_getaddrinfo,
 * because hiredis would call getaddrinfo() on the loop thread.
 *
 * Reconnecting. Capped exponential backoff with full jitter on the upper
 * half, so that gateways restarted together do not reconnect in step.
 *
 * Writes once per loop iteration. hiredis asks for POLLOUT (addWrite) after
 * every command and drops it (delWrite) once the buffer is written, and every
 * such change is a uv_poll_start: with libuv 1.44 that is two epoll_ctl calls
 * (an ADD that fails with EEXIST, then a MOD) when the mask changes, four per
 * command. Once connected, a command's addWrite only marks the context and a
 * uv_idle hook writes everything marked at the start of the next loop
 * iteration, so the commands of one iteration (a burst of messages' cache
 * updates and relay forwards) go out pipelined in one write(), and POLLOUT is
 * armed only when the socket does not take it all. A mask that does not
 * change is not set again. An idle hook rather than a prepare hook: a command
 * may be issued from another prepare hook (the link's flush may give up a
 * connection, which the router hears at once), and a prepare hook started there would not run
 * before the poll, which may then block; an active idle hook keeps the poll
 * from blocking until it has run.
 *
 * AUTH. With a password set, AUTH (with the ACL user, when set) is the first
 * command on every new connection, for every owner (the cache's connection
 * and both of the relay's), and the owner's on_connected waits for its
 * answer: a Redis that requires a password refuses everything else with
 * NOAUTH anyway, and a refused AUTH must be retried with backoff, not
 * followed by commands that fail.
 */
#include "redisconn.h"
#include "gw.h"
#include "log.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define WATCHDOG_MS  500
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 10000

typedef enum { C_NEW, C_DOWN, C_RESOLVING, C_CONNECTING, C_HANDSHAKE, C_UP, C_STOPPED } cstate_t;

struct gw_redisconn {
    uv_loop_t *loop;
    gw_redisconn_opts_t o; /* host and name point into this struct */
    char host[256];
    char name[32];
    char user[128];
    char password[512];
    char label[320]; /* "host:port" or "host:port (name)", for logs */

    cstate_t state;
    redisAsyncContext *ac; /* current context, or NULL */
    uv_getaddrinfo_t *gai; /* resolution in flight, or NULL */
    uv_timer_t retry;
    uv_timer_t watchdog;
    unsigned attempt;
    uint64_t deadline_ms; /* connect/handshake deadline (uv_now) */
    uint64_t progress_ms; /* last reply, or when the first outstanding command went out */
    size_t pending;       /* commands sent and not yet answered */
    uint64_t rnd;         /* xorshift state: jitter */
};

static void connect_start(gw_redisconn_t *c);
static void schedule_retry(gw_redisconn_t *c);

static uint64_t next_rand(gw_redisconn_t *c)
{
    /* xorshift64: jitter only, nothing secret. */
    uint64_t x = c->rnd;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->rnd = x;
    return x;
}

/* ---- libuv hooks for hiredis (see the top of the file) ------------------ */

typedef struct rpoll {
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    uv_poll_t h;
    uv_idle_t flush; /* writes the marked output in the next loop iteration */
    int events;
    int handles;        /* open libuv handles; the struct is freed with the last */
    uint8_t want_write; /* output waits for the flush hook */
    uint8_t writing;    /* inside redisAsyncHandleWrite: addWrite then means "not all written" */
} rpoll_t;

static void handle_write(rpoll_t *p)
{
    p->writing = 1;
    redisAsyncHandleWrite(p->ac);
    /* hiredis may have freed the context (a write error): p->ac is NULL then. */
    p->writing = 0;
}

static void rpoll_cb(uv_poll_t *h, int status, int events)
{
    rpoll_t *p = h->data;

    /* On POLLERR libuv stops the handle and passes an error status. Let
     * hiredis read the socket: it finds the error (SO_ERROR while
     * connecting, a failed read once connected) and tears down cleanly. */
    if (status < 0)
        events = UV_READABLE | UV_WRITABLE;
    if (p->ac != NULL && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac != NULL && (events & UV_WRITABLE))
        handle_write(p);
    if (status < 0 && p->ac != NULL && p->events)
        uv_poll_start(&p->h, p->events, rpoll_cb);
}

static void rpoll_update(rpoll_t *p, int add, int mask)
{
    int events = add ? p->events | mask : p->events & ~mask;

    if (events == p->events)
        return;
    p->events = events;
    if (p->events)
        uv_poll_start(&p->h, p->events, rpoll_cb);
    else
        uv_poll_stop(&p->h);
}

static void rpoll_add_read(void *p)
{
    rpoll_update(p, 1, UV_READABLE);
}
static void rpoll_del_read(void *p)
{
    rpoll_update(p, 0, UV_READABLE);
}
static void on_flush(uv_idle_t *h)
{
    rpoll_t *p = h->data;

    uv_idle_stop(&p->flush);
    if (p->ac != NULL && p->want_write) {
        p->want_write = 0;
        handle_write(p);
    }
}

static void rpoll_add_write(void *priv)
{
    rpoll_t *p = priv;

    /* Connecting (POLLOUT tells when it is done), or a write that did not finish. */
    if (p->writing || p->ac == NULL || !(p->ac->c.flags & REDIS_CONNECTED)) {
        rpoll_update(p, 1, UV_WRITABLE);
        return;
    }
    if (!p->want_write) {
        p->want_write = 1;
        uv_idle_start(&p->flush, on_flush);
    }
}
static void rpoll_del_write(void *priv)
{
    rpoll_t *p = priv;

    p->want_write = 0;
    uv_idle_stop(&p->flush);
    rpoll_update(p, 0, UV_WRITABLE);
}

static void rpoll_closed(uv_handle_t *h)
{
    rpoll_t *p = h->data;

    if (--p->handles == 0)
        free(p);
}

static void rpoll_cleanup(void *priv)
{
    rpoll_t *p = priv;

    p->ac = NULL;
    p->want_write = 0;
    uv_close((uv_handle_t *)&p->h, rpoll_closed);
    uv_close((uv_handle_t *)&p->flush, rpoll_closed);
}

static int rpoll_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    rpoll_t *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return GW_ENOMEM;
    if (uv_poll_init(loop, &p->h, ac->c.fd) != 0) {
        free(p);
        return GW_EIO;
    }
    uv_idle_init(loop, &p->flush);
    p->handles = 2;
    p->flush.data = p;
    p->h.data = p;
    p->ac = ac;
    ac->ev.data = p;
    ac->ev.addRead = rpoll_add_read;
    ac->ev.delRead = rpoll_del_read;
    ac->ev.addWrite = rpoll_add_write;
    ac->ev.delWrite = rpoll_del_write;
    ac->ev.cleanup = rpoll_cleanup;
    return 0;
}

/* ---- connection state --------------------------------------------------- */

static void count_reply(gw_redisconn_t *c)
{
    if (c->pending > 0)
        c->pending--;
    c->progress_ms = uv_now(c->loop);
}

static void notify_lost(gw_redisconn_t *c)
{
    if (c->o.on_lost != NULL)
        c->o.on_lost(c->o.ctx);
}

/*
 * The context died under us (hiredis frees it after its callbacks). Called
 * from the disconnect callback and from any reply callback that gets NULL,
 * whichever comes first; later calls for the same context do nothing.
 */
static void conn_lost(gw_redisconn_t *c, const redisAsyncContext *ac)
{
    if (c->ac != ac || ac == NULL)
        return;
    c->ac = NULL;
    if (c->state == C_STOPPED)
        return;
    gw_warn(c->o.module, "redis %s: connection lost: %s", c->label,
            ac->errstr[0] ? ac->errstr : "closed");
    schedule_retry(c);
    notify_lost(c);
}

void gw_redisconn_drop(gw_redisconn_t *c, const char *why)
{
    redisAsyncContext *ac = c->ac;

    if (ac == NULL)
        return;
    gw_warn(c->o.module, "redis %s: %s; reconnecting", c->label, why);
    c->ac = NULL;
    schedule_retry(c);
    /* Runs the outstanding callbacks with NULL now, or when the current one returns. */
    redisAsyncFree(ac);
    notify_lost(c);
}

static void on_retry(uv_timer_t *t)
{
    gw_redisconn_t *c = t->data;

    if (c->state == C_DOWN)
        connect_start(c);
}

static void schedule_retry(gw_redisconn_t *c)
{
    uint64_t delay;
    unsigned shift = c->attempt < 16 ? c->attempt : 16;

    if (c->state == C_STOPPED)
        return;
    c->state = C_DOWN;
    delay = (uint64_t)RETRY_MIN_MS << shift;
    if (delay > RETRY_MAX_MS)
        delay = RETRY_MAX_MS;
    /* Full jitter on the upper half: gateways restarted together do not reconnect in step. */
    delay = delay / 2 + next_rand(c) % (delay / 2 + 1);
    c->attempt++;
    uv_timer_start(&c->retry, on_retry, delay, 0);
}

static void on_watchdog(uv_timer_t *t)
{
    gw_redisconn_t *c = t->data;
    uint64_t now = uv_now(c->loop);

    if ((c->state == C_CONNECTING || c->state == C_HANDSHAKE) && now > c->deadline_ms)
        gw_redisconn_drop(c, "connect timed out");
    else if (c->state == C_UP && c->pending > 0 && now - c->progress_ms > c->o.command_timeout_ms)
        gw_redisconn_drop(c, "no reply in time");
}

/* ---- connecting --------------------------------------------------------- */

/* The answer to AUTH: the owner's handshake starts only once Redis has let us in. */
static void on_auth_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    gw_redisconn_t *c = priv;
    const redisReply *r = reply;

    if (!gw_redisconn_replied(ac, reply) || c->state != C_HANDSHAKE)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        /* Redis never echoes the password; its message says what is wrong. */
        gw_error(c->o.module,
                 "redis %s: AUTH refused: %.200s (check redis_user and redis_password)", c->label,
                 r->str);
        gw_redisconn_drop(c, "AUTH failed");
        return;
    }
    c->o.on_connected(c->o.ctx, ac);
}

static void send_auth(gw_redisconn_t *c)
{
    const char *argv[3] = {"AUTH", c->user, c->password};
    size_t lens[3] = {4, strlen(c->user), strlen(c->password)};
    int argc = 3;

    if (c->user[0] == '\0') {
        argv[1] = c->password;
        lens[1] = lens[2];
        argc = 2;
    }
    if (gw_redisconn_send(c, on_auth_reply, c, argc, argv, lens) != 0)
        gw_redisconn_drop(c, "cannot send AUTH");
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    gw_redisconn_t *c = cac->data;
    redisAsyncContext *ac = c->ac;

    if (ac != cac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context when we return. */
        gw_warn(c->o.module, "redis %s: connect failed: %s", c->label,
                cac->errstr[0] ? cac->errstr : "?");
        c->ac = NULL;
        schedule_retry(c);
        notify_lost(c);
        return;
    }
    redisEnableKeepAlive(&ac->c);
    c->state = C_HANDSHAKE;
    if (c->o.handshake_timeout_ms > 0)
        c->deadline_ms = uv_now(c->loop) + c->o.handshake_timeout_ms;
    if (c->password[0] != '\0')
        send_auth(c);
    else
        c->o.on_connected(c->o.ctx, ac);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    GW_UNUSED(status);
    conn_lost(ac->data, ac);
}

static void connect_addr(gw_redisconn_t *c, const char *ip)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, c->o.port);

    if (ac == NULL) {
        gw_error(c->o.module, "redis %s: out of memory", c->label);
        schedule_retry(c);
        return;
    }
    if (ac->err) {
        gw_warn(c->o.module, "redis %s: connect failed: %s", c->label, ac->errstr);
        redisAsyncFree(ac);
        schedule_retry(c);
        return;
    }
    ac->data = c;
    if (rpoll_attach(ac, c->loop) != 0) {
        gw_error(c->o.module, "redis %s: cannot watch the socket", c->label);
        redisAsyncFree(ac);
        schedule_retry(c);
        return;
    }
    c->ac = ac;
    c->state = C_CONNECTING;
    c->deadline_ms = uv_now(c->loop) + c->o.connect_timeout_ms;
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    redisAsyncSetConnectCallback(ac, on_connect); /* starts watching for writability */
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    gw_redisconn_t *c = req->data;
    char ip[64] = "";

    free(req);
    if (c == NULL) { /* stopped while resolving */
        uv_freeaddrinfo(res);
        return;
    }
    c->gai = NULL;
    if (status == 0 && res != NULL) {
        if (res->ai_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)(const void *)res->ai_addr, ip, sizeof(ip));
        else
            uv_ip4_name((const struct sockaddr_in *)(const void *)res->ai_addr, ip, sizeof(ip));
    }
    uv_freeaddrinfo(res);
    if (c->state != C_RESOLVING)
        return;
    if (ip[0] == '\0') {
        gw_warn(c->o.module, "redis %s: cannot resolve: %s", c->host,
                status < 0 ? uv_strerror(status) : "no address");
        schedule_retry(c);
        return;
    }
    connect_addr(c, ip);
}

static void connect_start(gw_redisconn_t *c)
{
    unsigned char buf[sizeof(struct in6_addr)];
    struct addrinfo hints;
    int rc;

    c->state = C_RESOLVING;
    /* Every callback of the previous context has run by now. */
    c->pending = 0;
    if (uv_inet_pton(AF_INET, c->host, buf) == 0 || uv_inet_pton(AF_INET6, c->host, buf) == 0) {
        connect_addr(c, c->host);
        return;
    }
    c->gai = malloc(sizeof(*c->gai));
    if (c->gai == NULL) {
        schedule_retry(c);
        return;
    }
    c->gai->data = c;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = uv_getaddrinfo(c->loop, c->gai, on_resolved, c->host, NULL, &hints);
    if (rc < 0) {
        free(c->gai);
        c->gai = NULL;
        gw_warn(c->o.module, "redis %s: cannot resolve: %s", c->host, uv_strerror(rc));
        schedule_retry(c);
    }
}

/* ---- public API ----------------------------------------------------------- */

int gw_redisconn_new(uv_loop_t *loop, const gw_redisconn_opts_t *opts, gw_redisconn_t **out)
{
    gw_redisconn_t *c;
    uint64_t seed = 0;

    *out = NULL;
    if (opts->host == NULL || opts->host[0] == '\0' || strlen(opts->host) >= sizeof(c->host) ||
        (opts->user && strlen(opts->user) >= sizeof(c->user)) ||
        (opts->password && strlen(opts->password) >= sizeof(c->password)) ||
        opts->on_connected == NULL)
        return GW_EINVAL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return GW_ENOMEM;
    c->loop = loop;
    c->o = *opts;
    snprintf(c->host, sizeof(c->host), "%s", opts->host);
    c->o.host = c->host;
    snprintf(c->user, sizeof(c->user), "%s", opts->user ? opts->user : "");
    snprintf(c->password, sizeof(c->password), "%s", opts->password ? opts->password : "");
    c->o.user = c->user;
    c->o.password = c->password;
    if (opts->name != NULL) {
        snprintf(c->name, sizeof(c->name), "%s", opts->name);
        c->o.name = c->name;
        snprintf(c->label, sizeof(c->label), "%s:%d (%s)", c->host, c->o.port, c->name);
    } else {
        snprintf(c->label, sizeof(c->label), "%s:%d", c->host, c->o.port);
    }
    if (uv_random(NULL, NULL, &seed, sizeof(seed), 0, NULL) != 0)
        seed = gw_now_ms() ^ (uint64_t)(uintptr_t)c;
    c->rnd = seed ? seed : 0x9E3779B97F4A7C15ull;
    c->state = C_NEW;
    *out = c;
    return 0;
}

void gw_redisconn_start(gw_redisconn_t *c)
{
    if (c->state != C_NEW)
        return;
    uv_timer_init(c->loop, &c->retry);
    uv_timer_init(c->loop, &c->watchdog);
    c->retry.data = c;
    c->watchdog.data = c;
    /* The watchdog only checks deadlines; it should not keep the loop alive on its own. */
    uv_timer_start(&c->watchdog, on_watchdog, WATCHDOG_MS, WATCHDOG_MS);
    uv_unref((uv_handle_t *)&c->watchdog);
    c->state = C_DOWN;
    connect_start(c);
}

int gw_redisconn_send(gw_redisconn_t *c, gw_redisconn_reply_cb *fn, void *priv, int argc,
                      const char **argv, const size_t *lens)
{
    if (c->ac == NULL || redisAsyncCommandArgv(c->ac, fn, priv, argc, argv, lens) != REDIS_OK)
        return GW_EIO;
    if (c->pending++ == 0)
        c->progress_ms = uv_now(c->loop);
    return 0;
}

int gw_redisconn_replied(const redisAsyncContext *ac, const void *reply)
{
    gw_redisconn_t *c = ac->data;

    count_reply(c);
    if (reply == NULL) {
        conn_lost(c, ac);
        return 0;
    }
    return c->ac == ac;
}

void gw_redisconn_lost(const redisAsyncContext *ac)
{
    conn_lost(ac->data, ac);
}

void *gw_redisconn_ctx(const redisAsyncContext *ac)
{
    const gw_redisconn_t *c = ac->data;

    return c->o.ctx;
}

void gw_redisconn_up(gw_redisconn_t *c)
{
    c->state = C_UP;
    c->attempt = 0;
}

int gw_redisconn_is_up(const gw_redisconn_t *c)
{
    return c != NULL && c->state == C_UP && c->ac != NULL;
}

int gw_redisconn_in_handshake(const gw_redisconn_t *c)
{
    return c != NULL && c->state == C_HANDSHAKE;
}

int gw_redisconn_is_current(const gw_redisconn_t *c, const redisAsyncContext *ac)
{
    return c != NULL && ac != NULL && c->ac == ac;
}

const char *gw_redisconn_label(const gw_redisconn_t *c)
{
    return c->label;
}

size_t gw_redisconn_pending(const gw_redisconn_t *c)
{
    return c != NULL ? c->pending : 0;
}

void gw_redisconn_stop(gw_redisconn_t *c)
{
    redisAsyncContext *ac;
    cstate_t was;

    if (c == NULL || c->state == C_STOPPED)
        return;
    was = c->state;
    c->state = C_STOPPED;
    if (was == C_NEW)
        return;
    if (c->gai != NULL) {
        /* The request frees itself in its callback, which may still run. */
        c->gai->data = NULL;
        uv_cancel((uv_req_t *)c->gai);
        c->gai = NULL;
    }
    uv_close((uv_handle_t *)&c->retry, NULL);
    uv_close((uv_handle_t *)&c->watchdog, NULL);
    ac = c->ac;
    c->ac = NULL;
    if (ac != NULL)
        redisAsyncFree(ac); /* outstanding callbacks run now with NULL */
}

void gw_redisconn_free(gw_redisconn_t *c)
{
    free(c);
}
