#include "gw.h"
#include "msgid.h"
#include "task.h"

#include <inttypes.h>

int main(void)
{
    gw_msgid_key_t key, other;
    gw_msgid_gen_t g = {0};
    char sid[GW_MSGID_STANZA_MAX], forged[96];
    uint64_t now = 1764547200123ull; /* 2025-12-01T00:00:00.123Z */
    uint64_t a, b;

    /* Generation: increasing, node in the middle bits, ts recoverable. */
    g.node = 5;
    a = gw_msgid_next(&g, now);
    b = gw_msgid_next(&g, now);
    ASSERT(b > a);
    ASSERT_EQ((a >> 12) & 1023u, 5);
    ASSERT_EQ(gw_msgid_ts(a), now);
    ASSERT_EQ(gw_msgid_ts(b), now);
    /* A clock stepping back does not make ids go back. */
    ASSERT(gw_msgid_next(&g, now - 1000) > b);
    /* 4096 ids in one millisecond borrow the next one. */
    {
        gw_msgid_gen_t h = {0};
        uint64_t last = 0, id = 0;
        for (int i = 0; i < 5000; i++) {
            id = gw_msgid_next(&h, now);
            ASSERT(id > last);
            last = id;
        }
        ASSERT_EQ(gw_msgid_ts(id), now + 1);
    }
    ASSERT(gw_msgid_next(&g, 0) > 0); /* before the epoch: clamped, still valid */

    ASSERT_EQ(gw_msgid_key_derive(&key, "s3cret", 6), 0);
    ASSERT_EQ(gw_msgid_key_derive(&other, "s3creT", 6), 0);

    /* Sign and verify round trip. */
    ASSERT_EQ(gw_msgid_sign(&key, a, "alice@shop.test", "c1", sid, sizeof(sid)), 0);
    ASSERT_EQ(gw_msgid_verify(&key, sid, strlen(sid), "alice@shop.test", "c1"), a);
    /* Bound to the sender, the origin-id and the key. */
    ASSERT_EQ(gw_msgid_verify(&key, sid, strlen(sid), "bob@shop.test", "c1"), 0);
    ASSERT_EQ(gw_msgid_verify(&key, sid, strlen(sid), "alice@shop.test", "c2"), 0);
    ASSERT_EQ(gw_msgid_verify(&key, sid, strlen(sid), "alice@shop.test", NULL), 0);
    ASSERT_EQ(gw_msgid_verify(&other, sid, strlen(sid), "alice@shop.test", "c1"), 0);
    /* Without an origin-id. */
    ASSERT_EQ(gw_msgid_sign(&key, a, "alice@shop.test", NULL, sid, sizeof(sid)), 0);
    ASSERT_EQ(gw_msgid_verify(&key, sid, strlen(sid), "alice@shop.test", NULL), a);
    ASSERT_EQ(gw_msgid_verify(&key, sid, strlen(sid), "alice@shop.test", ""), a);

    /* The id part cannot be changed under the tag. */
    ASSERT_EQ(gw_msgid_sign(&key, a, "alice@shop.test", "c1", sid, sizeof(sid)), 0);
    snprintf(forged, sizeof(forged), "%" PRIu64 "%s", a + 1, strchr(sid, '.'));
    ASSERT_EQ(gw_msgid_verify(&key, forged, strlen(forged), "alice@shop.test", "c1"), 0);
    snprintf(forged, sizeof(forged), "0%s", sid);
    ASSERT_EQ(gw_msgid_verify(&key, forged, strlen(forged), "alice@shop.test", "c1"), 0);
    /* A truncated length is not the whole id. */
    ASSERT_EQ(gw_msgid_verify(&key, sid, strlen(sid) - 1, "alice@shop.test", "c1"), 0);

    /* What an outsider sends: plain numbers, the attack ids of issue 9, junk. */
    {
        static const char *bad[] = {"77",
                                    "4242",
                                    "9000000000000000000",
                                    "9000000000000000000.000000000000000000000000",
                                    "",
                                    ".",
                                    "1.",
                                    ".abc",
                                    "18446744073709551615.000000000000000000000000",
                                    "99999999999999999999.000000000000000000000000"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            ASSERT_EQ(gw_msgid_verify(&key, bad[i], strlen(bad[i]), "alice@shop.test", NULL), 0);
    }
    ASSERT_EQ(gw_msgid_verify(&key, NULL, 0, "alice@shop.test", NULL), 0);

    /* Bounds. */
    ASSERT_EQ(gw_msgid_sign(&key, 0, "a@b", NULL, sid, sizeof(sid)), GW_EINVAL);
    ASSERT_EQ(gw_msgid_sign(&key, (uint64_t)INT64_MAX + 1, "a@b", NULL, sid, sizeof(sid)),
              GW_EINVAL);
    ASSERT_EQ(gw_msgid_sign(&key, (uint64_t)INT64_MAX, "a@b", NULL, sid, sizeof(sid)), 0);
    ASSERT_EQ(strlen(sid), GW_MSGID_STANZA_MAX - 1);
    ASSERT_EQ(gw_msgid_sign(&key, a, "a@b", NULL, sid, 20), GW_ERANGE);
    TASK_DONE();
}
