/*
 * main.c - the imgw daemon: command line, config, the loop and signals.
 */
#include "config.h"
#include "gw.h"
#include "log.h"
#include "metrics.h"
#include "router.h"
#include "store.h"
#include "ticket.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: imgw [--config FILE]          run the gateway\n"
            "       imgw --check-config FILE       validate FILE (and IMGW_* variables), print "
            "the effective settings\n"
            "       imgw --config FILE migrate     apply schema/ migrations to pg_conninfo\n"
            "       imgw --config FILE ticket USER [SECONDS]\n"
            "                                      print a ticket for USER valid SECONDS "
            "(default 3600)\n"
            "       imgw --version | --help\n"
            "\n"
            "Settings come from FILE ('key = value' lines) and IMGW_<KEY> environment\n"
            "variables, which win. See imgw.conf.example for every key.\n"
            "SIGHUP re-reads FILE and applies the settings that can change while running\n"
            "(see imgw(8)); SIGTERM drains and stops.\n");
}

typedef struct {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint, sighup;
    gw_router_t *router;
    gw_config_t *cfg;        /* shared by pointer with every module; reload edits it in place */
    const char *config_path; /* NULL: settings from the environment only */
    int stopping;
} app_t;

static void on_stopped(void *ud)
{
    app_t *a = ud;

    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sighup, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    app_t *a = h->data;

    if (a->stopping) {
        gw_warn("main", "second signal %d: exiting now", signum);
        exit(1);
    }
    a->stopping = 1;
    gw_info("main", "signal %d: shutting down", signum);
    gw_router_stop(a->router, on_stopped, a);
}

/*
 * Each browser session is a file descriptor. Raise the soft limit to the hard
 * one, and keep max_sessions under it with room for the other sockets and
 * files; libwebsockets then stops accepting at its own table limit instead of
 * spinning on EMFILE.
 */
#define FD_RESERVE 128

static void fit_fd_limit(gw_config_t *cfg)
{
    struct rlimit rl;
    rlim_t budget;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)cfg->max_sessions + FD_RESERVE)
        return;
    budget = rl.rlim_cur > FD_RESERVE * 2 ? rl.rlim_cur - FD_RESERVE : FD_RESERVE;
    gw_warn("main",
            "max_sessions %d does not fit the open-file limit %llu; using %llu (raise "
            "LimitNOFILE / ulimit -n)",
            cfg->max_sessions, (unsigned long long)rl.rlim_cur, (unsigned long long)budget);
    cfg->max_sessions = (int)budget;
    if (cfg->max_sessions_per_user > cfg->max_sessions)
        cfg->max_sessions_per_user = cfg->max_sessions;
}

/*
 * SIGHUP: re-read the file and apply what can change without a restart (see
 * gw_config_reload). Runs on the loop like everything else, so no module sees
 * a half-changed config; sessions are not touched.
 */
static void on_sighup(uv_signal_t *h, int signum)
{
    app_t *a = h->data;
    char err[512];
    int changed = 0;
    int rc;

    GW_UNUSED(signum);
    if (a->stopping)
        return;
    gw_info("main", "SIGHUP: reloading %s", a->config_path ? a->config_path : "(environment only)");
    rc = gw_config_reload(a->cfg, a->config_path, gw_now_ms() / 1000u, &changed, err, sizeof(err));
    if (rc != 0) {
        gw_metrics.reload_failures++;
        gw_error("main", "reload refused, nothing changed: %s", err);
        return;
    }
    gw_metrics.reloads++;
    gw_log_level = gw_log_level_parse(a->cfg->log_level);
    fit_fd_limit(a->cfg);
    gw_info("main", "reload done: %d setting(s) changed", changed);
}

static int run(gw_config_t *cfg, const char *config_path)
{
    app_t a;
    int rc;

    memset(&a, 0, sizeof(a));
    a.cfg = cfg;
    a.config_path = config_path;
    signal(SIGPIPE, SIG_IGN);
    fit_fd_limit(cfg);
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    uv_loop_init(&a.loop);
    rc = gw_router_start(&a.loop, cfg, &a.router);
    if (rc != 0) {
        gw_error("main", "cannot start: %s", gw_strerror(rc));
        return 1;
    }
    uv_signal_init(&a.loop, &a.sigterm);
    uv_signal_init(&a.loop, &a.sigint);
    uv_signal_init(&a.loop, &a.sighup);
    a.sigterm.data = a.sigint.data = a.sighup.data = &a;
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_signal_start(&a.sighup, on_sighup, SIGHUP);
    gw_info("main", "imgw %s started (mode %s, component %s, users at %s)", GW_VERSION, cfg->mode,
            cfg->component_domain,
            cfg->mode_value == GW_MODE_SAMEJID ? cfg->xmpp_domain : cfg->component_domain);
    uv_run(&a.loop, UV_RUN_DEFAULT);
    gw_router_free(a.router);
    rc = uv_loop_close(&a.loop);
    if (rc != 0)
        gw_warn("main", "event loop closed with handles open: %s", uv_strerror(rc));
    gw_info("main", "stopped");
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    int check = 0;
    int i;
    gw_config_t cfg;
    char err[512];
    int rc;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-v")) {
            printf("imgw %s\n", GW_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c")) && i + 1 < argc) {
            config_path = argv[++i];
        } else if (!strcmp(argv[i], "--check-config") && i + 1 < argc) {
            config_path = argv[++i];
            check = 1;
        } else if (!strcmp(argv[i], "ticket") || !strcmp(argv[i], "migrate")) {
            break;
        } else {
            fprintf(stderr, "imgw: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (gw_config_init(&cfg) != 0) {
        fprintf(stderr, "imgw: out of memory\n");
        return 1;
    }
    rc = gw_config_load(&cfg, config_path, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "imgw: configuration error: %s\n", err);
        gw_config_free(&cfg);
        return 2;
    }
    gw_log_level = gw_log_level_parse(cfg.log_level);
    if (check) {
        gw_config_dump(&cfg);
        printf("# configuration OK\n");
        gw_config_free(&cfg);
        return 0;
    }
    if (i < argc && !strcmp(argv[i], "migrate")) {
        if (cfg.pg_conninfo[0] == '\0') {
            fprintf(stderr, "imgw: migrate needs pg_conninfo\n");
            rc = 2;
        } else {
            rc = gw_store_migrate(cfg.pg_conninfo, cfg.schema_dir) == 0 ? 0 : 1;
            if (rc == 0)
                printf("schema up to date (%s)\n", cfg.schema_dir);
        }
        gw_config_free(&cfg);
        return rc;
    }
    if (i < argc && !strcmp(argv[i], "ticket")) {
        char ticket[200];
        long secs = i + 2 < argc ? atol(argv[i + 2]) : 3600;
        if (i + 1 >= argc || cfg.ticket_secret[0] == '\0' ||
            gw_ticket_make(argv[i + 1], gw_now_ms() / 1000u + (uint64_t)secs, cfg.ticket_secret,
                           ticket, sizeof(ticket)) != 0) {
            fprintf(stderr, "imgw: ticket needs a valid USER and a ticket_secret\n");
            gw_config_free(&cfg);
            return 2;
        }
        printf("%s\n", ticket);
        gw_config_free(&cfg);
        return 0;
    }
    rc = run(&cfg, config_path);
    gw_config_free(&cfg);
    return rc;
}
