/*
 * store.c - PostgreSQL adapter: batched writer, reader, spool, migrations.
 *
 * Each connection (writer, reader) is a small state machine driven by a
 * uv_poll on PQsocket(): connecting (PQconnectPoll), idle, or running one
 * request (PQsendQueryParams, then PQflush/PQconsumeInput/PQgetResult until
 * the result is complete). A lost connection is retried with capped backoff.
 */
#include "store.h"
#include "gw.h"
#include "log.h"
#include "metrics.h"
#include "payload.h"
#include "spoolrec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_READS_QUEUED 10000
#define SPOOL_LINE_MAX   (4u * 1024u * 1024u)
#define RETRY_BASE_MS    100   /* first backoff after a failed batch (server error) */
#define RETRY_CAP_MS     5000  /* longest backoff between retries */
#define FAIL_LOG_MS      10000 /* at most one log line per this interval for repeated failures */
#define DEGRADE_AFTER    3     /* consecutive failed batches before new writes go to the spool */

/* ---- rows ------------------------------------------------------------------- */

struct gw_rows {
    PGresult *res;
};

size_t gw_rows_count(const gw_rows_t *r)
{
    return r && r->res ? (size_t)PQntuples(r->res) : 0;
}

const char *gw_rows_get(const gw_rows_t *r, size_t row, int col)
{
    if (r == NULL || r->res == NULL || (int)row >= PQntuples(r->res) || col >= PQnfields(r->res))
        return "";
    return PQgetvalue(r->res, (int)row, col);
}

int gw_rows_isnull(const gw_rows_t *r, size_t row, int col)
{
    if (r == NULL || r->res == NULL || (int)row >= PQntuples(r->res) || col >= PQnfields(r->res))
        return 1;
    return PQgetisnull(r->res, (int)row, col);
}

/* ---- messages waiting for the writer ------------------------------------- */

typedef struct wrow {
    struct wrow *next;
    struct wrow *same; /* next row of the same batch with the same stanza_id (result matching) */
    uint64_t id, ts;
    char *sender, *recipient, *body, *kind, *cid, *stanza_id;
    gw_store_write_cb cb;
    void *ud;
    int replay;    /* came from the spool: nobody waits for it */
    unsigned seg;  /* bisection: the next seg rows from here form a batch of their own */
    int uncertain; /* was in flight when a connection broke: may have been committed */
    int done;      /* the outcome below is set */
    int status;    /* GW_STORE_* or a negative GW_E* */
    uint64_t out_id, out_ts;
} wrow_t;

static void wrow_free(wrow_t *w)
{
    free(w->sender);
    free(w->recipient);
    free(w->body);
    free(w->kind);
    free(w->cid);
    free(w->stanza_id);
    free(w);
}

static char *dupz(const char *s)
{
    return s ? strdup(s) : NULL;
}

static wrow_t *wrow_new(const gw_store_msg_t *m)
{
    wrow_t *w = calloc(1, sizeof(*w));

    if (w == NULL)
        return NULL;
    w->id = m->id;
    w->ts = m->ts;
    w->sender = dupz(m->sender);
    w->recipient = dupz(m->recipient);
    w->body = dupz(m->body);
    w->kind = dupz(m->kind ? m->kind : "text");
    w->cid = dupz(m->cid);
    w->stanza_id = dupz(m->stanza_id);
    if (!w->sender || !w->recipient || !w->body || !w->kind || !w->stanza_id ||
        (m->cid && !w->cid)) {
        wrow_free(w);
        return NULL;
    }
    return w;
}

typedef struct wlist {
    wrow_t *head, *tail;
    size_t len;
} wlist_t;

static void wlist_push(wlist_t *l, wrow_t *w)
{
    w->next = NULL;
    if (l->tail)
        l->tail->next = w;
    else
        l->head = w;
    l->tail = w;
    l->len++;
}

static wrow_t *wlist_pop(wlist_t *l)
{
    wrow_t *w = l->head;

    if (w) {
        l->head = w->next;
        if (l->head == NULL)
            l->tail = NULL;
        l->len--;
        w->next = NULL;
    }
    return w;
}

/* Puts list b in front of list a. */
static void wlist_prepend(wlist_t *a, wlist_t *b)
{
    if (b->head == NULL)
        return;
    b->tail->next = a->head;
    if (a->tail == NULL)
        a->tail = b->tail;
    a->head = b->head;
    a->len += b->len;
    b->head = b->tail = NULL;
    b->len = 0;
}

/* ---- requests on a connection ---------------------------------------------- */

typedef struct req {
    struct req *next;
    const char *sql;
    int nparams;
    char *params[8];
    gw_store_rows_cb cb;
    void *ud;
} req_t;

static void req_free(req_t *r)
{
    for (int i = 0; i < r->nparams; i++)
        free(r->params[i]);
    free(r);
}

typedef enum { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY, C_STOPPED } cstate_t;

typedef struct pgc {
    gw_store_t *store;
    const char *name;
    PGconn *conn;
    uv_poll_t *poll;
    int fd;
    int events;
    cstate_t state;
    uv_timer_t retry;
    unsigned attempt;
    PGresult *result; /* last result of the running request */
    /* reader: request FIFO; writer: the batch in flight */
    req_t *head, *tail;
    size_t nreqs;
    req_t *running;
    /* writers only */
    int is_writer;
    wlist_t batch;      /* the batch in flight, or finished and waiting for its turn */
    uint64_t batch_seq; /* order in which batches were sent */
    uint64_t batch_t0;  /* when it was sent (gw_metrics_now_ns), for imgw_store_batch_seconds */
    int finished;       /* F_*: what to do with the batch when its turn comes */
    int op;             /* W_*: the statement running for the batch */
    /* reader only: the page statement is prepared on this connection (named, planned
     * once: a page no longer pays for planning over every partition) */
    int preparing, page_prepared;
    char failed_state[6];
    char *failed_msg; /* why the database refused the row being dead-lettered */
} pgc_t;

/* What a finished batch becomes when its turn comes (complete_in_order). */
enum {
    F_NONE = 0, /* in flight */
    F_DONE,     /* every row has its outcome */
    F_REQUEUE,  /* not written (connection or server error): back to the queue as it was */
    F_SPLIT,    /* a data error: back to the queue as two batches of their own */
};

/* The statement a writer runs for its batch. */
enum {
    W_INSERT = 0,   /* the batch insert */
    W_LOOKUP,       /* the ids of duplicates the insert could not see */
    W_DEAD,         /* the one row of the batch into dead_letters */
    W_DEAD_ESCAPED, /* the same, text fields escaped to ASCII */
};

#define MAX_WRITERS 8

struct gw_store {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    int enabled;
    pgc_t writers[MAX_WRITERS], reader;
    int nwriters;
    uint64_t next_seq, done_seq;              /* batches are completed in the order sent */
    wlist_t queue;                            /* waiting for a writer */
    uv_timer_t defer;                         /* runs deferred callbacks */
    struct done_cb *deferred, *deferred_tail; /* write outcomes to report, in order */
    req_t *failed;                            /* reads to fail from the loop */
    uv_timer_t maintenance;
    /* spool */
    char spool_path[1024];
    char replay_path[1024];
    int spool_fd;
    size_t spool_bytes;
    size_t replay_left; /* spooled rows handed to the writer and not yet committed */
    char rejected_path[1024];
    /* backoff after failed batches */
    uv_timer_t backoff;
    int backing_off;
    unsigned backoff_attempt;
    uint64_t fail_log_ms;     /* when a batch failure was last logged */
    uint64_t fail_suppressed; /* failures not logged since then */
    gw_store_stats_t st;
};

static void pgc_dispatch(pgc_t *c);
static void pgc_fail(pgc_t *c, const char *why);
static void reader_prepare(pgc_t *c);
static void writer_kick(gw_store_t *s);
static int writers_up(const gw_store_t *s);

/* ---- deferred callbacks ------------------------------------------------------- */

typedef struct done_cb {
    struct done_cb *next;
    gw_store_write_cb cb;
    void *ud;
    int status;
    uint64_t id, ts;
} done_cb_t;

static void on_defer(uv_timer_t *t)
{
    gw_store_t *s = t->data;
    done_cb_t *d = s->deferred;
    req_t *r = s->failed;

    s->deferred = s->deferred_tail = NULL;
    s->failed = NULL;
    while (d) {
        done_cb_t *next = d->next;
        d->cb(d->ud, d->status, d->id, d->ts);
        free(d);
        d = next;
    }
    while (r) {
        req_t *next = r->next;
        r->cb(r->ud, GW_EIO, NULL);
        req_free(r);
        r = next;
    }
}

static void defer_write_cb(gw_store_t *s, gw_store_write_cb cb, void *ud, int status, uint64_t id,
                           uint64_t ts)
{
    done_cb_t *d;

    if (cb == NULL)
        return;
    d = malloc(sizeof(*d));
    if (d == NULL) {
        cb(ud, status, id, ts); /* out of memory: run it now rather than lose it */
        return;
    }
    d->cb = cb;
    d->ud = ud;
    d->status = status;
    d->id = id;
    d->ts = ts;
    d->next = NULL;
    if (s->deferred_tail)
        s->deferred_tail->next = d;
    else
        s->deferred = d;
    s->deferred_tail = d;
    uv_timer_start(&s->defer, on_defer, 0, 0);
}

/* ---- spool ------------------------------------------------------------------- */

static int spool_open(gw_store_t *s)
{
    struct stat sb;

    if (s->cfg->spool_dir[0] == '\0')
        return 0;
    mkdir(s->cfg->spool_dir, 0700);
    snprintf(s->spool_path, sizeof(s->spool_path), "%s/spool.jsonl", s->cfg->spool_dir);
    snprintf(s->replay_path, sizeof(s->replay_path), "%s/spool.replay.jsonl", s->cfg->spool_dir);
    snprintf(s->rejected_path, sizeof(s->rejected_path), "%s/spool.rejected.jsonl",
             s->cfg->spool_dir);
    s->spool_fd = open(s->spool_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (s->spool_fd < 0) {
        gw_error("store", "cannot open spool %s: %s", s->spool_path, strerror(errno));
        return GW_EIO;
    }
    if (fstat(s->spool_fd, &sb) == 0)
        s->spool_bytes = (size_t)sb.st_size;
    if (s->spool_bytes)
        gw_warn("store",
                "spool holds %zu bytes from an earlier run; replaying when the "
                "database is up",
                s->spool_bytes);
    return 0;
}

static void row_msg(const wrow_t *w, gw_store_msg_t *m)
{
    m->id = w->id;
    m->ts = w->ts;
    m->sender = w->sender;
    m->recipient = w->recipient;
    m->body = w->body;
    m->kind = w->kind;
    m->cid = w->cid;
    m->stanza_id = w->stanza_id;
}

/* Appends w to the spool and syncs it; returns 0 when durable. */
static int spool_append(gw_store_t *s, const wrow_t *w)
{
    gw_store_msg_t m;
    gw_sbuf_t b;
    ssize_t n;

    if (s->spool_fd < 0)
        return GW_EFULL;
    row_msg(w, &m);
    gw_sbuf_init(&b, SPOOL_LINE_MAX);
    gw_spoolrec_encode(&b, &m);
    gw_sbuf_append(&b, "\n", 1);
    if (b.overflow) {
        gw_sbuf_free(&b);
        return GW_ENOMEM;
    }
    if (s->spool_bytes + b.len > (size_t)s->cfg->spool_max_bytes) {
        gw_sbuf_free(&b);
        return GW_EFULL;
    }
    n = write(s->spool_fd, b.data, b.len);
    if (n != (ssize_t)b.len || fdatasync(s->spool_fd) != 0) {
        gw_error("store", "spool write failed: %s", n < 0 ? strerror(errno) : "short write");
        gw_sbuf_free(&b);
        return GW_EIO;
    }
    s->spool_bytes += b.len;
    s->st.spooled++;
    gw_sbuf_free(&b);
    return 0;
}

/* Moves w into the spool and reports the outcome to its waiter. Frees w. */
static void spool_row(gw_store_t *s, wrow_t *w)
{
    int rc;

    if (w->replay) {
        /* Already in the replay file, which is kept until it is fully written. */
        wrow_free(w);
        return;
    }
    rc = spool_append(s, w);
    if (rc != 0)
        s->st.refused++;
    defer_write_cb(s, w->cb, w->ud, rc == 0 ? GW_STORE_STORED : (rc == GW_EIO ? GW_EIO : GW_EFULL),
                   w->id, w->ts);
    wrow_free(w);
}

/*
 * Keeps a spool line that cannot be read back in spool.rejected.jsonl for the
 * operator, rather than dropping it: it may hold a message someone was told
 * was durable.
 */
static void spool_reject(gw_store_t *s, int *fd, const char *line, size_t len, const char *why)
{
    s->st.spool_rejected++;
    gw_warn("store", "spool line of %zu bytes not replayed (%s); kept in %s", len, why,
            s->rejected_path);
    if (*fd < 0)
        *fd = open(s->rejected_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0 || write(*fd, line, len) != (ssize_t)len || write(*fd, "\n", 1) != 1)
        gw_error("store", "cannot keep a rejected spool line in %s: %s", s->rejected_path,
                 strerror(errno));
}

/*
 * Hands the spooled messages to the writer: the spool file becomes the replay
 * file (new degraded writes start a fresh spool) and is deleted once every
 * row in it is written (stored, found already stored, or dead-lettered).
 * Lines that cannot be read back (torn by a crash, cut, edited) are kept
 * aside and never block the others.
 */
static void spool_replay(gw_store_t *s)
{
    FILE *f;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    wlist_t rows = {0};
    int rfd = -1;

    if (s->spool_fd < 0 || s->replay_left > 0)
        return;
    if (access(s->replay_path, F_OK) != 0) {
        if (s->spool_bytes == 0)
            return;
        close(s->spool_fd);
        if (rename(s->spool_path, s->replay_path) != 0)
            gw_error("store", "cannot rename spool: %s", strerror(errno));
        s->spool_fd = open(s->spool_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        s->spool_bytes = 0;
    }
    f = fopen(s->replay_path, "r");
    if (f == NULL)
        return;
    while ((n = getline(&line, &cap, f)) > 0) {
        gw_spoolrec_t rec;
        const char *why;
        wrow_t *w;
        size_t len = (size_t)n;
        if (line[len - 1] == '\n')
            len--;
        if (len == 0)
            continue;
        if (line[n - 1] != '\n' || len > SPOOL_LINE_MAX) {
            spool_reject(s, &rfd, line, len, line[n - 1] != '\n' ? "torn last line" : "too long");
            continue;
        }
        if (gw_spoolrec_parse(line, len, &rec, &why) != 0) {
            spool_reject(s, &rfd, line, len, why);
            continue;
        }
        w = wrow_new(&rec.m);
        gw_spoolrec_free(&rec);
        if (w == NULL) {
            spool_reject(s, &rfd, line, len, "out of memory");
            continue;
        }
        w->replay = 1;
        wlist_push(&rows, w);
    }
    free(line);
    fclose(f);
    if (rfd >= 0) {
        /* The replay file goes once its rows are written: the kept lines must be on disk first. */
        if (fdatasync(rfd) != 0)
            gw_error("store", "cannot sync %s: %s", s->rejected_path, strerror(errno));
        close(rfd);
    }
    if (rows.len == 0) {
        unlink(s->replay_path);
        return;
    }
    gw_info("store", "replaying %zu spooled message(s)", rows.len);
    s->replay_left = rows.len;
    wlist_prepend(&s->queue, &rows);
}

static void replay_done(gw_store_t *s, size_t n)
{
    if (n == 0 || s->replay_left == 0)
        return;
    s->replay_left = n >= s->replay_left ? 0 : s->replay_left - n;
    s->st.replayed += n;
    if (s->replay_left == 0) {
        unlink(s->replay_path);
        gw_info("store", "spool replayed");
    }
}

/* ---- connection plumbing ------------------------------------------------------ */

static void free_poll(uv_handle_t *h)
{
    free(h);
}

static void pgc_close_poll(pgc_t *c)
{
    if (c->poll) {
        c->poll->data = NULL;
        uv_close((uv_handle_t *)c->poll, free_poll);
        c->poll = NULL;
    }
    c->fd = -1;
    c->events = 0;
}

static void on_pgc_poll(uv_poll_t *h, int status, int events);

static void pgc_watch(pgc_t *c, int events)
{
    int fd = c->conn ? PQsocket(c->conn) : -1;

    if (fd < 0)
        return;
    if (c->poll == NULL || fd != c->fd) {
        pgc_close_poll(c);
        c->poll = malloc(sizeof(*c->poll));
        if (c->poll == NULL || uv_poll_init_socket(c->store->loop, c->poll, fd) != 0) {
            free(c->poll);
            c->poll = NULL;
            return;
        }
        c->poll->data = c;
        c->fd = fd;
        c->events = 0;
    }
    if (events != c->events) {
        uv_poll_start(c->poll, events, on_pgc_poll);
        c->events = events;
    }
}

static void on_retry(uv_timer_t *t);

static void pgc_schedule_retry(pgc_t *c)
{
    uint64_t base = 100, cap = 10000, delay;

    for (unsigned i = 0; i < c->attempt && base < cap; i++)
        base *= 2;
    if (base > cap)
        base = cap;
    delay = base / 2 + (uint64_t)random() % (base / 2 + 1);
    if (c->attempt < 32)
        c->attempt++;
    uv_timer_start(&c->retry, on_retry, delay, 0);
}

static void pgc_connect(pgc_t *c)
{
    c->conn = PQconnectStart(c->store->cfg->pg_conninfo);
    if (c->conn == NULL || PQstatus(c->conn) == CONNECTION_BAD) {
        pgc_fail(c, c->conn ? PQerrorMessage(c->conn) : "out of memory");
        return;
    }
    PQsetnonblocking(c->conn, 1);
    c->state = C_CONNECTING;
    pgc_watch(c, UV_WRITABLE);
}

static void on_retry(uv_timer_t *t)
{
    pgc_t *c = t->data;

    if (c->state == C_DOWN)
        pgc_connect(c);
}

static void writer_lost(gw_store_t *s, pgc_t *c);

/* The connection broke: fail or requeue its work and reconnect later. */
static void pgc_fail(pgc_t *c, const char *why)
{
    gw_store_t *s = c->store;
    int was_up = c->state == C_IDLE || c->state == C_BUSY;
    char msg[256];

    snprintf(msg, sizeof(msg), "%s", why ? why : "");
    for (char *p = msg; *p; p++)
        if (*p == '\n')
            *p = ' ';
    if (was_up || c->attempt == 0)
        gw_warn("store", "%s connection to PostgreSQL %s: %s", c->name, was_up ? "lost" : "failed",
                msg);
    pgc_close_poll(c);
    c->preparing = 0;
    c->page_prepared = 0;
    if (c->result) {
        PQclear(c->result);
        c->result = NULL;
    }
    if (c->conn) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    if (c->running) {
        c->running->next = s->failed;
        s->failed = c->running;
        c->running = NULL;
        uv_timer_start(&s->defer, on_defer, 0, 0);
    }
    if (c == &s->reader) {
        /* Reads are answered from the cache or fail fast while the database is down. */
        while (c->head) {
            req_t *r = c->head;
            c->head = r->next;
            r->next = s->failed;
            s->failed = r;
        }
        c->tail = NULL;
        c->nreqs = 0;
        uv_timer_start(&s->defer, on_defer, 0, 0);
    }
    if (c->state == C_STOPPED)
        return;
    c->state = C_DOWN;
    if (c->is_writer)
        writer_lost(s, c);
    pgc_schedule_retry(c);
}

static void pgc_ready(pgc_t *c)
{
    if (c->attempt > 0 || c->state == C_CONNECTING)
        gw_info("store", "%s connection to PostgreSQL ready", c->name);
    c->attempt = 0;
    c->state = C_IDLE;
    pgc_watch(c, UV_READABLE);
    if (c->is_writer) {
        spool_replay(c->store);
        writer_kick(c->store);
    } else {
        reader_prepare(c);
    }
}

/* After a PQsend* call that returned ok: busy until its result, flush what is left. */
static void pgc_sent(pgc_t *c)
{
    int rc;

    c->state = C_BUSY;
    rc = PQflush(c->conn);
    if (rc < 0) {
        pgc_fail(c, PQerrorMessage(c->conn));
        return;
    }
    pgc_watch(c, rc == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
}

static void pgc_send(pgc_t *c, const char *sql, int n, const char *const *params)
{
    if (!PQsendQueryParams(c->conn, sql, n, NULL, params, NULL, NULL, 0)) {
        pgc_fail(c, PQerrorMessage(c->conn));
        return;
    }
    pgc_sent(c);
}

static void writer_done(gw_store_t *s, pgc_t *c, PGresult *res);
static void reader_done(pgc_t *c, PGresult *res);

static void on_pgc_poll(uv_poll_t *h, int status, int events)
{
    pgc_t *c = h->data;

    if (c == NULL)
        return;
    /*
     * libuv reports a socket error (EPOLLERR, e.g. a reset after the server went away
     * while a batch was being sent) as status < 0 with no events, and stops the handle:
     * the connection will never be looked at again, so it is lost now. Ignoring it left
     * a writer busy forever, and every later ack waited behind its batch.
     */
    if (status < 0) {
        pgc_fail(c, uv_strerror(status));
        return;
    }
    if (c->state == C_CONNECTING) {
        switch (PQconnectPoll(c->conn)) {
        case PGRES_POLLING_OK: pgc_ready(c); return;
        case PGRES_POLLING_READING: pgc_watch(c, UV_READABLE); return;
        case PGRES_POLLING_WRITING: pgc_watch(c, UV_WRITABLE); return;
        default: pgc_fail(c, PQerrorMessage(c->conn)); return;
        }
    }
    if (c->conn == NULL)
        return;
    if (events & UV_WRITABLE) {
        int rc = PQflush(c->conn);
        if (rc < 0) {
            pgc_fail(c, PQerrorMessage(c->conn));
            return;
        }
        pgc_watch(c, rc == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
    }
    if (!(events & UV_READABLE))
        return;
    if (!PQconsumeInput(c->conn)) {
        pgc_fail(c, PQerrorMessage(c->conn));
        return;
    }
    while (c->state == C_BUSY && !PQisBusy(c->conn)) {
        PGresult *res = PQgetResult(c->conn);
        if (res != NULL) {
            /* A statement has one result; keep the last in case of several. */
            if (c->result)
                PQclear(c->result);
            c->result = res;
            continue;
        }
        res = c->result;
        c->result = NULL;
        c->state = C_IDLE;
        if (c->is_writer)
            writer_done(c->store, c, res);
        else
            reader_done(c, res);
        if (res)
            PQclear(res);
        if (c->state == C_IDLE) {
            if (c->is_writer)
                writer_kick(c->store);
            else
                pgc_dispatch(c);
        }
    }
    if (c->conn && PQstatus(c->conn) == CONNECTION_BAD)
        pgc_fail(c, PQerrorMessage(c->conn));
}

/* ---- writer -------------------------------------------------------------------- */

/*
 * The batch insert. The BEFORE trigger skips a row whose stanza_id is already
 * claimed, so RETURNING lists exactly the rows stored by this statement
 * (inserted = true). The second half lists the rows that were already stored
 * under one of the batch's other keys before the statement (inserted =
 * false): a data-modifying CTE's rows are invisible to the rest of its
 * statement, so the halves never overlap, and the EXCEPT spares the index
 * probes for keys just inserted (most of them, most of the time). Together they give every row of
 * the batch its outcome, duplicates included with the id and time of the message already stored, in
 * one round trip. (A row a concurrent writer committed between this statement's snapshot and its
 * trigger is in neither; writer_done then asks once more with lookup_sql.)
 */
static const char insert_sql[] =
    "WITH u AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], "
    "$5::text[], $6::text[], $7::text[], $8::bigint[]) WITH ORDINALITY AS u(i, s, r, b, k, c, st, "
    "t, n)), "
    "ins AS (INSERT INTO messages (id, sender, recipient, body, kind, client_id, stanza_id, "
    "created_at) SELECT i, s, r, b, k, c, st, to_timestamp(t / 1000.0) FROM u ORDER BY n "
    "ON CONFLICT DO NOTHING RETURNING stanza_id, id, created_at) "
    "SELECT true, stanza_id, id, (extract(epoch FROM created_at) * 1000)::bigint FROM ins "
    "UNION ALL SELECT false, m.stanza_id, m.id, (extract(epoch FROM m.created_at) * 1000)::bigint "
    "FROM message_ids m WHERE m.stanza_id IN (SELECT st FROM u EXCEPT SELECT stanza_id FROM ins)";

static const char lookup_sql[] =
    "SELECT false, stanza_id, id, (extract(epoch FROM created_at) * 1000)::bigint "
    "FROM message_ids WHERE stanza_id = ANY($1::text[])";

static const char dead_sql[] =
    "INSERT INTO dead_letters (message_id, ts_ms, sender, recipient, body, kind, client_id, "
    "stanza_id, source, sqlstate, error, escaped) VALUES ($1::numeric, $2::numeric, $3, $4, $5, "
    "$6, $7, $8, $9, $10, $11, $12::boolean)";

/* Appends v as an element of a text-format array literal. */
static void array_elem(gw_sbuf_t *b, const char *v)
{
    if (b->len > 1)
        gw_sbuf_append(b, ",", 1);
    if (v == NULL) {
        gw_sbuf_puts(b, "NULL");
        return;
    }
    gw_sbuf_append(b, "\"", 1);
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\')
            gw_sbuf_append(b, "\\", 1);
        gw_sbuf_append(b, p, 1);
    }
    gw_sbuf_append(b, "\"", 1);
}

/*
 * SQLSTATEs that blame the rows rather than the server: data exceptions (22),
 * integrity constraint violations (23) and program limits (54, e.g. an index
 * row too large, or a statement too large for a big batch). A smaller batch
 * may pass; a single row that still fails is refused for itself.
 */
static int is_data_error(const char *state)
{
    return state != NULL && strlen(state) == 5 &&
           (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0 ||
            strncmp(state, "54", 2) == 0);
}

/*
 * Counts a failed statement and logs it, at most once per FAIL_LOG_MS: a
 * database that refuses every batch must not fill the disk with the news.
 */
static void log_failure(gw_store_t *s, const char *what, const char *state, const char *msg)
{
    uint64_t now = uv_now(s->loop);
    char text[512];

    s->st.batch_failures++;
    if (s->fail_log_ms != 0 && now - s->fail_log_ms < FAIL_LOG_MS) {
        s->fail_suppressed++;
        return;
    }
    snprintf(text, sizeof(text), "%s", msg ? msg : "no result");
    for (char *p = text; *p; p++)
        if (*p == '\n')
            *p = ' ';
    gw_error("store",
             "%s failed (%s): %s (%" PRIu64 " failure(s) in all, %" PRIu64
             " not logged since the last line)",
             what, state ? state : "?", text, s->st.batch_failures, s->fail_suppressed);
    s->fail_log_ms = now;
    s->fail_suppressed = 0;
}

static void on_backoff(uv_timer_t *t)
{
    gw_store_t *s = t->data;

    s->backing_off = 0;
    writer_kick(s);
}

/*
 * A statement failed for a reason that is not the rows' (the server, not the
 * data): the writers pause with capped exponential backoff and equal jitter
 * before the next batch, so a database that fails every statement is retried
 * a few times a second at most, never in a loop.
 */
static void backoff_start(gw_store_t *s)
{
    uint64_t delay = RETRY_BASE_MS;

    for (unsigned i = 0; i < s->backoff_attempt && delay < RETRY_CAP_MS; i++)
        delay *= 2;
    if (delay > RETRY_CAP_MS)
        delay = RETRY_CAP_MS;
    delay = delay / 2 + (uint64_t)random() % (delay / 2 + 1);
    if (s->backoff_attempt < 32)
        s->backoff_attempt++;
    s->backing_off = 1;
    uv_timer_start(&s->backoff, on_backoff, delay, 0);
}

/*
 * 1 while the database has failed DEGRADE_AFTER batches in a row and the
 * writers are waiting out a backoff: new writes then go to the spool (durable,
 * so acked at once; refused when there is no spool) instead of waiting behind a
 * database that keeps failing. Writes that arrive between two attempts still
 * queue, so every attempt also tells whether the database is back.
 */
static int degraded(const gw_store_t *s)
{
    return s->backing_off && s->backoff_attempt >= DEGRADE_AFTER;
}

/* Moves the queued rows somebody waits for to the spool (replay rows are durable already). */
static void spool_waiting(gw_store_t *s)
{
    wlist_t keep = {0};

    while (s->queue.head) {
        wrow_t *w = wlist_pop(&s->queue);
        if (w->replay)
            wlist_push(&keep, w);
        else
            spool_row(s, w);
    }
    s->queue = keep;
}

static void writer_send_batch(gw_store_t *s, pgc_t *c)
{
    gw_sbuf_t a[8];
    const char *params[8];
    int ok = 1;

    for (int i = 0; i < 8; i++) {
        gw_sbuf_init(&a[i], (size_t)1 << 30);
        gw_sbuf_append(&a[i], "{", 1);
    }
    for (wrow_t *w = c->batch.head; w; w = w->next) {
        char num[24];
        snprintf(num, sizeof(num), "%" PRIu64, w->id);
        array_elem(&a[0], num);
        array_elem(&a[1], w->sender);
        array_elem(&a[2], w->recipient);
        array_elem(&a[3], w->body);
        array_elem(&a[4], w->kind);
        array_elem(&a[5], w->cid);
        array_elem(&a[6], w->stanza_id);
        snprintf(num, sizeof(num), "%" PRIu64, w->ts);
        array_elem(&a[7], num);
    }
    for (int i = 0; i < 8; i++) {
        gw_sbuf_append(&a[i], "}", 1);
        ok = ok && !a[i].overflow;
        params[i] = a[i].data;
    }
    if (ok) {
        s->st.batches++;
        c->op = W_INSERT;
        c->batch_seq = s->next_seq++;
        c->batch_t0 = gw_metrics_now_ns();
        pgc_send(c, insert_sql, 8, params);
    } else {
        gw_error("store", "cannot build a batch of %zu rows (out of memory)", c->batch.len);
        wlist_prepend(&s->queue, &c->batch);
    }
    for (int i = 0; i < 8; i++)
        gw_sbuf_free(&a[i]);
}

static void writer_kick(gw_store_t *s)
{
    pgc_t *c = NULL;
    size_t limit;

    /* Rows spooled while the database was up but busy go in once the queue has drained. */
    if (s->queue.len == 0 && s->replay_left == 0 && s->spool_bytes > 0 && !s->backing_off &&
        writers_up(s))
        spool_replay(s);
    if (s->queue.len == 0 || s->backing_off)
        return;
    /* An idle writer whose previous batch has been completed. */
    for (int i = 0; i < s->nwriters && c == NULL; i++)
        if (s->writers[i].state == C_IDLE && !s->writers[i].finished &&
            s->writers[i].batch.head == NULL)
            c = &s->writers[i];
    if (c == NULL)
        return;
    /* A bisected segment goes alone; a plain batch stops where a segment starts. */
    limit = s->queue.head->seg ? s->queue.head->seg : (size_t)s->cfg->store_batch_max;
    while (c->batch.len < limit && s->queue.head && !(c->batch.len > 0 && s->queue.head->seg))
        wlist_push(&c->batch, wlist_pop(&s->queue));
    writer_send_batch(s, c);
}

/* ---- outcomes of a batch ----------------------------------------------------- */

/* The batch's rows by stanza_id: first row of each key, later ones chained through same. */
typedef struct rowmap {
    wrow_t **slot;
    size_t mask;
} rowmap_t;

static uint64_t key_hash(const char *k)
{
    uint64_t h = 1469598103934665603ull;

    for (; *k; k++) {
        h ^= (unsigned char)*k;
        h *= 1099511628211ull;
    }
    return h;
}

static wrow_t **rowmap_find(const rowmap_t *m, const char *key)
{
    size_t i = (size_t)key_hash(key) & m->mask;

    while (m->slot[i] != NULL && strcmp(m->slot[i]->stanza_id, key) != 0)
        i = (i + 1) & m->mask;
    return &m->slot[i];
}

static int rowmap_build(rowmap_t *m, wlist_t *batch)
{
    size_t n = 16;

    while (n < batch->len * 2)
        n *= 2;
    m->slot = calloc(n, sizeof(*m->slot));
    if (m->slot == NULL)
        return GW_ENOMEM;
    m->mask = n - 1;
    for (wrow_t *w = batch->head, *tail = NULL; w; w = w->next) {
        wrow_t **pp = rowmap_find(m, w->stanza_id);
        w->same = NULL;
        if (*pp == NULL) {
            *pp = w;
            continue;
        }
        /* Keep the batch order within a key: the first row is the one the insert stored. */
        for (tail = *pp; tail->same; tail = tail->same)
            ;
        tail->same = w;
    }
    return 0;
}

static void set_outcome(wrow_t *w, int status, uint64_t id, uint64_t ts)
{
    /* Our own row, committed by an attempt whose answer was lost with the connection:
     * stored, not a copy (ids are unique, so the same id means this very row). */
    if (status == GW_STORE_DUPLICATE && w->uncertain && id == w->id)
        status = GW_STORE_STORED;
    w->done = 1;
    w->status = status;
    w->out_id = id;
    w->out_ts = ts;
}

/*
 * Gives the rows of the batch their outcomes from result rows (inserted,
 * stanza_id, id, ms). Returns how many rows are still without one.
 */
static size_t apply_results(pgc_t *c, PGresult *res)
{
    rowmap_t m;
    size_t left = 0;

    if (rowmap_build(&m, &c->batch) != 0) {
        /* Out of memory: call them duplicates of unknown id rather than lose the batch. */
        for (wrow_t *w = c->batch.head; w; w = w->next)
            if (!w->done)
                set_outcome(w, GW_STORE_DUPLICATE, 0, 0);
        return 0;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        int inserted = PQgetvalue(res, i, 0)[0] == 't';
        wrow_t **pp = rowmap_find(&m, PQgetvalue(res, i, 1));
        uint64_t id = strtoull(PQgetvalue(res, i, 2), NULL, 10);
        uint64_t ts = strtoull(PQgetvalue(res, i, 3), NULL, 10);
        if (*pp == NULL)
            continue;
        /* Inserted: the first row of the key is stored, later ones in the batch are its copies. */
        for (wrow_t *w = *pp; w; w = w->same)
            if (!w->done)
                set_outcome(w, inserted && w == *pp ? GW_STORE_STORED : GW_STORE_DUPLICATE, id, ts);
    }
    for (wrow_t *w = c->batch.head; w; w = w->next)
        if (!w->done)
            left++;
    free(m.slot);
    return left;
}

/* Asks for the stored ids of the rows still without an outcome. */
static void send_lookup(pgc_t *c)
{
    gw_sbuf_t a;
    const char *params[1];

    gw_sbuf_init(&a, (size_t)1 << 30);
    gw_sbuf_append(&a, "{", 1);
    for (wrow_t *w = c->batch.head; w; w = w->next)
        if (!w->done)
            array_elem(&a, w->stanza_id);
    gw_sbuf_append(&a, "}", 1);
    if (a.overflow) {
        for (wrow_t *w = c->batch.head; w; w = w->next)
            if (!w->done)
                set_outcome(w, GW_STORE_DUPLICATE, 0, 0);
        c->finished = F_DONE;
    } else {
        params[0] = a.data;
        c->op = W_LOOKUP;
        pgc_send(c, lookup_sql, 1, params);
    }
    gw_sbuf_free(&a);
}

/* Printable ASCII: every other byte (and the backslash) as \xNN. Caller frees; NULL on ENOMEM. */
static char *escape_ascii(const char *v)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(v);
    char *out = malloc(n * 4 + 1), *o = out;

    if (out == NULL)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p >= 0x20 && *p < 0x7f && *p != '\\') {
            *o++ = (char)*p;
        } else {
            *o++ = '\\';
            *o++ = 'x';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

/* Sends the batch's one row to dead_letters, with the reason the insert got. */
static void send_dead_letter(pgc_t *c, int escaped)
{
    wrow_t *w = c->batch.head;
    char id[24], ts[24];
    const char *params[12];
    char *esc[6] = {NULL};
    const char *fields[6] = {w->sender, w->recipient, w->body, w->kind, w->cid, w->stanza_id};

    snprintf(id, sizeof(id), "%" PRIu64, w->id);
    snprintf(ts, sizeof(ts), "%" PRIu64, w->ts);
    params[0] = id;
    params[1] = ts;
    for (int i = 0; i < 6; i++) {
        if (escaped && fields[i] != NULL) {
            esc[i] = escape_ascii(fields[i]);
            params[2 + i] = esc[i] ? esc[i] : "?";
        } else {
            params[2 + i] = fields[i];
        }
    }
    params[8] = w->replay ? "spool" : "live";
    params[9] = c->failed_state;
    params[10] = c->failed_msg ? c->failed_msg : "";
    params[11] = escaped ? "true" : "false";
    c->op = escaped ? W_DEAD_ESCAPED : W_DEAD;
    pgc_send(c, dead_sql, 12, params);
    for (int i = 0; i < 6; i++)
        free(esc[i]);
}

/*
 * Reports the outcome of finished batches strictly in the order they were
 * sent, so acknowledgements (and the XMPP sends that follow them) keep the
 * order of the browsers' sends even with several writers. A batch that was
 * not written goes back to the front of the queue, as it was or split in two.
 */
static void complete_in_order(gw_store_t *s)
{
    int progress = 1;

    while (progress) {
        progress = 0;
        for (int i = 0; i < s->nwriters; i++) {
            pgc_t *c = &s->writers[i];
            size_t replayed = 0;
            if (!c->finished || c->batch_seq != s->done_seq)
                continue;
            if (c->finished == F_SPLIT) {
                /* Two segments of their own, so the bad row ends up alone (bisection). */
                size_t half = c->batch.len / 2, k = 0;
                for (wrow_t *w = c->batch.head; w; w = w->next, k++)
                    w->seg = k == 0      ? (unsigned)half
                             : k == half ? (unsigned)(c->batch.len - half)
                                         : 0;
            }
            if (c->finished == F_REQUEUE || c->finished == F_SPLIT) {
                for (wrow_t *w = c->batch.head; w; w = w->next)
                    w->done = 0;
                wlist_prepend(&s->queue, &c->batch); /* a retry is harmless: stanza_id */
            }
            while (c->batch.head) {
                wrow_t *w = wlist_pop(&c->batch);
                if (w->replay)
                    replayed++;
                if (w->status == GW_STORE_STORED)
                    s->st.written++;
                defer_write_cb(s, w->cb, w->ud, w->status, w->out_id, w->out_ts);
                wrow_free(w);
            }
            free(c->failed_msg);
            c->failed_msg = NULL;
            c->finished = F_NONE;
            s->done_seq++;
            replay_done(s, replayed);
            progress = 1;
        }
    }
}

/* A failed statement of the writer c: split, dead-letter, give up on a row, or retry. */
static void writer_failed(gw_store_t *s, pgc_t *c, PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : "no result";
    static const char *const what[] = {"batch insert", "duplicate lookup", "dead-letter insert",
                                       "dead-letter insert (escaped)"};

    log_failure(s, what[c->op], state, msg);
    if (c->op == W_LOOKUP) {
        /* The batch is committed; only the ids of a few duplicates are unknown. */
        for (wrow_t *w = c->batch.head; w; w = w->next)
            if (!w->done)
                set_outcome(w, GW_STORE_DUPLICATE, 0, 0);
        c->finished = F_DONE;
        return;
    }
    if (!is_data_error(state)) {
        /* Not the rows' fault: retry them later, after a pause unless the link itself broke. */
        c->finished = F_REQUEUE;
        if (c->conn != NULL && PQstatus(c->conn) != CONNECTION_BAD && res != NULL) {
            backoff_start(s);
        } else {
            /* Lost with the connection: the commit may have happened before the answer. */
            for (wrow_t *w = c->batch.head; w; w = w->next)
                w->uncertain = 1;
        }
        return;
    }
    if (c->op == W_INSERT && c->batch.len > 1) {
        c->finished = F_SPLIT;
        return;
    }
    if (c->op == W_INSERT) {
        size_t n;
        snprintf(c->failed_state, sizeof(c->failed_state), "%s", state);
        n = strlen(primary ? primary : msg) + (detail ? strlen(detail) + 2 : 0) + 1;
        free(c->failed_msg);
        c->failed_msg = malloc(n);
        if (c->failed_msg)
            snprintf(c->failed_msg, n, "%s%s%s", primary ? primary : msg, detail ? ": " : "",
                     detail ? detail : "");
        send_dead_letter(c, 0);
        return;
    }
    if (c->op == W_DEAD) {
        /* The row's text could not be stored even here (encoding): store it escaped. */
        send_dead_letter(c, 1);
        return;
    }
    /* Not even escaped: nothing more can be done for this row; say so loudly. */
    gw_error("store",
             "message %" PRIu64 " (stanza id %.200s) could not be stored anywhere and "
             "is dropped: %s",
             c->batch.head->id, c->batch.head->stanza_id, c->failed_msg ? c->failed_msg : "?");
    set_outcome(c->batch.head, GW_EIO, 0, 0);
    c->store->st.refused++;
    c->finished = F_DONE;
}

static void writer_done(gw_store_t *s, pgc_t *c, PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (c->batch.head == NULL)
        return;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        writer_failed(s, c, res);
    } else if (c->op == W_DEAD || c->op == W_DEAD_ESCAPED) {
        wrow_t *w = c->batch.head;
        s->st.dead_letters++;
        gw_warn("store",
                "message %" PRIu64 " (stanza id %.200s) refused by PostgreSQL (%s: %s); "
                "kept in dead_letters",
                w->id, w->stanza_id, c->failed_state, c->failed_msg ? c->failed_msg : "?");
        set_outcome(w, GW_STORE_DEAD_LETTER, w->id, w->ts);
        c->finished = F_DONE;
        s->backoff_attempt = 0;
    } else {
        s->backoff_attempt = 0;
        if (apply_results(c, res) == 0 || c->op == W_LOOKUP) {
            for (wrow_t *w = c->batch.head; w; w = w->next)
                if (!w->done)
                    set_outcome(w, GW_STORE_DUPLICATE, 0, 0);
            c->finished = F_DONE;
        } else {
            send_lookup(c);
        }
    }
    if (c->finished)
        complete_in_order(s);
    if (degraded(s))
        spool_waiting(s);
}

static int writers_up(const gw_store_t *s)
{
    for (int i = 0; i < s->nwriters; i++)
        if (s->writers[i].state == C_IDLE || s->writers[i].state == C_BUSY)
            return 1;
    return 0;
}

/*
 * A writer connection broke. Its batch may or may not have committed; it goes
 * back to the queue (a retry is harmless: stanza_id, and a row found stored
 * under its own id is reported stored) and its turn is released. When no
 * writer is left, everything waiting goes to the spool so browsers get their
 * acks.
 */
static void writer_lost(gw_store_t *s, pgc_t *c)
{
    if (c->batch.head && !c->finished) {
        c->finished = F_REQUEUE;
        for (wrow_t *w = c->batch.head; w; w = w->next)
            w->uncertain = 1;
    }
    complete_in_order(s);
    if (writers_up(s)) {
        writer_kick(s);
        return;
    }
    while (s->queue.head)
        spool_row(s, wlist_pop(&s->queue));
    /* Replay rows were dropped from memory; they are still in the replay file. */
    s->replay_left = 0;
}

int gw_store_write(gw_store_t *s, const gw_store_msg_t *m, gw_store_write_cb cb, void *ud)
{
    wrow_t *w = wrow_new(m);

    if (w == NULL)
        return GW_ENOMEM;
    w->cb = cb;
    w->ud = ud;
    if (!writers_up(s) || degraded(s)) {
        spool_row(s, w);
        return 0;
    }
    if (s->queue.len >= (size_t)s->cfg->store_queue_max) {
        /* The database is up but not keeping up: the spool absorbs the burst. */
        spool_row(s, w);
        return 0;
    }
    wlist_push(&s->queue, w);
    writer_kick(s);
    return 0;
}

/* ---- reader -------------------------------------------------------------------- */

/*
 * A page of a conversation. $1 is the conversation key (imgw_conv_key, computed
 * by gw_store_page): as a plain parameter, a prepared plan's index scans compare
 * with it directly, where imgw_conv_key($1, $2) (a SQL function the planner does
 * not inline) would run once per partition. The reader prepares it once per
 * connection (PAGE_STMT): planning this statement over every monthly partition
 * cost more than running it (docs/performance.md, "History writer and pages").
 */
#define PAGE_STMT "imgw_page"
static const char page_sql[] =
    "SELECT id, sender, recipient, body, kind, client_id, "
    "(extract(epoch FROM created_at) * 1000)::bigint "
    "FROM messages WHERE conv = $1 AND id < $2 ORDER BY id DESC LIMIT $3";

/* Prepares the page statement on a reader connection that just came up. */
static void reader_prepare(pgc_t *c)
{
    c->page_prepared = 0;
    if (!PQsendPrepare(c->conn, PAGE_STMT, page_sql, 0, NULL)) {
        pgc_fail(c, PQerrorMessage(c->conn));
        return;
    }
    c->preparing = 1;
    pgc_sent(c);
}

static void reader_done(pgc_t *c, PGresult *res)
{
    req_t *r = c->running;
    gw_rows_t rows = {res};
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (c->preparing) {
        /* Without it pages still work, as unnamed statements planned each time. */
        c->preparing = 0;
        c->page_prepared = st == PGRES_COMMAND_OK;
        if (!c->page_prepared)
            gw_warn("store", "cannot prepare the page statement, pages are planned each time: %s",
                    res ? PQresultErrorMessage(res) : "no result");
        return;
    }
    c->running = NULL;
    if (r == NULL)
        return;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        r->cb(r->ud, 0, &rows);
    } else {
        gw_warn("store", "query failed: %s", res ? PQresultErrorMessage(res) : "no result");
        c->store->st.failed_reads++;
        r->cb(r->ud, GW_EIO, NULL);
    }
    req_free(r);
}

static void pgc_dispatch(pgc_t *c)
{
    req_t *r;

    if (c->state != C_IDLE || c->head == NULL)
        return;
    r = c->head;
    c->head = r->next;
    if (c->head == NULL)
        c->tail = NULL;
    c->nreqs--;
    r->next = NULL;
    c->running = r;
    if (r->sql == page_sql && c->page_prepared) {
        if (!PQsendQueryPrepared(c->conn, PAGE_STMT, r->nparams, (const char *const *)r->params,
                                 NULL, NULL, 0))
            pgc_fail(c, PQerrorMessage(c->conn));
        else
            pgc_sent(c);
        return;
    }
    pgc_send(c, r->sql, r->nparams, (const char *const *)r->params);
}

static int submit(gw_store_t *s, const char *sql, gw_store_rows_cb cb, void *ud, int n, ...)
{
    pgc_t *c = &s->reader;
    req_t *r = calloc(1, sizeof(*r));
    va_list ap;

    if (r == NULL)
        return GW_ENOMEM;
    r->sql = sql;
    r->cb = cb;
    r->ud = ud;
    r->nparams = n;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *v = va_arg(ap, const char *);
        r->params[i] = strdup(v);
        if (r->params[i] == NULL) {
            va_end(ap);
            r->nparams = i;
            req_free(r);
            return GW_ENOMEM;
        }
    }
    va_end(ap);
    if (c->state != C_IDLE && c->state != C_BUSY) {
        s->st.failed_reads++;
        r->next = s->failed;
        s->failed = r;
        uv_timer_start(&s->defer, on_defer, 0, 0);
        return 0;
    }
    if (c->nreqs >= MAX_READS_QUEUED) {
        s->st.failed_reads++;
        r->next = s->failed;
        s->failed = r;
        uv_timer_start(&s->defer, on_defer, 0, 0);
        return 0;
    }
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->nreqs++;
    pgc_dispatch(c);
    return 0;
}

/* imgw_chat_list (schema 006): the entries, read markers and unread ids in one snapshot. */
static const char chats_sql[] = "SELECT * FROM imgw_chat_list($1, $2, $3)";

/* imgw_read (schema 006) locks, then clamps and counts; it always answers the marker. */
static const char mark_read_sql[] = "SELECT last_read_id, unread, moved FROM imgw_read($1, $2, $3)";

static const char recover_sql[] =
    "SELECT m.id, m.sender, m.recipient, m.body, m.kind, m.client_id, "
    "(extract(epoch FROM m.created_at) * 1000)::bigint "
    "FROM conversation_state cs CROSS JOIN LATERAL ("
    "SELECT * FROM messages m WHERE m.conv = cs.conv AND m.id > $2 ORDER BY m.id LIMIT $3) m "
    "WHERE cs.user_jid = $1 AND cs.last_message_id > $2 ORDER BY m.id LIMIT $3";

int gw_store_page(gw_store_t *s, const char *a, const char *b, uint64_t before, int limit,
                  gw_store_rows_cb cb, void *ud)
{
    char bs[24], ls[16], *key;
    size_t n;
    int rc;
    /* imgw_conv_key (schema 001): the two JIDs in byte order, one space between. */
    int a_first = strcmp(a, b) <= 0;

    n = strlen(a) + strlen(b) + 2;
    key = malloc(n);
    if (key == NULL)
        return GW_ENOMEM;
    snprintf(key, n, "%s %s", a_first ? a : b, a_first ? b : a);
    snprintf(bs, sizeof(bs), "%" PRIu64, before > INT64_MAX ? (uint64_t)INT64_MAX : before);
    snprintf(ls, sizeof(ls), "%d", limit);
    rc = submit(s, page_sql, cb, ud, 3, key, bs, ls);
    free(key);
    return rc;
}

int gw_store_chats(gw_store_t *s, const char *user, int limit, int ids_max, gw_store_rows_cb cb,
                   void *ud)
{
    char ls[16], is[16];

    snprintf(ls, sizeof(ls), "%d", limit);
    snprintf(is, sizeof(is), "%d", ids_max);
    return submit(s, chats_sql, cb, ud, 3, user, ls, is);
}

int gw_store_mark_read(gw_store_t *s, const char *user, const char *peer, uint64_t id,
                       gw_store_rows_cb cb, void *ud)
{
    char is[24];

    snprintf(is, sizeof(is), "%" PRIu64, id > INT64_MAX ? (uint64_t)INT64_MAX : id);
    return submit(s, mark_read_sql, cb, ud, 3, user, peer, is);
}

int gw_store_recover(gw_store_t *s, const char *user, uint64_t after, int limit,
                     gw_store_rows_cb cb, void *ud)
{
    char as[24], ls[16];

    snprintf(as, sizeof(as), "%" PRIu64, after > INT64_MAX ? (uint64_t)INT64_MAX : after);
    snprintf(ls, sizeof(ls), "%d", limit);
    return submit(s, recover_sql, cb, ud, 3, user, as, ls);
}

/* ---- maintenance ---------------------------------------------------------------- */

static void on_partitions(void *ud, int status, const gw_rows_t *rows)
{
    GW_UNUSED(ud);
    GW_UNUSED(rows);
    if (status != 0)
        gw_warn("store", "imgw_ensure_partitions failed; retrying tomorrow");
}

static void on_maintenance(uv_timer_t *t)
{
    gw_store_t *s = t->data;

    /* Monthly partitions are created ahead of time, so inserts never hit the default. */
    submit(s, "SELECT imgw_ensure_partitions(3)", on_partitions, NULL, 0);
}

/* ---- migrations ------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int exec_ok(PGconn *conn, const char *sql, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

    if (!ok)
        gw_error("store", "migration: %s failed: %s", what, PQresultErrorMessage(res));
    PQclear(res);
    return ok;
}

int gw_store_migrate(const char *conninfo, const char *schema_dir)
{
    PGconn *conn = PQconnectdb(conninfo);
    DIR *d = NULL;
    struct dirent *e;
    char *files[256];
    size_t nfiles = 0;
    int rc = GW_EIO;

    if (PQstatus(conn) != CONNECTION_OK) {
        gw_error("store", "migration: cannot connect: %s", PQerrorMessage(conn));
        goto out;
    }
    /* Serialises gateways starting together; the second finds everything applied. */
    if (!exec_ok(conn, "SELECT pg_advisory_lock(hashtext('imgw.migrate'))", "lock") ||
        !exec_ok(conn,
                 "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, "
                 "applied_at timestamptz NOT NULL DEFAULT now())",
                 "schema_migrations"))
        goto out;
    d = opendir(schema_dir);
    if (d == NULL) {
        gw_error("store", "migration: cannot open %s: %s", schema_dir, strerror(errno));
        goto out;
    }
    while ((e = readdir(d)) != NULL && nfiles < GW_ARRAY_SIZE(files)) {
        size_t n = strlen(e->d_name);
        if (n > 8 && e->d_name[0] >= '0' && e->d_name[0] <= '9' && e->d_name[3] == '_' &&
            strcmp(e->d_name + n - 4, ".sql") == 0)
            files[nfiles++] = strdup(e->d_name);
    }
    qsort(files, nfiles, sizeof(files[0]), cmp_str);
    for (size_t i = 0; i < nfiles; i++) {
        int version = atoi(files[i]);
        char vs[16], path[2048];
        const char *params[1] = {vs};
        PGresult *res;
        FILE *f;
        char *sql;
        long len;
        int applied;

        snprintf(vs, sizeof(vs), "%d", version);
        res = PQexecParams(conn, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, NULL,
                           params, NULL, NULL, 0);
        applied = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0;
        PQclear(res);
        if (applied)
            continue;
        snprintf(path, sizeof(path), "%s/%s", schema_dir, files[i]);
        f = fopen(path, "rb");
        if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
            fseek(f, 0, SEEK_SET) != 0) {
            gw_error("store", "migration: cannot read %s", path);
            if (f)
                fclose(f);
            goto out;
        }
        sql = malloc((size_t)len + 1);
        if (sql == NULL || fread(sql, 1, (size_t)len, f) != (size_t)len) {
            free(sql);
            fclose(f);
            goto out;
        }
        sql[len] = '\0';
        fclose(f);
        if (!exec_ok(conn, "BEGIN", "BEGIN") || !exec_ok(conn, sql, files[i])) {
            free(sql);
            exec_ok(conn, "ROLLBACK", "ROLLBACK");
            goto out;
        }
        free(sql);
        res = PQexecParams(conn, "INSERT INTO schema_migrations (version) VALUES ($1)", 1, NULL,
                           params, NULL, NULL, 0);
        PQclear(res);
        if (!exec_ok(conn, "COMMIT", "COMMIT"))
            goto out;
        gw_info("store", "migration %s applied", files[i]);
    }
    rc = 0;
out:
    for (size_t i = 0; i < nfiles; i++)
        free(files[i]);
    if (d)
        closedir(d);
    PQfinish(conn);
    return rc;
}

/* ---- lifecycle -------------------------------------------------------------------- */

static void pgc_init(gw_store_t *s, pgc_t *c, const char *name)
{
    memset(c, 0, sizeof(*c));
    c->store = s;
    c->name = name;
    c->fd = -1;
    c->state = C_DOWN;
    uv_timer_init(s->loop, &c->retry);
    c->retry.data = c;
}

int gw_store_new(uv_loop_t *loop, const gw_config_t *cfg, const char *schema_dir, gw_store_t **out)
{
    gw_store_t *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return GW_ENOMEM;
    s->loop = loop;
    s->cfg = cfg;
    s->spool_fd = -1;
    s->enabled = cfg->pg_conninfo[0] != '\0';
    *out = s;
    if (!s->enabled)
        return 0;
    if (cfg->pg_migrate && schema_dir && gw_store_migrate(cfg->pg_conninfo, schema_dir) != 0)
        gw_warn("store", "migrations not applied now; the writer retries in the background");
    if (spool_open(s) != 0) {
        free(s);
        *out = NULL;
        return GW_EIO;
    }
    uv_timer_init(loop, &s->defer);
    s->defer.data = s;
    uv_timer_init(loop, &s->maintenance);
    s->maintenance.data = s;
    uv_timer_init(loop, &s->backoff);
    s->backoff.data = s;
    s->nwriters = cfg->store_writers < 1             ? 1
                  : cfg->store_writers > MAX_WRITERS ? MAX_WRITERS
                                                     : cfg->store_writers;
    for (int i = 0; i < s->nwriters; i++) {
        pgc_init(s, &s->writers[i], "writer");
        s->writers[i].is_writer = 1;
        pgc_connect(&s->writers[i]);
    }
    pgc_init(s, &s->reader, "reader");
    pgc_connect(&s->reader);
    uv_timer_start(&s->maintenance, on_maintenance, 5000, 24u * 3600u * 1000u);
    return 0;
}

int gw_store_enabled(const gw_store_t *s)
{
    return s != NULL && s->enabled;
}

int gw_store_is_up(const gw_store_t *s)
{
    return s->enabled && writers_up(s);
}

void gw_store_get_stats(const gw_store_t *s, gw_store_stats_t *st)
{
    *st = s->st;
    st->queued = s->queue.len;
    for (int i = 0; i < s->nwriters; i++)
        st->queued += s->writers[i].batch.len;
    st->spool_bytes = s->spool_bytes;
}

static void pgc_stop(pgc_t *c)
{
    c->state = C_STOPPED;
    pgc_fail(c, "stopping");
    uv_close((uv_handle_t *)&c->retry, NULL);
}

void gw_store_stop(gw_store_t *s)
{
    if (!s->enabled)
        return;
    /* Batches in flight may or may not commit; spooling them too is harmless (stanza_id). */
    for (int i = 0; i < s->nwriters; i++) {
        wlist_prepend(&s->queue, &s->writers[i].batch);
        free(s->writers[i].failed_msg);
        s->writers[i].failed_msg = NULL;
    }
    while (s->queue.head)
        spool_row(s, wlist_pop(&s->queue));
    for (int i = 0; i < s->nwriters; i++)
        pgc_stop(&s->writers[i]);
    pgc_stop(&s->reader);
    on_defer(&s->defer);
    uv_close((uv_handle_t *)&s->defer, NULL);
    uv_close((uv_handle_t *)&s->maintenance, NULL);
    uv_close((uv_handle_t *)&s->backoff, NULL);
}

void gw_store_free(gw_store_t *s)
{
    if (s == NULL)
        return;
    if (s->spool_fd >= 0)
        close(s->spool_fd);
    free(s);
}
