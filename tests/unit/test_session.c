#include "gw.h"
#include "session.h"
#include "task.h"

int main(void)
{
    gw_registry_t *r;
    static gw_session_t s[3000];
    char name[32];

    ASSERT_EQ(gw_registry_new(&r), 0);
    ASSERT_EQ(gw_registry_attach(r, &s[0], "alice", 2), 1);
    ASSERT_EQ(gw_registry_attach(r, &s[1], "alice", 2), 0);
    ASSERT_EQ(gw_registry_attach(r, &s[2], "alice", 2), GW_ELIMIT);
    ASSERT(s[2].user == NULL);
    ASSERT_EQ(gw_registry_find(r, "alice")->nsessions, 2);
    ASSERT(gw_registry_find(r, "bob") == NULL);
    ASSERT_EQ(gw_registry_detach(r, &s[0]), 0);
    ASSERT_EQ(gw_registry_detach(r, &s[1]), 1);
    ASSERT(gw_registry_find(r, "alice") == NULL);
    ASSERT_EQ(gw_registry_detach(r, &s[2]), 0);
    /* Enough users to grow the table; every one is still found. */
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof(name), "u%d", i);
        ASSERT_EQ(gw_registry_attach(r, &s[i], name, 4), 1);
    }
    ASSERT_EQ(gw_registry_user_count(r), 3000);
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof(name), "u%d", i);
        ASSERT(gw_registry_find(r, name) == s[i].user);
    }
    for (int i = 0; i < 3000; i++)
        gw_registry_detach(r, &s[i]);
    ASSERT_EQ(gw_registry_session_count(r), 0);
    gw_registry_free(r);
    TASK_DONE();
}
