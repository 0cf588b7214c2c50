/*
 * store_bench.c - persisted messages per second: the gateway's batched,
 * pipelined writer (store.c, the code the daemon runs) against one INSERT
 * per transaction, on the same database, schema and triggers.
 *
 *   store_bench CONNINFO N writer|single [CONCURRENT [BATCH_MAX]]
 *   store_bench CONNINFO N copy|rawcopy [CONNECTIONS [BATCH]]
 *
 * writer: N messages are handed to gw_store_write with at most CONCURRENT
 * (default 2000, like many browsers sending at once) waiting for their
 * durable acknowledgement; prints messages/s and ack latency percentiles.
 * single: the same N messages, each its own INSERT and commit, from one
 * connection (what a simple per-message writer does).
 * copy: the same N messages as plain `COPY messages FROM STDIN` in batches of
 * BATCH rows (default 500), each its own transaction, from CONNECTIONS
 * connections (default 1) at once: the floor a writer could reach with the same
 * table and triggers when it needs no answer per row (no de-duplication
 * outcome, no ids back). Prints messages/s and per-batch commit latency.
 * rawcopy: the same with session_replication_role = replica, i.e. without
 * the triggers (no de-duplication, no conversation_state): what the rows
 * and indexes of messages alone cost. Needs a superuser.
 */
#include "config.h"
#include "gw.h"
#include "log.h"
#include "store.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    uv_loop_t *loop;
    gw_store_t *store;
    long n, sent, done, failed, inflight, concurrent;
    double *lat;
    uint64_t base_id;
} bench_t;

#define MAX_COPIERS 8

typedef struct {
    bench_t *b;
    double t0;
} one_t;

static void fill(long i, uint64_t base, char *from, char *to, char *body, char *sid, size_t len,
                 gw_store_msg_t *m)
{
    snprintf(from, len, "buyer%ld@shop.bench", i % 1000);
    snprintf(to, len, "seller%ld@shop.bench", (i / 7) % 100);
    snprintf(body, len, "message %ld: is this still available? size M, colour blue", i);
    snprintf(sid, len, "%s/bench-%" PRIu64 "-%ld", from, base, i);
    m->id = base + (uint64_t)i;
    m->ts = gw_now_ms();
    m->sender = from;
    m->recipient = to;
    m->body = body;
    m->kind = "text";
    m->cid = NULL;
    m->stanza_id = sid;
}

static void submit_more(bench_t *b);

static void on_written(void *ud, int status, uint64_t id, uint64_t ts)
{
    one_t *o = ud;
    bench_t *b = o->b;

    (void)id;
    (void)ts;
    if (status < 0)
        b->failed++;
    b->lat[b->done++] = now_s() - o->t0;
    b->inflight--;
    free(o);
    submit_more(b);
    if (b->done == b->n)
        uv_stop(b->loop);
}

static void submit_more(bench_t *b)
{
    char from[64], to[64], body[128], sid[128];
    gw_store_msg_t m;

    while (b->sent < b->n && b->inflight < b->concurrent) {
        one_t *o = malloc(sizeof(*o));
        fill(b->sent, b->base_id, from, to, body, sid, sizeof(from), &m);
        o->b = b;
        o->t0 = now_s();
        if (gw_store_write(b->store, &m, on_written, o) != 0) {
            fprintf(stderr, "write failed\n");
            exit(1);
        }
        b->sent++;
        b->inflight++;
    }
}

static void on_ready(uv_timer_t *t)
{
    bench_t *b = t->data;

    if (!gw_store_is_up(b->store)) {
        uv_timer_start(t, on_ready, 20, 0);
        return;
    }
    submit_more(b);
}

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, c = *(const double *)y;
    return a < c ? -1 : a > c;
}

static int run_writer(const char *conninfo, long n, long concurrent, const char *batch)
{
    uv_loop_t loop;
    gw_config_t cfg;
    char err[256];
    bench_t b;
    uv_timer_t t;
    double t0, el;

    gw_config_init(&cfg);
    gw_config_set(&cfg, "pg_conninfo", conninfo, err, sizeof(err));
    gw_config_set(&cfg, "pg_migrate", "no", err, sizeof(err));
    gw_config_set(&cfg, "store_queue_max", "10000000", err, sizeof(err));
    if (batch)
        gw_config_set(&cfg, "store_batch_max", batch, err, sizeof(err));
    if (getenv("IMGW_STORE_WRITERS"))
        gw_config_set(&cfg, "store_writers", getenv("IMGW_STORE_WRITERS"), err, sizeof(err));
    uv_loop_init(&loop);
    memset(&b, 0, sizeof(b));
    b.loop = &loop;
    b.n = n;
    b.concurrent = concurrent;
    b.lat = calloc((size_t)n, sizeof(double));
    b.base_id = (uint64_t)time(NULL) << 24;
    if (gw_store_new(&loop, &cfg, NULL, &b.store) != 0)
        return 1;
    uv_timer_init(&loop, &t);
    t.data = &b;
    uv_timer_start(&t, on_ready, 0, 0);
    /* Wait for the connections, then time the writes alone. */
    while (!gw_store_is_up(b.store))
        uv_run(&loop, UV_RUN_ONCE);
    t0 = now_s();
    uv_run(&loop, UV_RUN_DEFAULT);
    el = now_s() - t0;
    qsort(b.lat, (size_t)n, sizeof(double), cmp_d);
    {
        gw_store_stats_t st;
        gw_store_get_stats(b.store, &st);
        printf("writer n=%ld concurrent=%ld seconds=%.3f msgs_per_s=%.0f batches=%" PRIu64
               " failed=%ld ack_p50_ms=%.2f ack_p99_ms=%.2f\n",
               n, concurrent, el, (double)n / el, st.batches, b.failed,
               b.lat[(size_t)((double)n * 0.50)] * 1000, b.lat[(size_t)((double)n * 0.99)] * 1000);
    }
    gw_store_stop(b.store);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    gw_store_free(b.store);
    uv_loop_close(&loop);
    free(b.lat);
    gw_config_free(&cfg);
    return 0;
}

static int run_single(const char *conninfo, long n)
{
    PGconn *c = PQconnectdb(conninfo);
    char from[64], to[64], body[128], sid[128], ids[24], ts[24];
    const char *sql = "INSERT INTO messages (id, sender, recipient, body, kind, stanza_id, "
                      "created_at) VALUES ($1, $2, $3, $4, 'text', $5, to_timestamp($6 / 1000.0))";
    uint64_t base = ((uint64_t)time(NULL) << 24) + (1u << 23);
    double t0, el, *lat = calloc((size_t)n, sizeof(double));

    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "%s", PQerrorMessage(c));
        return 1;
    }
    t0 = now_s();
    for (long i = 0; i < n; i++) {
        gw_store_msg_t m;
        const char *params[6];
        PGresult *r;
        double s0 = now_s();
        fill(i, base, from, to, body, sid, sizeof(from), &m);
        snprintf(ids, sizeof(ids), "%" PRIu64, m.id);
        snprintf(ts, sizeof(ts), "%" PRIu64, m.ts);
        params[0] = ids;
        params[1] = from;
        params[2] = to;
        params[3] = body;
        params[4] = sid;
        params[5] = ts;
        r = PQexecParams(c, sql, 6, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "%s", PQresultErrorMessage(r));
            return 1;
        }
        PQclear(r);
        lat[i] = now_s() - s0;
    }
    el = now_s() - t0;
    qsort(lat, (size_t)n, sizeof(double), cmp_d);
    printf("single n=%ld seconds=%.3f msgs_per_s=%.0f ack_p50_ms=%.2f ack_p99_ms=%.2f\n", n, el,
           (double)n / el, lat[(size_t)((double)n * 0.50)] * 1000,
           lat[(size_t)((double)n * 0.99)] * 1000);
    PQfinish(c);
    free(lat);
    return 0;
}

typedef struct {
    const char *conninfo;
    long first, n, batch; /* rows [first, first + n) in batches of batch */
    int no_triggers;
    uint64_t base;
    double *lat; /* one per batch */
    long nlat;
    int rc;
} copier_t;

/* Appends v to b in COPY's text format (backslash escapes); returns the new length. */
static size_t copy_field(char *b, size_t len, size_t cap, const char *v)
{
    for (const char *p = v; *p && len + 2 < cap; p++) {
        char c = *p;
        if (c == '\\' || c == '\t' || c == '\n' || c == '\r') {
            b[len++] = '\\';
            c = c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : '\\';
        }
        b[len++] = c;
    }
    return len;
}

static void *copier_run(void *arg)
{
    copier_t *k = arg;
    PGconn *c = PQconnectdb(k->conninfo);
    char from[64], to[64], body[128], sid[128], line[1024];

    k->rc = 1;
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "%s", PQerrorMessage(c));
        goto out;
    }
    if (k->no_triggers) {
        PGresult *r = PQexec(c, "SET session_replication_role = replica");
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            fprintf(stderr, "%s", PQresultErrorMessage(r));
        PQclear(r);
        if (!ok)
            goto out;
    }
    for (long i = 0; i < k->n; i += k->batch) {
        double s0 = now_s();
        /* Without the triggers nobody sets conv: the rows carry it (imgw_conv_key). */
        PGresult *r = PQexec(
            c, k->no_triggers ? "COPY messages (id, sender, recipient, body, kind, stanza_id, "
                                "created_at, conv) FROM STDIN"
                              : "COPY messages (id, sender, recipient, body, kind, stanza_id, "
                                "created_at) FROM STDIN");
        if (PQresultStatus(r) != PGRES_COPY_IN) {
            fprintf(stderr, "%s", PQresultErrorMessage(r));
            PQclear(r);
            goto out;
        }
        PQclear(r);
        for (long j = i; j < i + k->batch && j < k->n; j++) {
            gw_store_msg_t m;
            size_t len;
            fill(k->first + j, k->base, from, to, body, sid, sizeof(from), &m);
            len = (size_t)snprintf(line, sizeof(line), "%" PRIu64 "\t", m.id);
            len = copy_field(line, len, sizeof(line), m.sender);
            line[len++] = '\t';
            len = copy_field(line, len, sizeof(line), m.recipient);
            line[len++] = '\t';
            len = copy_field(line, len, sizeof(line), m.body);
            len += (size_t)snprintf(line + len, sizeof(line) - len, "\ttext\t");
            len = copy_field(line, len, sizeof(line), m.stanza_id);
            /* created_at: the same instant the writer sends as epoch milliseconds. */
            {
                time_t sec = (time_t)(m.ts / 1000);
                struct tm tm;
                char ts[32];
                gmtime_r(&sec, &tm);
                strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
                len += (size_t)snprintf(line + len, sizeof(line) - len, "\t%s.%03u+00", ts,
                                        (unsigned)(m.ts % 1000));
            }
            if (k->no_triggers) {
                /* The two JIDs in byte order, one space between (schema/README.md). */
                int lt = strcmp(m.sender, m.recipient) < 0;
                line[len++] = '\t';
                len = copy_field(line, len, sizeof(line), lt ? m.sender : m.recipient);
                line[len++] = ' ';
                len = copy_field(line, len, sizeof(line), lt ? m.recipient : m.sender);
            }
            if (len + 1 < sizeof(line)) {
                line[len++] = '\n';
            }
            if (PQputCopyData(c, line, (int)len) != 1) {
                fprintf(stderr, "%s", PQerrorMessage(c));
                goto out;
            }
        }
        if (PQputCopyEnd(c, NULL) != 1) {
            fprintf(stderr, "%s", PQerrorMessage(c));
            goto out;
        }
        r = PQgetResult(c);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "%s", PQresultErrorMessage(r));
            PQclear(r);
            goto out;
        }
        PQclear(r);
        while ((r = PQgetResult(c)) != NULL)
            PQclear(r);
        k->lat[k->nlat++] = now_s() - s0;
    }
    k->rc = 0;
out:
    PQfinish(c);
    return NULL;
}

static int run_copy(const char *conninfo, long n, long conns, long batch, int no_triggers)
{
    copier_t k[MAX_COPIERS];
    pthread_t th[MAX_COPIERS];
    uint64_t base = ((uint64_t)time(NULL) << 24) + (3u << 22);
    double t0, el, *lat;
    long nlat = 0;
    int rc = 0;

    if (conns < 1 || conns > MAX_COPIERS || batch < 1)
        return 2;
    t0 = now_s();
    for (long i = 0; i < conns; i++) {
        k[i].conninfo = conninfo;
        k[i].first = n / conns * i;
        k[i].n = i == conns - 1 ? n - k[i].first : n / conns;
        k[i].batch = batch;
        k[i].no_triggers = no_triggers;
        k[i].base = base;
        k[i].lat = calloc((size_t)(k[i].n / batch + 2), sizeof(double));
        k[i].nlat = 0;
        pthread_create(&th[i], NULL, copier_run, &k[i]);
    }
    for (long i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
        rc |= k[i].rc;
    }
    el = now_s() - t0;
    lat = calloc((size_t)(n / batch + 2 * conns), sizeof(double));
    for (long i = 0; i < conns; i++) {
        memcpy(lat + nlat, k[i].lat, (size_t)k[i].nlat * sizeof(double));
        nlat += k[i].nlat;
        free(k[i].lat);
    }
    qsort(lat, (size_t)nlat, sizeof(double), cmp_d);
    if (rc == 0 && nlat > 0)
        printf("%s n=%ld connections=%ld batch=%ld seconds=%.3f msgs_per_s=%.0f batches=%ld "
               "batch_p50_ms=%.2f batch_p99_ms=%.2f\n",
               no_triggers ? "rawcopy" : "copy", n, conns, batch, el, (double)n / el, nlat,
               lat[(size_t)((double)nlat * 0.50)] * 1000,
               lat[(size_t)((double)nlat * 0.99)] * 1000);
    free(lat);
    return rc;
}

int main(int argc, char **argv)
{
    long n;

    if (argc < 4) {
        fprintf(stderr,
                "usage: store_bench CONNINFO N writer|single|copy|rawcopy [CONCURRENT|CONNECTIONS "
                "[BATCH]]\n");
        return 2;
    }
    gw_log_level = GW_LOG_WARNING;
    n = atol(argv[2]);
    if (strcmp(argv[3], "copy") == 0 || strcmp(argv[3], "rawcopy") == 0)
        return run_copy(argv[1], n, argc > 4 ? atol(argv[4]) : 1, argc > 5 ? atol(argv[5]) : 500,
                        strcmp(argv[3], "rawcopy") == 0);
    if (strcmp(argv[3], "writer") == 0)
        return run_writer(argv[1], n, argc > 4 ? atol(argv[4]) : 2000, argc > 5 ? argv[5] : NULL);
    return run_single(argv[1], n);
}
