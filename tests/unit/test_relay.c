/* test_relay.c - relay envelopes: seal, open, and what open refuses (relay.h). */
#include "gw.h"
#include "relay.h"
#include "task.h"

static gw_relay_key_t key, other;
static const uint64_t now = 1764547200000ull;

static int open_text(const char *env, gw_relay_env_t *e)
{
    const char *why = NULL;
    int rc = gw_relay_open(&key, "shop.test", 0, now, env, strlen(env), e, &why);

    ASSERT(rc == 0 || why != NULL);
    return rc;
}

/* Seals frame for alice with key k at time ts; returns the envelope in a static buffer. */
static const char *sealed(const gw_relay_key_t *k, uint64_t ts, int db, const char *user,
                          const char *frame)
{
    static char out[8192];
    gw_sbuf_t b;

    gw_sbuf_init(&b, sizeof(out) - 1);
    gw_relay_seal(k, ts, 3, db, user, frame, strlen(frame), &b);
    ASSERT(!b.overflow);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    gw_sbuf_free(&b);
    return out;
}

#define FRAME(extra)                                                                               \
    "{\"op\":\"msg\",\"id\":\"42\",\"conv\":\"seller7@shop.test\",\"from\":\"seller7@shop.test\"," \
    "\"to\":\"alice@shop.test\",\"body\":\"hi\",\"kind\":\"text\",\"ts\":5,\"open\":false" extra   \
    "}"

int main(void)
{
    gw_relay_env_t e;
    char env[8192];

    ASSERT_EQ(gw_relay_key_derive(&key, "s3cret", 6), 0);
    ASSERT_EQ(gw_relay_key_derive(&other, "s3creT", 6), 0);

    /* Round trip. */
    ASSERT_EQ(open_text(sealed(&key, now, 0, "alice", FRAME("")), &e), 0);
    ASSERT_STR(e.user, "alice");
    ASSERT_EQ(e.node, 3);
    ASSERT_EQ(e.m.id, 42);
    ASSERT_EQ(e.m.ts, 5);
    ASSERT_STR(e.m.from, "seller7@shop.test");
    ASSERT_STR(e.m.kind, "text");
    ASSERT_EQ(e.m.body_len, 2);
    ASSERT(e.m.cid == NULL);
    gw_relay_env_free(&e);
    ASSERT_EQ(open_text(sealed(&key, now, 0, "alice", FRAME(",\"cid\":\"c1\"")), &e), 0);
    ASSERT_STR(e.m.cid, "c1");
    gw_relay_env_free(&e);

    /* Signature, age, database. */
    ASSERT_EQ(open_text(sealed(&other, now, 0, "alice", FRAME("")), &e), GW_EAUTH);
    ASSERT_EQ(open_text(sealed(&key, now - GW_RELAY_MAX_SKEW_MS - 1, 0, "alice", FRAME("")), &e),
              GW_EEXPIRED);
    ASSERT_EQ(open_text(sealed(&key, now + GW_RELAY_MAX_SKEW_MS + 1, 0, "alice", FRAME("")), &e),
              GW_EEXPIRED);
    ASSERT_EQ(open_text(sealed(&key, now, 7, "alice", FRAME("")), &e), GW_ENOTFOUND);
    ASSERT_EQ(open_text("imgw1 0 0 alice\n" FRAME(""), &e), GW_EAUTH);
    /* One flipped byte anywhere after the tag breaks the signature. */
    snprintf(env, sizeof(env), "%s", sealed(&key, now, 0, "alice", FRAME("")));
    env[strlen(env) - 3] ^= 1;
    ASSERT_EQ(open_text(env, &e), GW_EAUTH);

    /* Correctly signed, wrong inside. */
    {
        static const char *bad[] = {
            FRAME(",\"extra\":1"),
            FRAME(",\"recovered\":true"),
            FRAME(",\"cid\":\"\""),
            FRAME(",\"cid\":7"),
            "{\"op\":\"msg\"}",
            "{\"op\":\"msg\",\"id\":\"42\",\"conv\":\"x@shop.test\",\"from\":\"seller7@shop.test\","
            "\"to\":\"alice@shop.test\",\"body\":\"hi\",\"ts\":5}",
            "{\"op\":\"msg\",\"id\":\"42\",\"conv\":\"seller7@shop.test\",\"from\":\"seller7@shop."
            "test\",\"to\":\"bob@shop.test\",\"body\":\"hi\",\"ts\":5}",
            "{\"op\":\"msg\",\"id\":\"42\",\"conv\":\"seller7@shop.test\",\"from\":\"seller7@shop."
            "test\",\"to\":\"alice@shop.test.evil\",\"body\":\"hi\",\"ts\":5}",
            "{\"op\":\"msg\",\"id\":\"42\",\"conv\":\"a/b@shop.test\",\"from\":\"a/b@shop.test\","
            "\"to\":\"alice@shop.test\",\"body\":\"hi\",\"ts\":5}",
            "{\"op\":\"msg\",\"id\":\"0\",\"conv\":\"seller7@shop.test\",\"from\":\"seller7@shop."
            "test\",\"to\":\"alice@shop.test\",\"body\":\"hi\",\"ts\":5}",
            "{\"op\":\"msg\",\"id\":\"42\",\"conv\":\"seller7@shop.test\",\"from\":\"seller7@shop."
            "test\",\"to\":\"alice@shop.test\",\"body\":\"h\\u0000i\",\"ts\":5}",
            "{\"op\":\"msg\",\"id\":\"42\",\"conv\":\"seller7@shop.test\",\"from\":\"seller7@shop."
            "test\",\"to\":\"alice@shop.test\",\"body\":\"hi\",\"ts\":-1}",
            FRAME("") " x",
            "[1]",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            int rc = open_text(sealed(&key, now, 0, "alice", bad[i]), &e);
            if (rc != GW_EINVAL)
                fprintf(stderr, "accepted: %s\n", bad[i]);
            ASSERT_EQ(rc, GW_EINVAL);
        }
    }
    /* A bad user id in the header. */
    ASSERT_EQ(open_text(sealed(&key, now, 0, "../x", FRAME("")), &e), GW_EINVAL);
    ASSERT_EQ(open_text("", &e), GW_EINVAL);
    ASSERT_EQ(open_text("imgw2 ", &e), GW_EINVAL);
    /* Control envelopes: answers passed on to the asking gateway. */
    {
        char id[72], detail[48];
        int status = 1;
        gw_sbuf_t b;
        gw_sbuf_init(&b, 1024);
        gw_relay_seal_answer(&key, now, 1, 0, "reg-0-abcdef0123", 0, "created", &b);
        ASSERT(!b.overflow);
        ASSERT_EQ(gw_relay_open_answer(&key, 0, now + 1000, b.data, b.len, id, &status, detail), 0);
        ASSERT_STR(id, "reg-0-abcdef0123");
        ASSERT_EQ(status, 0);
        ASSERT_STR(detail, "created");
        ASSERT_EQ(gw_relay_open_answer(&other, 0, now, b.data, b.len, id, &status, detail),
                  GW_EAUTH);
        ASSERT_EQ(gw_relay_open_answer(&key, 1, now, b.data, b.len, id, &status, detail),
                  GW_ENOTFOUND);
        ASSERT_EQ(gw_relay_open_answer(&key, 0, now + 600000, b.data, b.len, id, &status, detail),
                  GW_EEXPIRED);
        b.data[b.len - 1] = 'X'; /* "createX": tampered */
        ASSERT_EQ(gw_relay_open_answer(&key, 0, now, b.data, b.len, id, &status, detail), GW_EAUTH);
        gw_sbuf_free(&b);
        gw_sbuf_init(&b, 1024);
        gw_relay_seal_answer(&key, now, 1, 0, "reg-0-<x>", 0, "created", &b);
        ASSERT_EQ(gw_relay_open_answer(&key, 0, now, b.data, b.len, id, &status, detail),
                  GW_EINVAL);
        gw_sbuf_free(&b);
        gw_sbuf_init(&b, 1024);
        gw_relay_seal_answer(&key, now, 1, 0, "reg-0-ab", -2, "item-not-found", &b);
        ASSERT_EQ(gw_relay_open_answer(&key, 0, now, b.data, b.len, id, &status, detail), 0);
        ASSERT_EQ(status, -2);
        ASSERT_STR(detail, "item-not-found");
        gw_sbuf_free(&b);
    }
    TASK_DONE();
}
