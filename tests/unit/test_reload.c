/*
 * Unit tests of the SIGHUP reload (config.c) and of ticket verification
 * across a secret rotation (ticket.c).
 */
#include "config.h"
#include "gw.h"
#include "log.h"
#include "task.h"
#include "ticket.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char path[] = "/tmp/imgw-test-reload-XXXXXX";

static void write_file(const char *text)
{
    FILE *f = fopen(path, "w");

    fputs(text, f);
    fclose(f);
}

#define BASE                                                                                       \
    "component_secret = s\ncomponent_domain = gw.shop.test\nlisten_port = 9000\n"                  \
    "ticket_secret = 0123456789abcdef-old\n"

int main(void)
{
    gw_config_t cfg;
    char err[512];
    char t_old[200], t_new[200], user[72];
    const char *origins_before;
    int changed = -1;
    int fd;

    gw_log_level = GW_LOG_NONE;
    unsetenv("IMGW_LISTEN_PORT");
    unsetenv("IMGW_TICKET_SECRET");
    fd = mkstemp(path);
    close(fd);

    write_file(BASE "max_sessions = 100\nallowed_origins = https://a.test\n");
    gw_config_init(&cfg);
    ASSERT_EQ(gw_config_load(&cfg, path, err, sizeof(err)), 0);
    ASSERT_EQ(cfg.ticket_secret_overlap_s, 3600);
    ASSERT(gw_ticket_make("alice", 2000, "0123456789abcdef-old", t_old, sizeof(t_old)) == 0);
    ASSERT(gw_ticket_make("alice", 2000, "0123456789abcdef-new", t_new, sizeof(t_new)) == 0);
    ASSERT_EQ(gw_ticket_verify_cfg(&cfg, t_old, 1000, user, sizeof(user)), 0);
    ASSERT_EQ(gw_ticket_verify_cfg(&cfg, t_new, 1000, user, sizeof(user)), GW_EAUTH);

    /* Reloadable keys change in place; a key that needs a restart does not. */
    write_file(BASE "max_sessions = 50\nallowed_origins = https://b.test\nlog_level = debug\n"
                    "listen_port = 9001\nticket_secret = 0123456789abcdef-new\n"
                    "ticket_secret_overlap_s = 600\n");
    ASSERT_EQ(gw_config_reload(&cfg, path, 1000, &changed, err, sizeof(err)), 0);
    ASSERT_EQ(changed, 5);
    ASSERT_EQ(cfg.max_sessions, 50);
    ASSERT_STR(cfg.allowed_origins, "https://b.test");
    ASSERT_STR(cfg.log_level, "debug");
    ASSERT_EQ(cfg.listen_port, 9000);
    ASSERT_STR(cfg.ticket_secret, "0123456789abcdef-new");
    ASSERT_STR(cfg.ticket_secret_prev, "0123456789abcdef-old");
    ASSERT_EQ(cfg.ticket_secret_prev_until, 1600);

    /* Both secrets pass inside the overlap window, only the new one after it. */
    ASSERT_EQ(gw_ticket_verify_cfg(&cfg, t_new, 1599, user, sizeof(user)), 0);
    ASSERT_EQ(gw_ticket_verify_cfg(&cfg, t_old, 1599, user, sizeof(user)), 0);
    ASSERT_STR(user, "alice");
    ASSERT_EQ(gw_ticket_verify_cfg(&cfg, t_old, 1600, user, sizeof(user)), GW_EAUTH);
    ASSERT_EQ(gw_ticket_verify_cfg(&cfg, t_new, 1600, user, sizeof(user)), 0);
    /* An expired old-secret ticket says expired, like any expired ticket. */
    ASSERT_EQ(gw_ticket_verify_cfg(&cfg, t_old, 1599 + 0, user, sizeof(user)), 0);
    {
        char t_exp[200];
        gw_ticket_make("bob", 1200, "0123456789abcdef-old", t_exp, sizeof(t_exp));
        ASSERT_EQ(gw_ticket_verify_cfg(&cfg, t_exp, 1300, user, sizeof(user)), GW_EEXPIRED);
    }

    /* A bad file changes nothing, and says which key. */
    origins_before = cfg.allowed_origins;
    write_file(BASE "max_sessions = 7\nallowed_origins = https://c.test\nmax_sessions_per_user = "
                    "oops\n");
    ASSERT(gw_config_reload(&cfg, path, 1100, &changed, err, sizeof(err)) != 0);
    ASSERT(strstr(err, "max_sessions_per_user") != NULL);
    ASSERT_EQ(cfg.max_sessions, 50);
    ASSERT(cfg.allowed_origins == origins_before);
    ASSERT_STR(cfg.ticket_secret, "0123456789abcdef-new");

    /* Valid keys but invalid together (per user above the total): refused whole. */
    write_file(BASE "max_sessions = 10\nmax_sessions_per_user = 11\n");
    ASSERT(gw_config_reload(&cfg, path, 1100, NULL, err, sizeof(err)) != 0);
    ASSERT(strstr(err, "max_sessions_per_user") != NULL);
    ASSERT_EQ(cfg.max_sessions, 50);

    /*
     * dev_mode needs a restart: a file that turns it on and drops the ticket
     * secret is valid by itself, but would leave this non-dev gateway with an
     * empty secret. Refused.
     */
    write_file("component_secret = s\ncomponent_domain = gw.shop.test\nlisten_port = 9000\n"
               "dev_mode = yes\nticket_secret =\n");
    ASSERT(gw_config_reload(&cfg, path, 1100, NULL, err, sizeof(err)) != 0);
    ASSERT(strstr(err, "ticket_secret") != NULL);
    ASSERT_STR(cfg.ticket_secret, "0123456789abcdef-new");
    ASSERT_EQ(cfg.dev_mode, 0);

    /* A missing file is refused too. */
    {
        char gone[] = "/tmp/imgw-test-reload-gone";
        unlink(gone);
        ASSERT(gw_config_reload(&cfg, gone, 1100, NULL, err, sizeof(err)) != 0);
        ASSERT_EQ(cfg.max_sessions, 50);
    }

    /* A second rotation with overlap 0: the previous secret stops at once. */
    write_file(BASE "ticket_secret = 0123456789abcdef-third\nticket_secret_overlap_s = 0\n");
    ASSERT_EQ(gw_config_reload(&cfg, path, 1200, &changed, err, sizeof(err)), 0);
    ASSERT(cfg.ticket_secret_prev == NULL);
    ASSERT_EQ(gw_ticket_verify_cfg(&cfg, t_new, 1201, user, sizeof(user)), GW_EAUTH);
    /* Back to defaults for max_sessions etc.: reloading the same file changes nothing. */
    ASSERT_EQ(gw_config_reload(&cfg, path, 1300, &changed, err, sizeof(err)), 0);
    ASSERT_EQ(changed, 0);

    ASSERT_EQ(gw_config_reloadable("log_level"), 1);
    ASSERT_EQ(gw_config_reloadable("listen_port"), 0);
    ASSERT_EQ(gw_config_reloadable("dev_mode"), 0);
    ASSERT_EQ(gw_config_reloadable("nope"), -1);

    gw_config_free(&cfg);
    unlink(path);
    TASK_DONE();
}
