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
#include "session.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_READS_QUEUED 10000
#define SPOOL_LINE_MAX   (4u * 1024u * 1024u)

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
    uint64_t id, ts;
    char *sender, *recipient, *body, *kind, *cid, *stanza_id;
    gw_store_write_cb cb;
    void *ud;
    int replay; /* came from the spool: nobody waits for it */
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
    wlist_t batch;       /* the batch in flight, or finished and waiting for its turn */
    uint64_t batch_seq;  /* order in which batches were sent */
    uint64_t batch_t0;   /* when it was sent (gw_metrics_now_ns), for imgw_store_batch_seconds */
    int finished;        /* 1: committed, 2: failed (rows go back to the queue) */
    gw_strset_t *stored; /* stanza ids the committed batch really inserted */
} pgc_t;

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
    gw_store_stats_t st;
};

static void pgc_dispatch(pgc_t *c);
static void pgc_fail(pgc_t *c, const char *why);
static void writer_kick(gw_store_t *s);

/* ---- deferred callbacks ------------------------------------------------------- */

typedef struct done_cb {
    struct done_cb *next;
    gw_store_write_cb cb;
    void *ud;
    int status;
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
        d->cb(d->ud, d->status);
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

static void defer_write_cb(gw_store_t *s, gw_store_write_cb cb, void *ud, int status)
{
    done_cb_t *d;

    if (cb == NULL)
        return;
    d = malloc(sizeof(*d));
    if (d == NULL) {
        cb(ud, status); /* out of memory: run it now rather than lose it */
        return;
    }
    d->cb = cb;
    d->ud = ud;
    d->status = status;
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

/* Appends w to the spool and syncs it; returns 0 when durable. */
static int spool_append(gw_store_t *s, const wrow_t *w)
{
    json_object *o;
    const char *text;
    size_t len;
    char num[24];
    ssize_t n;

    if (s->spool_fd < 0)
        return GW_EFULL;
    o = json_object_new_object();
    if (o == NULL)
        return GW_ENOMEM;
    snprintf(num, sizeof(num), "%" PRIu64, w->id);
    json_object_object_add(o, "id", json_object_new_string(num));
    json_object_object_add(o, "ts", json_object_new_int64((int64_t)w->ts));
    json_object_object_add(o, "s", json_object_new_string(w->sender));
    json_object_object_add(o, "r", json_object_new_string(w->recipient));
    json_object_object_add(o, "b", json_object_new_string(w->body));
    json_object_object_add(o, "k", json_object_new_string(w->kind));
    if (w->cid)
        json_object_object_add(o, "c", json_object_new_string(w->cid));
    json_object_object_add(o, "st", json_object_new_string(w->stanza_id));
    text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    len = strlen(text);
    if (s->spool_bytes + len + 1 > (size_t)s->cfg->spool_max_bytes) {
        json_object_put(o);
        return GW_EFULL;
    }
    {
        char *line = malloc(len + 1);
        if (line == NULL) {
            json_object_put(o);
            return GW_ENOMEM;
        }
        memcpy(line, text, len);
        line[len] = '\n';
        n = write(s->spool_fd, line, len + 1);
        free(line);
    }
    json_object_put(o);
    if (n != (ssize_t)(len + 1) || fdatasync(s->spool_fd) != 0) {
        gw_error("store", "spool write failed: %s", strerror(errno));
        return GW_EIO;
    }
    s->spool_bytes += len + 1;
    s->st.spooled++;
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
    defer_write_cb(s, w->cb, w->ud, rc == 0 ? 0 : (rc == GW_EIO ? GW_EIO : GW_EFULL));
    wrow_free(w);
}

static wrow_t *row_from_json(const char *line, size_t len)
{
    json_object *o = json_tokener_parse(line), *v;
    gw_store_msg_t m;
    wrow_t *w = NULL;

    (void)len;
    if (o == NULL || !json_object_is_type(o, json_type_object))
        goto out;
    memset(&m, 0, sizeof(m));
#define STR(key, field)                                                                            \
    if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))         \
    m.field = json_object_get_string(v)
    STR("s", sender);
    STR("r", recipient);
    STR("b", body);
    STR("k", kind);
    STR("c", cid);
    STR("st", stanza_id);
#undef STR
    if (json_object_object_get_ex(o, "id", &v))
        m.id = strtoull(json_object_get_string(v), NULL, 10);
    if (json_object_object_get_ex(o, "ts", &v))
        m.ts = (uint64_t)json_object_get_int64(v);
    if (m.sender && m.recipient && m.body && m.stanza_id && m.id)
        w = wrow_new(&m);
out:
    json_object_put(o);
    return w;
}

/*
 * Hands the spooled messages to the writer: the spool file becomes the replay
 * file (new degraded writes start a fresh spool) and is deleted once every
 * row in it is committed. A torn last line from a crash was never acknowledged
 * and is skipped.
 */
static void spool_replay(gw_store_t *s)
{
    FILE *f;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    wlist_t rows = {0};

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
        wrow_t *w;
        if (line[n - 1] != '\n' || (size_t)n > SPOOL_LINE_MAX)
            continue;
        line[n - 1] = '\0';
        w = row_from_json(line, (size_t)n - 1);
        if (w == NULL)
            continue;
        w->replay = 1;
        wlist_push(&rows, w);
    }
    free(line);
    fclose(f);
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
        pgc_dispatch(c);
    }
}

static void pgc_send(pgc_t *c, const char *sql, int n, const char *const *params)
{
    int rc;

    if (!PQsendQueryParams(c->conn, sql, n, NULL, params, NULL, NULL, 0)) {
        pgc_fail(c, PQerrorMessage(c->conn));
        return;
    }
    c->state = C_BUSY;
    rc = PQflush(c->conn);
    if (rc < 0) {
        pgc_fail(c, PQerrorMessage(c->conn));
        return;
    }
    pgc_watch(c, rc == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
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

static const char insert_sql[] =
    "INSERT INTO messages (id, sender, recipient, body, kind, client_id, stanza_id, created_at) "
    "SELECT i, s, r, b, k, c, st, to_timestamp(t / 1000.0) "
    "FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], "
    "$7::text[], $8::bigint[]) AS u(i, s, r, b, k, c, st, t) "
    "ON CONFLICT DO NOTHING RETURNING stanza_id";

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

static void writer_kick(gw_store_t *s)
{
    pgc_t *c = NULL;
    gw_sbuf_t a[8];
    const char *params[8];
    size_t n = 0;
    int ok = 1;

    if (s->queue.len == 0)
        return;
    /* An idle writer whose previous batch has been completed. */
    for (int i = 0; i < s->nwriters && c == NULL; i++)
        if (s->writers[i].state == C_IDLE && !s->writers[i].finished &&
            s->writers[i].batch.head == NULL)
            c = &s->writers[i];
    if (c == NULL)
        return;
    for (int i = 0; i < 8; i++) {
        gw_sbuf_init(&a[i], (size_t)1 << 30);
        gw_sbuf_append(&a[i], "{", 1);
    }
    while (n < (size_t)s->cfg->store_batch_max && s->queue.head) {
        wrow_t *w = wlist_pop(&s->queue);
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
        wlist_push(&c->batch, w);
        n++;
    }
    for (int i = 0; i < 8; i++) {
        gw_sbuf_append(&a[i], "}", 1);
        ok = ok && !a[i].overflow;
        params[i] = a[i].data;
    }
    if (ok) {
        s->st.batches++;
        c->batch_seq = s->next_seq++;
        c->batch_t0 = gw_metrics_now_ns();
        pgc_send(c, insert_sql, 8, params);
    } else {
        gw_error("store", "cannot build a batch of %zu rows (out of memory)", n);
        wlist_prepend(&s->queue, &c->batch);
    }
    for (int i = 0; i < 8; i++)
        gw_sbuf_free(&a[i]);
}

/*
 * Reports the outcome of finished batches strictly in the order they were
 * sent, so acknowledgements (and the XMPP sends that follow them) keep the
 * order of the browsers' sends even with several writers.
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
            if (c->finished == 2) {
                /* Batches are idempotent (stanza_id): requeue and let a later batch retry. */
                wlist_prepend(&s->queue, &c->batch);
            }
            while (c->batch.head) {
                wrow_t *w = wlist_pop(&c->batch);
                int dup = c->stored && !gw_strset_has(c->stored, w->stanza_id);
                if (w->replay)
                    replayed++;
                s->st.written++;
                defer_write_cb(s, w->cb, w->ud, dup ? 1 : 0);
                wrow_free(w);
            }
            gw_strset_free(c->stored);
            c->stored = NULL;
            c->finished = 0;
            s->done_seq++;
            replay_done(s, replayed);
            progress = 1;
        }
    }
}

static void writer_done(gw_store_t *s, pgc_t *c, PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    gw_hist_since(&gw_metrics.store_batch, c->batch_t0);
    if (st != PGRES_TUPLES_OK) {
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        gw_error("store", "batch insert failed (%s): %s", state ? state : "?",
                 res ? PQresultErrorMessage(res) : "no result");
        c->finished = 2;
    } else {
        c->finished = 1;
        if (gw_strset_new(&c->stored) == 0)
            for (int i = 0; i < PQntuples(res); i++)
                gw_strset_add(c->stored, PQgetvalue(res, i, 0));
    }
    complete_in_order(s);
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
 * back to the queue (a retry is harmless: stanza_id) and its turn is released.
 * When no writer is left, everything waiting goes to the spool so browsers get
 * their acks.
 */
static void writer_lost(gw_store_t *s, pgc_t *c)
{
    if (c->batch.head && !c->finished)
        c->finished = 2;
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
    if (!writers_up(s)) {
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

static void reader_done(pgc_t *c, PGresult *res)
{
    req_t *r = c->running;
    gw_rows_t rows = {res};
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

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

static const char page_sql[] =
    "SELECT id, sender, recipient, body, kind, client_id, "
    "(extract(epoch FROM created_at) * 1000)::bigint "
    "FROM messages WHERE conv = imgw_conv_key($1, $2) AND id < $3 ORDER BY id DESC LIMIT $4";

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
    char bs[24], ls[16];

    snprintf(bs, sizeof(bs), "%" PRIu64, before > INT64_MAX ? (uint64_t)INT64_MAX : before);
    snprintf(ls, sizeof(ls), "%d", limit);
    return submit(s, page_sql, cb, ud, 4, a, b, bs, ls);
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
        gw_strset_free(s->writers[i].stored);
        s->writers[i].stored = NULL;
    }
    while (s->queue.head)
        spool_row(s, wlist_pop(&s->queue));
    for (int i = 0; i < s->nwriters; i++)
        pgc_stop(&s->writers[i]);
    pgc_stop(&s->reader);
    on_defer(&s->defer);
    uv_close((uv_handle_t *)&s->defer, NULL);
    uv_close((uv_handle_t *)&s->maintenance, NULL);
}

void gw_store_free(gw_store_t *s)
{
    if (s == NULL)
        return;
    if (s->spool_fd >= 0)
        close(s->spool_fd);
    free(s);
}
