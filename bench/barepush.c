/*
 * barepush.c - a bare libwebsockets push server: the yardstick of bench/fanout.mjs
 * (issue 12's fan-out target). Built by bench/CMakeLists.txt, never installed.
 *
 * It is what a competent push server written straight on the gateway's WebSocket
 * layer would be, and nothing more: the same library and build (Debian's
 * libwebsockets 4.1.6), the same loop kind (a foreign libuv loop), the same
 * context options as gateway/src/front.c, and the same write policy: a frame is
 * written at once when nothing is queued before it on that connection (lws keeps
 * what the socket does not take and asks for POLLOUT itself), otherwise it waits
 * in a bounded per-connection queue and goes out one frame per writable callback.
 * A connection whose queue is full is closed. No authentication, no JSON, no XMPP.
 *
 *   barepush [--queue-max N] [--rx-buffer BYTES]
 *
 * prints "ws PORT control PORT" on stdout once both listen (both on 127.0.0.1,
 * ports chosen by the kernel), then serves:
 *
 *   - WebSockets at ws://127.0.0.1:PORT/GROUP (subprotocol "barepush" or none);
 *     GROUP is 1-64 of [A-Za-z0-9._-]. Whatever a client sends is ignored.
 *   - a control socket (TCP, the bench's): one line per message,
 *       GROUP SP FRAME LF   writes the text frame FRAME to every connection of GROUP
 *       * SP FRAME LF       writes it to every connection
 *     A line is at most CTL_LINE_MAX bytes; a longer one closes the control connection.
 *
 * SIGTERM or SIGINT: stops, prints its counters on stderr and exits 0.
 */
#include <libwebsockets.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#define GROUP_NAME_MAX 64
#define GROUP_BUCKETS  16384u
#define CTL_LINE_MAX   65536u

/* One frame, written to many connections: the bytes once, a reference per queue. */
typedef struct msg {
    unsigned refs;
    size_t len;
    unsigned char bytes[]; /* LWS_PRE headroom (lws writes the frame header there), then len */
} msg_t;

typedef struct group group_t;

/* Per connection (lws's per-session data): list links, group and bounded queue. */
typedef struct conn {
    struct lws *wsi;
    group_t *group;
    struct conn *gnext, *gprev; /* in the group */
    struct conn *anext, *aprev; /* in the server's list of every connection */
    msg_t **q;                  /* ring, grown by doubling up to queue_max */
    uint32_t qhead, qlen, qcap;
    int closing;
} conn_t;

struct group {
    group_t *hnext;
    conn_t *head;
    char name[GROUP_NAME_MAX + 1];
};

typedef struct ctl {
    uv_tcp_t h;
    struct server *srv;
    struct ctl *next, *prev; /* in the server's list of control connections */
    size_t len;
    char buf[CTL_LINE_MAX];
} ctl_t;

/* Per server (the per-listener state). */
typedef struct server {
    uv_loop_t loop;
    struct lws_context *ctx;
    void *foreign[1];
    struct lws_protocols protocols[2];
    group_t *buckets[GROUP_BUCKETS];
    conn_t *all;
    uint32_t queue_max;
    uv_tcp_t ctl_listener;
    ctl_t *ctls;
    uv_signal_t sigterm, sigint;
    int stopping;
    /* Counters, printed at exit. */
    unsigned long long triggers, frames_now, frames_queued, overflow_closes, write_errors;
} server_t;

static msg_t *msg_new(const char *data, size_t len)
{
    msg_t *m = malloc(sizeof(*m) + LWS_PRE + len);

    if (m == NULL)
        return NULL;
    m->refs = 1;
    m->len = len;
    memcpy(m->bytes + LWS_PRE, data, len);
    return m;
}

static void msg_unref(msg_t *m)
{
    if (m != NULL && --m->refs == 0)
        free(m);
}

static int valid_group(const char *s, size_t n)
{
    if (n == 0 || n > GROUP_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

static uint32_t hash_name(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h % GROUP_BUCKETS;
}

/* The group named s[0..n), or NULL; with create, made if missing (NULL on ENOMEM). */
static group_t *group_find(server_t *srv, const char *s, size_t n, int create)
{
    uint32_t b = hash_name(s, n);
    group_t *g;

    for (g = srv->buckets[b]; g; g = g->hnext)
        if (strlen(g->name) == n && memcmp(g->name, s, n) == 0)
            return g;
    if (!create || (g = calloc(1, sizeof(*g))) == NULL)
        return NULL;
    memcpy(g->name, s, n);
    g->hnext = srv->buckets[b];
    srv->buckets[b] = g;
    return g;
}

static void group_drop_if_empty(server_t *srv, group_t *g)
{
    group_t **pp = &srv->buckets[hash_name(g->name, strlen(g->name))];

    if (g->head != NULL)
        return;
    while (*pp && *pp != g)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = g->hnext;
    free(g);
}

static int queue_push(conn_t *c, msg_t *m, uint32_t max)
{
    if (c->qlen == c->qcap) {
        uint32_t ncap = c->qcap ? c->qcap * 2 : 4;
        msg_t **nq;
        if (c->qlen >= max)
            return -1;
        if (ncap > max)
            ncap = max;
        nq = malloc(ncap * sizeof(*nq));
        if (nq == NULL)
            return -1;
        for (uint32_t i = 0; i < c->qlen; i++)
            nq[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = nq;
        c->qcap = ncap;
        c->qhead = 0;
    }
    m->refs++;
    c->q[(c->qhead + c->qlen) % c->qcap] = m;
    c->qlen++;
    return 0;
}

static msg_t *queue_pop(conn_t *c)
{
    msg_t *m;

    if (c->qlen == 0)
        return NULL;
    m = c->q[c->qhead];
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    return m;
}

/* The write policy of front.c's gw_front_send (see the comment there for why). */
static void send_to(server_t *srv, conn_t *c, msg_t *m)
{
    if (c->closing)
        return;
    if (c->qlen == 0 && !lws_partial_buffered(c->wsi)) {
        if (lws_write(c->wsi, m->bytes + LWS_PRE, m->len, LWS_WRITE_TEXT) >= 0) {
            srv->frames_now++;
            return;
        }
        /* The connection failed; the writable callback closes it. */
        srv->write_errors++;
        c->closing = 1;
        lws_callback_on_writable(c->wsi);
        return;
    }
    if (queue_push(c, m, srv->queue_max) != 0) {
        srv->overflow_closes++;
        c->closing = 1;
    } else {
        srv->frames_queued++;
    }
    lws_callback_on_writable(c->wsi);
}

static void conn_attach(server_t *srv, conn_t *c, group_t *g)
{
    c->group = g;
    c->gnext = g->head;
    if (g->head)
        g->head->gprev = c;
    g->head = c;
    c->anext = srv->all;
    if (srv->all)
        srv->all->aprev = c;
    srv->all = c;
}

static void conn_detach(server_t *srv, conn_t *c)
{
    msg_t *m;

    if (c->group == NULL)
        return;
    if (c->gprev)
        c->gprev->gnext = c->gnext;
    else
        c->group->head = c->gnext;
    if (c->gnext)
        c->gnext->gprev = c->gprev;
    if (c->aprev)
        c->aprev->anext = c->anext;
    else
        srv->all = c->anext;
    if (c->anext)
        c->anext->aprev = c->aprev;
    group_drop_if_empty(srv, c->group);
    c->group = NULL;
    while ((m = queue_pop(c)) != NULL)
        msg_unref(m);
    free(c->q);
    c->q = NULL;
    c->qcap = 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    server_t *srv = lws_context_user(lws_get_context(wsi));
    conn_t *c = user;

    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED: {
        char uri[128];
        int n = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
        group_t *g;
        memset(c, 0, sizeof(*c));
        c->wsi = wsi;
        if (n < 2 || uri[0] != '/' || !valid_group(uri + 1, (size_t)n - 1))
            return -1; /* no such group name: refused */
        if ((g = group_find(srv, uri + 1, (size_t)n - 1, 1)) == NULL)
            return -1;
        conn_attach(srv, c, g);
        return 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        msg_t *m;
        if (c->closing)
            return -1;
        if ((m = queue_pop(c)) == NULL)
            return 0;
        if (lws_write(wsi, m->bytes + LWS_PRE, m->len, LWS_WRITE_TEXT) < 0) {
            msg_unref(m);
            srv->write_errors++;
            return -1;
        }
        msg_unref(m);
        if (c->qlen)
            lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_RECEIVE: return 0; /* clients have nothing to say */
    case LWS_CALLBACK_CLOSED: conn_detach(srv, c); return 0;
    default: break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* One control line (without its LF): "GROUP FRAME" or "* FRAME". */
static void on_line(server_t *srv, const char *line, size_t n)
{
    const char *sp = memchr(line, ' ', n);
    size_t gl, fl;
    msg_t *m;

    if (sp == NULL || sp == line || (size_t)(sp - line) == n - 1)
        return; /* not "NAME FRAME": ignored */
    gl = (size_t)(sp - line);
    fl = n - gl - 1;
    if ((m = msg_new(sp + 1, fl)) == NULL)
        return;
    srv->triggers++;
    if (gl == 1 && line[0] == '*') {
        for (conn_t *c = srv->all; c; c = c->anext)
            send_to(srv, c, m);
    } else if (valid_group(line, gl)) {
        group_t *g = group_find(srv, line, gl, 0);
        for (conn_t *c = g ? g->head : NULL; c; c = c->gnext)
            send_to(srv, c, m);
    }
    msg_unref(m);
}

static void ctl_closed(uv_handle_t *h)
{
    ctl_t *cc = h->data;

    if (cc->prev)
        cc->prev->next = cc->next;
    else
        cc->srv->ctls = cc->next;
    if (cc->next)
        cc->next->prev = cc->prev;
    free(cc);
}

static void ctl_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    ctl_t *cc = h->data;

    (void)hint;
    buf->base = cc->buf + cc->len;
    buf->len = sizeof(cc->buf) - cc->len;
}

static void ctl_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    ctl_t *cc = st->data;
    size_t start = 0;

    (void)buf;
    if (nread < 0) {
        uv_close((uv_handle_t *)st, ctl_closed);
        return;
    }
    cc->len += (size_t)nread;
    for (size_t i = cc->len - (size_t)nread; i < cc->len; i++) {
        if (cc->buf[i] != '\n')
            continue;
        on_line(cc->srv, cc->buf + start, i - start);
        start = i + 1;
    }
    memmove(cc->buf, cc->buf + start, cc->len - start);
    cc->len -= start;
    if (cc->len == sizeof(cc->buf)) {
        fprintf(stderr, "barepush: control line longer than %u bytes, closing it\n", CTL_LINE_MAX);
        uv_read_stop(st);
        uv_close((uv_handle_t *)st, ctl_closed);
    }
}

static void ctl_accept(uv_stream_t *listener, int status)
{
    server_t *srv = listener->data;
    ctl_t *cc;

    if (status < 0 || (cc = calloc(1, sizeof(*cc))) == NULL)
        return;
    cc->srv = srv;
    cc->next = srv->ctls;
    if (srv->ctls)
        srv->ctls->prev = cc;
    srv->ctls = cc;
    uv_tcp_init(&srv->loop, &cc->h);
    cc->h.data = cc;
    if (uv_accept(listener, (uv_stream_t *)&cc->h) != 0) {
        uv_close((uv_handle_t *)&cc->h, ctl_closed);
        return;
    }
    uv_tcp_nodelay(&cc->h, 1);
    uv_read_start((uv_stream_t *)&cc->h, ctl_alloc, ctl_read);
}

static void on_signal(uv_signal_t *h, int signum)
{
    server_t *srv = h->data;

    (void)signum;
    if (srv->stopping)
        return;
    srv->stopping = 1;
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->ctl_listener, NULL);
    for (ctl_t *cc = srv->ctls; cc; cc = cc->next)
        if (!uv_is_closing((uv_handle_t *)&cc->h))
            uv_close((uv_handle_t *)&cc->h, ctl_closed);
    lws_context_destroy(srv->ctx);
    srv->ctx = NULL;
}

/* Up to the hard open-file limit: the bench holds ~19,800 connections here. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int start(server_t *srv, int rx_buffer)
{
    struct lws_context_creation_info info;
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    struct lws_vhost *vh;

    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    srv->protocols[0].name = "barepush";
    srv->protocols[0].callback = callback;
    srv->protocols[0].per_session_data_size = sizeof(conn_t);
    srv->protocols[0].rx_buffer_size = (size_t)rx_buffer;
    /* protocols[1] stays zeroed: the list terminator (4.1 has no LWS_PROTOCOL_LIST_TERM). */

    /* As front.c: libuv foreign loop, one service thread, no fd_limit_per_thread. */
    memset(&info, 0, sizeof(info));
    srv->foreign[0] = &srv->loop;
    info.foreign_loops = srv->foreign;
    info.options =
        LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.port = 0;
    info.iface = "127.0.0.1";
    info.protocols = srv->protocols;
    info.user = srv;
    info.vhost_name = "barepush";
    info.count_threads = 1;
    info.timeout_secs = 10;
    info.ka_time = 0;
    srv->ctx = lws_create_context(&info);
    vh = srv->ctx ? lws_get_vhost_by_name(srv->ctx, "barepush") : NULL;
    if (vh == NULL || lws_get_vhost_listen_port(vh) <= 0) {
        fprintf(stderr, "barepush: cannot listen for WebSockets on 127.0.0.1\n");
        return -1;
    }

    uv_tcp_init(&srv->loop, &srv->ctl_listener);
    srv->ctl_listener.data = srv;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if (uv_tcp_bind(&srv->ctl_listener, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&srv->ctl_listener, 16, ctl_accept) != 0 ||
        uv_tcp_getsockname(&srv->ctl_listener, (struct sockaddr *)&bound, &blen) != 0) {
        fprintf(stderr, "barepush: cannot listen for the control socket on 127.0.0.1\n");
        return -1;
    }
    printf("ws %d control %d\n", lws_get_vhost_listen_port(vh),
           ntohs(((struct sockaddr_in *)&bound)->sin_port));
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    server_t *srv = calloc(1, sizeof(*srv));
    long queue_max = 512, rx_buffer = 1024; /* the gateway's defaults */
    int rc = 1;

    if (srv == NULL)
        return 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--queue-max") && i + 1 < argc) {
            queue_max = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--rx-buffer") && i + 1 < argc) {
            rx_buffer = strtol(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: barepush [--queue-max N] [--rx-buffer BYTES]\n");
            free(srv);
            return 2;
        }
    }
    if (queue_max < 4 || queue_max > 1000000 || rx_buffer < 128 || rx_buffer > 1048576) {
        fprintf(stderr, "barepush: --queue-max 4..1000000, --rx-buffer 128..1048576\n");
        free(srv);
        return 2;
    }
    srv->queue_max = (uint32_t)queue_max;
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    uv_loop_init(&srv->loop);
    uv_signal_init(&srv->loop, &srv->sigterm);
    uv_signal_init(&srv->loop, &srv->sigint);
    srv->sigterm.data = srv->sigint.data = srv;
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    if (start(srv, (int)rx_buffer) != 0) {
        uv_close((uv_handle_t *)&srv->sigterm, NULL);
        uv_close((uv_handle_t *)&srv->sigint, NULL);
        if (srv->ctl_listener.data)
            uv_close((uv_handle_t *)&srv->ctl_listener, NULL);
        if (srv->ctx)
            lws_context_destroy(srv->ctx);
        goto out;
    }
    rc = 0;
out:
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&srv->loop) != 0)
        fprintf(stderr, "barepush: event loop closed with handles open\n");
    fprintf(stderr,
            "barepush: %llu triggers, %llu frames written at once, %llu queued, "
            "%llu overflow closes, %llu write errors\n",
            srv->triggers, srv->frames_now, srv->frames_queued, srv->overflow_closes,
            srv->write_errors);
    free(srv);
    return rc;
}
