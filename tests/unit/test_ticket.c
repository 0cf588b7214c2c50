#include "gw.h"
#include "task.h"
#include "ticket.h"

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
    ASSERT_EQ(gw_ticket_verify("", secret, 0, user, sizeof(user)), GW_EINVAL);
    ASSERT_EQ(gw_ticket_verify("a:b:c", secret, 0, user, sizeof(user)), GW_EINVAL);
    ASSERT_EQ(
        gw_ticket_verify("a b:1:0000000000000000000000000000000000000000000000000000000000000000",
                         secret, 0, user, sizeof(user)),
        GW_EINVAL);
    TASK_DONE();
}
