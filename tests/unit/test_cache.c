/*
 * test_cache.c - cache.c against a real redis-server on a free loopback port.
 *
 * The test starts its own Redis (no persistence) in a temp dir, drives the
 * cache on a libuv loop and looks at Redis through a second, plain
 * synchronous hiredis connection. Waits are bounded loops of uv_run, never
 * fixed sleeps; Redis is stopped and restarted by PID to check reconnection.
 */
#include "cache.h"
#include "config.h"
#include "gw.h"
#include "log.h"
#include "task.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXE 8

typedef struct result {
    int done;
    int status;
    size_t n;
    char peer[MAXE][64];
    char preview[MAXE][1024];
    char sender[MAXE][64];
    uint64_t last_id[MAXE];
    uint32_t unread[MAXE];
} result_t;

static uv_loop_t loop;
static uv_timer_t tick;
static char tmpdir[64];
static int redis_port;
static pid_t redis_pid = -1;
static redisContext *rc; /* the test's own synchronous connection */

/* ---- redis-server ------------------------------------------------------- */

static int free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Polls connect + PING until Redis answers or the deadline passes. */
static redisContext *wait_redis(int port, uint64_t timeout_ms)
{
    uint64_t deadline = gw_now_ms() + timeout_ms;
    struct timeval tv = {0, 200000};

    while (gw_now_ms() < deadline) {
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
        if (c != NULL && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
            freeReplyObject(r);
            if (ok) {
                redisSetTimeout(c, (struct timeval){5, 0});
                return c;
            }
        }
        if (c != NULL)
            redisFree(c);
        pause_ms(20); /* polling interval, not synchronisation */
    }
    return NULL;
}

static int start_redis(void)
{
    char port[16];
    pid_t pid;

    snprintf(port, sizeof(port), "%d", redis_port);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        FILE *f = freopen("/dev/null", "w", stdout);
        GW_UNUSED(f);
        /* Dies with the test, even when the test crashes. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (chdir(tmpdir) != 0)
            _exit(126);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    redis_pid = pid;
    rc = wait_redis(redis_port, 10000);
    return rc ? 0 : -1;
}

static void stop_redis(void)
{
    if (rc != NULL) {
        redisFree(rc);
        rc = NULL;
    }
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
        redis_pid = -1;
    }
}

static long long redis_int(const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(rc, fmt, arg);
    long long v = r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : -999;

    freeReplyObject(r);
    return v;
}

/* ---- loop helpers ------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    GW_UNUSED(t);
}

/* Runs the loop until *flag (or !*flag with want 0) or the deadline. */
static int wait_for(const int *flag, int want, uint64_t timeout_ms)
{
    uint64_t deadline = gw_now_ms() + timeout_ms;

    uv_timer_start(&tick, on_tick, 10, 10);
    while ((*flag != 0) != want && gw_now_ms() < deadline)
        uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&tick);
    return (*flag != 0) == want;
}

static int up_flag;

static int wait_up(gw_cache_t *c, int want, uint64_t timeout_ms)
{
    uint64_t deadline = gw_now_ms() + timeout_ms;

    uv_timer_start(&tick, on_tick, 10, 10);
    while (gw_cache_is_up(c) != want && gw_now_ms() < deadline)
        uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&tick);
    up_flag = gw_cache_is_up(c);
    return up_flag == want;
}

static void on_chats(void *ud, int status, const gw_chat_t *chats, size_t n)
{
    result_t *r = ud;

    r->done++;
    r->status = status;
    r->n = n;
    for (size_t i = 0; i < n && i < MAXE; i++) {
        snprintf(r->peer[i], sizeof(r->peer[i]), "%s", chats[i].peer);
        snprintf(r->preview[i], sizeof(r->preview[i]), "%s", chats[i].preview);
        snprintf(r->sender[i], sizeof(r->sender[i]), "%s", chats[i].last_sender);
        r->last_id[i] = chats[i].last_id;
        r->unread[i] = chats[i].unread;
    }
}

/* Reads user's list and waits for the answer (also a barrier: one connection is FIFO). */
static void get(gw_cache_t *c, const char *user, size_t limit, result_t *r)
{
    memset(r, 0, sizeof(*r));
    gw_cache_get_chats(c, user, limit, on_chats, r);
    wait_for(&r->done, 1, 5000);
    ASSERT_EQ(r->done, 1);
}

static void message(gw_cache_t *c, uint64_t id, const char *from, const char *to, const char *body,
                    const char *frame)
{
    gw_cache_msg_t m = {id, 1700000000000ull + id, from, to, "text", body, frame};
    char conv[160];

    if (strcmp(from, to) < 0)
        snprintf(conv, sizeof(conv), "%s %s", from, to);
    else
        snprintf(conv, sizeof(conv), "%s %s", to, from);
    gw_cache_on_message(c, &m, conv);
}

/*
 * Makes user's list valid with two conversations: carol (newest, read up to 200) and
 * bob (read up to 50; 81 and 100 unread).
 */
static void fill(gw_cache_t *c, const char *user)
{
    gw_chat_t in[2] = {
        {"carol@x", 200, 1700000000200ull, "carol@x", "text", "hi there", 0, 200, ""},
        {"bob@x", 100, 1700000000100ull, "bob@x", "image", "img", 2, 50, "81 100"},
    };
    result_t r;

    /* As the router does it: a miss, PostgreSQL, a put. A put may be refused
     * once when an older miss's stamp is still remembered and the user had an
     * update since (the safe answer); the next miss starts a fresh fill. */
    for (int i = 0; i < 2; i++) {
        get(c, user, 10, &r);
        if (r.status == 0)
            return;
        gw_cache_put_chats(c, user, in, 2);
    }
}

/* ---- the tests ------------------------------------------------------------ */

static void test_disabled(void)
{
    gw_config_t cfg;
    gw_cache_t *c;
    result_t r;

    gw_config_init(&cfg);
    ASSERT_EQ(gw_cache_new(&loop, &cfg, &c), 0);
    ASSERT_EQ(gw_cache_is_up(c), 0);
    memset(&r, 0, sizeof(r));
    gw_cache_get_chats(c, "alice@x", 10, on_chats, &r);
    ASSERT_EQ(r.done, 1); /* synchronously */
    ASSERT_EQ(r.status, GW_ENOTFOUND);
    message(c, 1, "a@x", "b@x", "x", NULL);
    gw_cache_stop(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    gw_cache_free(c);
    gw_config_free(&cfg);
}

static void test_live(void)
{
    gw_config_t cfg;
    gw_cache_t *c;
    gw_cache_stats_t st, st2;
    result_t r;
    char err[256], port[16], body[512];
    redisReply *rep;

    gw_config_init(&cfg);
    snprintf(port, sizeof(port), "%d", redis_port);
    ASSERT_EQ(gw_config_set(&cfg, "redis_host", "127.0.0.1", err, sizeof(err)), 0);
    ASSERT_EQ(gw_config_set(&cfg, "redis_port", port, err, sizeof(err)), 0);
    ASSERT_EQ(gw_config_set(&cfg, "redis_db", "3", err, sizeof(err)), 0);
    ASSERT_EQ(gw_config_set(&cfg, "cache_recent", "3", err, sizeof(err)), 0);
    ASSERT_EQ(gw_config_set(&cfg, "cache_ttl_s", "3600", err, sizeof(err)), 0);
    ASSERT_EQ(gw_cache_new(&loop, &cfg, &c), 0);
    ASSERT(wait_up(c, 1, 10000));
    freeReplyObject(redisCommand(rc, "SELECT 3"));

    /* An empty Redis misses. */
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, GW_ENOTFOUND);

    /* put then get: entries in order, with unread counts. */
    fill(c, "alice@x");
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(r.n, 2);
    ASSERT_STR(r.peer[0], "carol@x");
    ASSERT_STR(r.preview[0], "hi there");
    ASSERT_EQ(r.unread[0], 0);
    ASSERT_STR(r.peer[1], "bob@x");
    ASSERT_EQ(r.unread[1], 2);
    ASSERT_EQ(r.last_id[1], 100);
    get(c, "alice@x", 1, &r);
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(r.n, 1);
    ASSERT(redis_int("TTL %s", "imgw:chats:alice@x") > 3500);
    ASSERT(redis_int("TTL %s", "imgw:valid:alice@x") > 3500);

    /* on_message: the valid recipient moves bob up, +1 unread; the invalid sender stays a miss. */
    message(c, 300, "bob@x", "alice@x", "hello", NULL);
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.n, 2);
    ASSERT_STR(r.peer[0], "bob@x");
    ASSERT_STR(r.preview[0], "hello");
    ASSERT_STR(r.sender[0], "bob@x");
    ASSERT_EQ(r.last_id[0], 300);
    ASSERT_EQ(r.unread[0], 3);
    get(c, "bob@x", 10, &r);
    ASSERT_EQ(r.status, GW_ENOTFOUND);
    ASSERT_EQ(redis_int("EXISTS %s", "imgw:chats:bob@x"), 0);
    ASSERT_EQ(redis_int("EXISTS %s", "imgw:order:bob@x"), 0);
    ASSERT_EQ(redis_int("EXISTS %s", "imgw:marks:bob@x"), 0);
    ASSERT_EQ(redis_int("EXISTS %s", "imgw:unids:bob@x"), 0);

    /* The sender's side: a new peer, unread unchanged; an older message does not move it back. */
    message(c, 400, "alice@x", "dave@x", "to dave", NULL);
    message(c, 350, "carol@x", "alice@x", "late", NULL);
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.n, 3);
    ASSERT_STR(r.peer[0], "dave@x");
    ASSERT_EQ(r.unread[0], 0);
    ASSERT_STR(r.peer[1], "carol@x");
    ASSERT_EQ(r.unread[1], 1);
    ASSERT_STR(r.peer[2], "bob@x");
    message(c, 340, "bob@x", "alice@x", "older than carol's", NULL);
    get(c, "alice@x", 10, &r);
    ASSERT_STR(r.peer[1], "carol@x");
    ASSERT_STR(r.peer[2], "bob@x");
    ASSERT_STR(r.preview[2], "older than carol's");
    ASSERT_EQ(r.unread[2], 4);

    /* The preview is the first 200 characters, as PostgreSQL's left(body, 200). */
    memset(body, 0, sizeof(body));
    for (int i = 0; i < 210; i++)
        memcpy(body + 2 * i, "\xc3\xa9", 2); /* é */
    message(c, 500, "erin@x", "alice@x", body, NULL);
    get(c, "alice@x", 10, &r);
    ASSERT_STR(r.peer[0], "erin@x");
    ASSERT_EQ(strlen(r.preview[0]), 2 * 200);

    /* A message applied twice counts once. */
    message(c, 340, "bob@x", "alice@x", "older than carol's", NULL);
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.unread[3], 4);

    /* mark_read part way leaves what is after the marker; a marker never moves back. */
    gw_cache_mark_read(c, "alice@x", "bob@x", 300);
    get(c, "alice@x", 10, &r);
    ASSERT_STR(r.peer[3], "bob@x");
    ASSERT_EQ(r.unread[3], 1);
    gw_cache_mark_read(c, "alice@x", "bob@x", 90);
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.unread[3], 1);
    /* A message the marker has passed is not unread (it was committed before the read). */
    message(c, 299, "bob@x", "alice@x", "late but read", NULL);
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.unread[3], 1);
    /* mark_read to the end zeroes it. */
    gw_cache_mark_read(c, "alice@x", "bob@x", 340);
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.unread[3], 0);
    /* A reply moves the replier's marker past what it answers. */
    message(c, 510, "bob@x", "alice@x", "one more", NULL);
    message(c, 520, "bob@x", "alice@x", "and another", NULL);
    get(c, "alice@x", 10, &r);
    ASSERT_STR(r.peer[0], "bob@x");
    ASSERT_EQ(r.unread[0], 2);
    message(c, 530, "alice@x", "bob@x", "answer", NULL);
    get(c, "alice@x", 10, &r);
    ASSERT_STR(r.peer[0], "bob@x");
    ASSERT_EQ(r.unread[0], 0);
    /* Ids that differ in the last digits only keep their order (no doubles). */
    message(c, 385912041820389377ull, "zed@x", "alice@x", "z1", NULL);
    message(c, 385912041820389376ull, "yan@x", "alice@x", "y1", NULL);
    get(c, "alice@x", 10, &r);
    ASSERT_STR(r.peer[0], "zed@x");
    ASSERT_STR(r.peer[1], "yan@x");
    ASSERT_EQ(r.last_id[0], 385912041820389377ull);
    /* A read for a conversation the list does not have yet invalidates the list. */
    gw_cache_mark_read(c, "alice@x", "newcomer@x", 600);
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, GW_ENOTFOUND);
    fill(c, "alice@x");

    /* A message during a fill (after the miss, before the put) makes the put a no-op. */
    get(c, "frank@x", 10, &r);
    ASSERT_EQ(r.status, GW_ENOTFOUND);
    message(c, 600, "gina@x", "frank@x", "race", NULL);
    gw_cache_put_chats(c, "frank@x", NULL, 0);
    get(c, "frank@x", 10, &r);
    ASSERT_EQ(r.status, GW_ENOTFOUND);
    /* Without a message in between it sticks, even when empty. */
    get(c, "henry@x", 10, &r);
    ASSERT_EQ(r.status, GW_ENOTFOUND);
    gw_cache_put_chats(c, "henry@x", NULL, 0);
    get(c, "henry@x", 10, &r);
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(r.n, 0);

    /* A malformed entry is a miss, and the next fill repairs it. */
    freeReplyObject(redisCommand(rc, "HSET imgw:chats:alice@x bob@x %s", "{not json"));
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, GW_ENOTFOUND);
    fill(c, "alice@x");
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(r.n, 2);
    /* So is an entry whose string holds an escaped NUL (it would be cut short in C). */
    freeReplyObject(redisCommand(rc, "HSET imgw:chats:alice@x bob@x %s",
                                 "{\"peer\":\"bob@x\",\"last_id\":100,\"last_ts\":1,"
                                 "\"last_sender\":\"bob@x\\u0000evil\",\"kind\":\"text\","
                                 "\"preview\":\"p\"}"));
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, GW_ENOTFOUND);
    fill(c, "alice@x");
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, 0);
    /* So is a list that lost a key (eviction). */
    freeReplyObject(redisCommand(rc, "DEL imgw:marks:alice@x"));
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, GW_ENOTFOUND);
    fill(c, "alice@x");
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, 0);
    freeReplyObject(redisCommand(rc, "DEL imgw:unids:alice@x"));
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, GW_ENOTFOUND);
    /* A fill whose unread ids do not match its counts is not cached. */
    {
        gw_chat_t bad[1] = {{"bob@x", 100, 1700000000100ull, "bob@x", "text", "x", 2, 50, "81"}};
        get(c, "lena@x", 10, &r);
        gw_cache_put_chats(c, "lena@x", bad, 1);
        get(c, "lena@x", 10, &r);
        ASSERT_EQ(r.status, GW_ENOTFOUND);
    }

    /* FLUSHALL: everything misses again. */
    fill(c, "alice@x");
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, 0);
    freeReplyObject(redisCommand(rc, "FLUSHALL"));
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, GW_ENOTFOUND);
    message(c, 700, "bob@x", "alice@x", "after flush", NULL);
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, GW_ENOTFOUND);
    ASSERT_EQ(redis_int("EXISTS %s", "imgw:chats:alice@x"), 0);

    /* The recent list keeps the newest cache_recent frames. */
    for (int i = 1; i <= 5; i++) {
        char f[32];
        snprintf(f, sizeof(f), "{\"op\":\"msg\",\"n\":%d}", i);
        message(c, (uint64_t)(800 + i), "ivan@x", "jane@x", "r", f);
    }
    get(c, "ivan@x", 10, &r); /* barrier */
    ASSERT_EQ(redis_int("LLEN %s", "imgw:recent:ivan@x jane@x"), 3);
    rep = redisCommand(rc, "LINDEX %s 0", "imgw:recent:ivan@x jane@x");
    ASSERT(rep != NULL && rep->type == REDIS_REPLY_STRING);
    if (rep != NULL && rep->type == REDIS_REPLY_STRING)
        ASSERT_STR(rep->str, "{\"op\":\"msg\",\"n\":5}");
    freeReplyObject(rep);
    ASSERT(redis_int("TTL %s", "imgw:recent:ivan@x jane@x") > 3500);

    /* The web set. */
    gw_cache_web_user(c, "alice@x", 1);
    gw_cache_web_user(c, "bob@x", 1);
    gw_cache_web_user(c, "alice@x", 0);
    get(c, "ivan@x", 10, &r); /* barrier */
    ASSERT_EQ(redis_int("SISMEMBER imgw:web %s", "alice@x"), 0);
    ASSERT_EQ(redis_int("SISMEMBER imgw:web %s", "bob@x"), 1);

    /* A dropped connection loses an update: every cached list is invalidated on reconnect. */
    fill(c, "alice@x");
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, 0);
    freeReplyObject(redisCommand(rc, "CLIENT KILL TYPE normal SKIPME yes"));
    ASSERT(wait_up(c, 0, 5000));
    gw_cache_get_stats(c, &st);
    message(c, 900, "bob@x", "alice@x", "lost", NULL);
    gw_cache_get_stats(c, &st2);
    ASSERT_EQ(st2.errors, st.errors + 1);
    ASSERT(wait_up(c, 1, 15000));
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, GW_ENOTFOUND);

    /* Too many outstanding commands: writes drop, reads fail at once, then it recovers. */
    fill(c, "alice@x");
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, 0);
    gw_cache_get_stats(c, &st);
    for (int i = 0; i < 10100; i++)
        message(c, (uint64_t)(1000 + i), "kim@x", "alice@x", "flood", NULL);
    gw_cache_get_stats(c, &st2);
    ASSERT(st2.errors > st.errors);
    memset(&r, 0, sizeof(r));
    gw_cache_get_chats(c, "alice@x", 10, on_chats, &r);
    ASSERT_EQ(r.done, 1);
    ASSERT_EQ(r.status, GW_EIO);
    {
        /* Drain: the loop runs until a read goes through again. */
        uint64_t deadline = gw_now_ms() + 20000;
        do {
            memset(&r, 0, sizeof(r));
            uv_timer_start(&tick, on_tick, 10, 10);
            uv_run(&loop, UV_RUN_ONCE);
            uv_timer_stop(&tick);
            gw_cache_get_chats(c, "alice@x", 10, on_chats, &r);
        } while (r.done && r.status == GW_EIO && gw_now_ms() < deadline);
        wait_for(&r.done, 1, 5000);
    }
    /* The dropped updates invalidated the list rather than leaving it stale. */
    ASSERT_EQ(r.status, GW_ENOTFOUND);

    /* Redis stopped: reads answer GW_EIO synchronously, writes are counted as errors. */
    stop_redis();
    ASSERT(wait_up(c, 0, 5000));
    memset(&r, 0, sizeof(r));
    gw_cache_get_chats(c, "alice@x", 10, on_chats, &r);
    ASSERT_EQ(r.done, 1);
    ASSERT_EQ(r.status, GW_EIO);
    gw_cache_get_stats(c, &st);
    message(c, 20000, "bob@x", "alice@x", "down", NULL);
    gw_cache_mark_read(c, "alice@x", "bob@x", 20000);
    gw_cache_put_chats(c, "alice@x", NULL, 0);
    gw_cache_web_user(c, "alice@x", 1);
    gw_cache_get_stats(c, &st2);
    ASSERT_EQ(st2.errors, st.errors + 4);
    /* A few failed reconnect attempts while it is away. */
    {
        int never = 0;
        wait_for(&never, 1, 700);
    }
    ASSERT_EQ(gw_cache_is_up(c), 0);

    /* Restarted: the cache reconnects and works again. */
    ASSERT_EQ(start_redis(), 0);
    freeReplyObject(redisCommand(rc, "SELECT 3"));
    ASSERT(wait_up(c, 1, 20000));
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, GW_ENOTFOUND);
    fill(c, "alice@x");
    get(c, "alice@x", 10, &r);
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(r.n, 2);
    ASSERT_EQ(redis_int("EXISTS %s", "imgw:valid:alice@x"), 1); /* in db 3 */

    gw_cache_get_stats(c, &st);
    ASSERT(st.hits > 0 && st.misses > 0 && st.writes > 0);

    /* A read in flight when the cache stops is answered GW_EIO. */
    memset(&r, 0, sizeof(r));
    gw_cache_get_chats(c, "alice@x", 10, on_chats, &r);
    gw_cache_stop(c);
    ASSERT_EQ(r.done, 1);
    ASSERT_EQ(r.status, GW_EIO);
    uv_run(&loop, UV_RUN_DEFAULT);
    gw_cache_free(c);
    gw_config_free(&cfg);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    gw_log_level = GW_LOG_ERROR;
    if (getenv("IMGW_TEST_VERBOSE"))
        gw_log_level = GW_LOG_DEBUG;
    uv_loop_init(&loop);
    uv_timer_init(&loop, &tick);

    test_disabled();

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/imgw-test-cache-XXXXXX");
    redis_port = free_port();
    if (mkdtemp(tmpdir) == NULL || redis_port == 0 || start_redis() != 0) {
        fprintf(stderr, "cannot start redis-server on port %d\n", redis_port);
        stop_redis();
        return 1;
    }
    test_live();
    stop_redis();
    rmdir(tmpdir);

    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    TASK_DONE();
}
