#include "config.h"
#include "gw.h"
#include "task.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int load_text(const char *text, gw_config_t *cfg, char *err, size_t errlen)
{
    char path[] = "/tmp/imgw-test-config-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    int rc;

    fputs(text, f);
    fclose(f);
    gw_config_init(cfg);
    rc = gw_config_load(cfg, path, err, errlen);
    unlink(path);
    return rc;
}

int main(void)
{
    gw_config_t cfg;
    char err[512];

    unsetenv("IMGW_LISTEN_PORT");
    ASSERT_EQ(
        load_text(
            "# comment\ncomponent_secret = s\ndev_mode = yes\ncomponent_domain = gw.shop.test\n",
            &cfg, err, sizeof(err)),
        0);
    ASSERT_STR(cfg.xmpp_domain, "shop.test");
    ASSERT_EQ(cfg.listen_port, 8480);
    ASSERT_EQ(cfg.dev_mode, 1);
    gw_config_free(&cfg);

    ASSERT(load_text("component_secret = s\nbogus = 1\n", &cfg, err, sizeof(err)) != 0);
    ASSERT(strstr(err, "bogus") != NULL);
    ASSERT(strstr(err, ":2:") != NULL);
    gw_config_free(&cfg);

    ASSERT(load_text("listen_port = 70000\n", &cfg, err, sizeof(err)) != 0);
    ASSERT(strstr(err, "listen_port") != NULL);
    gw_config_free(&cfg);

    /* Development mode is refused off loopback. */
    ASSERT(load_text("component_secret = s\ndev_mode = yes\nlisten_host = 0.0.0.0\n", &cfg, err,
                     sizeof(err)) != 0);
    ASSERT(strstr(err, "dev_mode") != NULL);
    gw_config_free(&cfg);

    /* Without dev mode a ticket secret is required. */
    ASSERT(load_text("component_secret = s\n", &cfg, err, sizeof(err)) != 0);
    ASSERT(strstr(err, "ticket_secret") != NULL);
    gw_config_free(&cfg);

    /* The environment overrides the file. */
    setenv("IMGW_LISTEN_PORT", "9999", 1);
    ASSERT_EQ(load_text("component_secret = s\ndev_mode = yes\nlisten_port = 1234\n", &cfg, err,
                        sizeof(err)),
              0);
    ASSERT_EQ(cfg.listen_port, 9999);
    gw_config_free(&cfg);
    setenv("IMGW_LISTEN_PORT", "x", 1);
    ASSERT(load_text("component_secret = s\ndev_mode = yes\n", &cfg, err, sizeof(err)) != 0);
    ASSERT(strstr(err, "IMGW_LISTEN_PORT") != NULL);
    gw_config_free(&cfg);
    unsetenv("IMGW_LISTEN_PORT");
    TASK_DONE();
}
