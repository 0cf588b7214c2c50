/*
 * The outbox on its own: order of writes, writes again after a lost connection,
 * confirmation by mark, the journal surviving a "crash" (free without
 * confirming) and being emptied once everything is confirmed.
 */
#include "gw.h"
#include "outbox.h"
#include "task.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fake link: records what was written, can be up or down. */
static struct {
    int up;
    uint64_t mark;
    uint64_t ids[64];
    int n;
} link_;

static int fake_write(void *ud, const gw_outbox_msg_t *m, uint64_t *mark)
{
    (void)ud;
    if (!link_.up)
        return GW_ELINK;
    if (link_.n < 64)
        link_.ids[link_.n++] = m->id;
    *mark = ++link_.mark;
    return 0;
}

static gw_outbox_entry_t *add(gw_outbox_t *ob, uint64_t id, const char *body)
{
    gw_outbox_msg_t m = {0};

    m.id = id;
    m.ts = 1000 + id;
    m.user = "alice";
    m.to = "bob@shop.test";
    m.cid = "c1";
    m.kind = "text";
    m.body = (char *)body;
    m.body_len = strlen(body);
    return gw_outbox_add(ob, &m);
}

/* Bytes in all journal segments under dir/outbox. */
static long journal_bytes(const char *dir)
{
    char path[512];
    DIR *d;
    struct dirent *de;
    long total = 0;

    snprintf(path, sizeof(path), "%s/outbox", dir);
    d = opendir(path);
    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL) {
        struct stat sb;
        char f[1024];
        if (de->d_name[0] == '.')
            continue;
        snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
        if (stat(f, &sb) == 0)
            total += (long)sb.st_size;
    }
    closedir(d);
    return total;
}

static uint64_t replayed[16];
static int nreplayed;
static gw_outbox_t *replay_ob;

static void on_replay(void *ud, gw_outbox_entry_t *e, const gw_outbox_msg_t *m)
{
    (void)ud;
    if (nreplayed < 16)
        replayed[nreplayed++] = m->id;
    ASSERT_STR(m->user, "alice");
    ASSERT_STR(m->cid, "c1");
    gw_outbox_ready(replay_ob, e);
}

int main(void)
{
    char dir[] = "/tmp/imgw-outbox-test-XXXXXX";
    gw_outbox_t *ob;
    gw_outbox_entry_t *e[6];

    ASSERT(mkdtemp(dir) != NULL);

    /* Ready entries are written in order while up; none while down. */
    ASSERT_EQ(gw_outbox_new(dir, 0, 3, fake_write, NULL, &ob), 0);
    link_.up = 1;
    e[0] = add(ob, 1, "one");
    e[1] = add(ob, 2, "two \"quoted\" \\ \n\xc3\xa9");
    ASSERT(e[0] && e[1]);
    ASSERT_EQ(gw_outbox_len(ob), 2);
    ASSERT_EQ(gw_outbox_waiting(ob), 2);
    gw_outbox_ready(ob, e[0]);
    gw_outbox_ready(ob, e[1]);
    ASSERT_EQ(link_.n, 2);
    ASSERT_EQ(link_.ids[0], 1);
    ASSERT_EQ(link_.ids[1], 2);
    ASSERT_EQ(gw_outbox_waiting(ob), 0);
    ASSERT(journal_bytes(dir) > 0);

    /* Confirming mark 1 frees the first only. */
    gw_outbox_routed(ob, 1);
    ASSERT_EQ(gw_outbox_len(ob), 1);

    /* The link goes down: the written, unconfirmed one is written again first. */
    gw_outbox_link_down(ob);
    link_.up = 0;
    e[2] = add(ob, 3, "three");
    gw_outbox_ready(ob, e[2]);
    ASSERT_EQ(gw_outbox_waiting(ob), 2);
    ASSERT(!gw_outbox_full(ob));
    e[3] = add(ob, 4, "four");
    gw_outbox_ready(ob, e[3]);
    ASSERT(gw_outbox_full(ob));          /* 3 waiting: the bound */
    ASSERT(gw_outbox_is_waiting(ob, 2)); /* written before, waits again */
    ASSERT(gw_outbox_is_waiting(ob, 4));
    ASSERT(!gw_outbox_is_waiting(ob, 1)); /* confirmed and gone */
    link_.up = 1;
    link_.n = 0;
    gw_outbox_link_up(ob);
    ASSERT_EQ(link_.n, 3);
    ASSERT_EQ(link_.ids[0], 2);
    ASSERT_EQ(link_.ids[1], 3);
    ASSERT_EQ(link_.ids[2], 4);
    ASSERT(!gw_outbox_is_waiting(ob, 4)); /* written now */

    /* A refused send is forgotten; a crash (free) keeps the rest in the journal. */
    e[4] = add(ob, 5, "five");
    gw_outbox_cancel(ob, e[4]);
    ASSERT_EQ(gw_outbox_len(ob), 3);
    gw_outbox_free(ob);

    /* The next start replays 2, 3 and 4 (and 5: refusals are not journalled; 1 was done). */
    link_.n = 0;
    ASSERT_EQ(gw_outbox_new(dir, 1, 100, fake_write, NULL, &ob), 0);
    replay_ob = ob;
    gw_outbox_replay(ob, on_replay, NULL);
    ASSERT_EQ(nreplayed, 4);
    ASSERT_EQ(replayed[0], 2);
    ASSERT_EQ(replayed[1], 3);
    ASSERT_EQ(replayed[2], 4);
    ASSERT_EQ(replayed[3], 5);
    ASSERT_EQ(link_.n, 4);
    /* All confirmed: the journal is empty (old segment removed). */
    gw_outbox_routed(ob, link_.mark);
    ASSERT_EQ(gw_outbox_len(ob), 0);
    ASSERT_EQ(journal_bytes(dir), 0);
    gw_outbox_free(ob);

    /* Garbage in the journal is skipped, never fatal. */
    {
        char path[512];
        FILE *f;
        snprintf(path, sizeof(path), "%s/outbox/00000000000000ff.jsonl", dir);
        f = fopen(path, "w");
        ASSERT(f != NULL);
        if (f) {
            fputs(
                "not "
                "json\n{\"a\":{\"i\":\"x\"}}\n{\"a\":{\"i\":\"7\",\"t\":1,\"u\":\"a\",\"r\":\"b\","
                "\"k\":\"text\",\"b\":\"ok\"}}\n{\"a\":{\"i\":\"8\",\"t\":1,\"u\":\"a\\u0000x\","
                "\"r\":\"b\","
                "\"k\":\"text\",\"b\":\"nul\"}}\n{\"torn",
                f);
            fclose(f);
        }
        nreplayed = 0;
        ASSERT_EQ(gw_outbox_new(dir, 0, 100, fake_write, NULL, &ob), 0);
        ASSERT_EQ(gw_outbox_len(ob), 1); /* only id 7 */
        gw_outbox_free(ob);
    }

    {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        ASSERT_EQ(system(cmd), 0);
    }
    TASK_DONE();
}
