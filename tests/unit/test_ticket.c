#include "gw.h"
#include "task.h"
#include "ticket.h"

/* hex of gw_hmac_sha256(key, msg) */
static const char *hmac_hex(const void *key, size_t keylen, const char *msg, size_t len)
{
    static char hex[65];
    unsigned char mac[32];

    if (gw_hmac_sha256(key, keylen, msg, len, mac) != 0)
        return "error";
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    return hex;
}

int main(void)
{
    char t[200], user[80];
    const char *secret = "0123456789abcdef-secret";

    ASSERT_EQ(gw_ticket_make("alice", 2000, secret, t, sizeof(t)), 0);
    ASSERT_EQ(gw_ticket_verify(t, secret, 1999, user, sizeof(user)), 0);
    ASSERT_STR(user, "alice");
    ASSERT_EQ(gw_ticket_verify(t, secret, 2001, user, sizeof(user)), GW_EEXPIRED);
    ASSERT_EQ(gw_ticket_verify(t, "another-secret-xxxx", 1999, user, sizeof(user)), GW_EAUTH);
    /* Forged: same MAC, different user or expiry. */
    {
        char forged[260];
        snprintf(forged, sizeof(forged), "mallory%s", t + 5);
        ASSERT_EQ(gw_ticket_verify(forged, secret, 1999, user, sizeof(user)), GW_EAUTH);
        snprintf(forged, sizeof(forged), "%s", t);
        forged[7] = '9'; /* expiry 2000 -> 2900 */
        ASSERT_EQ(gw_ticket_verify(forged, secret, 1999, user, sizeof(user)), GW_EAUTH);
    }
    /* Known answer: HMAC-SHA256("k", "u:1") computed independently with openssl(1). */
    ASSERT_EQ(gw_ticket_make("u", 1, "k", t, sizeof(t)), 0);
    ASSERT_STR(t, "u:1:3cefb51e943c9bb7027ea5c6d6d15f2862ecf72865c20b2f43a18922730e2bf8");
    /* RFC 4231 test cases 1, 2 and 6 (a key longer than the block is hashed first). */
    {
        unsigned char k20[20], k131[131];
        const char *big = "Test Using Larger Than Block-Size Key - Hash Key First";

        memset(k20, 0x0b, sizeof(k20));
        memset(k131, 0xaa, sizeof(k131));
        ASSERT_STR(hmac_hex(k20, sizeof(k20), "Hi There", 8),
                   "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        ASSERT_STR(hmac_hex("Jefe", 4, "what do ya want for nothing?", 28),
                   "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        ASSERT_STR(hmac_hex(k131, sizeof(k131), big, strlen(big)),
                   "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
        /* An empty message and an empty key are valid too. */
        ASSERT_STR(hmac_hex("", 0, "", 0),
                   "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    }
    ASSERT_EQ(gw_ticket_verify("", secret, 0, user, sizeof(user)), GW_EINVAL);
    ASSERT_EQ(gw_ticket_verify("a:b:c", secret, 0, user, sizeof(user)), GW_EINVAL);
    ASSERT_EQ(
        gw_ticket_verify("a b:1:0000000000000000000000000000000000000000000000000000000000000000",
                         secret, 0, user, sizeof(user)),
        GW_EINVAL);
    TASK_DONE();
}
