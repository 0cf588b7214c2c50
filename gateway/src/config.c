/*
 * config.c - the settings table and its parser.
 */
#include "config.h"
#include "gw.h"
#include "log.h"
#include "text.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_STR, T_INT, T_BOOL } ctype_t;

typedef struct {
    const char *name;
    ctype_t type;
    size_t offset;
    long min, max;   /* for T_INT */
    const char *def; /* default, as file text */
    int secret;      /* masked in dumps */
} centry_t;

#define O(f) offsetof(gw_config_t, f)

#ifndef IMGW_SCHEMA_DIR
#define IMGW_SCHEMA_DIR "/usr/local/share/imgw/schema"
#endif

static const centry_t table[] = {
    {"xmpp_host", T_STR, O(xmpp_host), 0, 0, "127.0.0.1", 0},
    {"xmpp_port", T_INT, O(xmpp_port), 1, 65535, "5275", 0},
    {"component_domain", T_STR, O(component_domain), 0, 0, "gw.localhost", 0},
    {"component_secret", T_STR, O(component_secret), 0, 0, "", 1},
    {"xmpp_domain", T_STR, O(xmpp_domain), 0, 0, "", 0},
    {"allow_multiple", T_BOOL, O(allow_multiple), 0, 1, "no", 0},
    {"mode", T_STR, O(mode), 0, 0, "samejid", 0},
    {"keepalive_s", T_INT, O(keepalive_s), 1, 300, "60", 0},
    {"reconnect_min_ms", T_INT, O(reconnect_min_ms), 10, 60000, "250", 0},
    {"reconnect_max_ms", T_INT, O(reconnect_max_ms), 100, 600000, "30000", 0},
    {"handshake_timeout_ms", T_INT, O(handshake_timeout_ms), 100, 120000, "10000", 0},
    {"link_queue_max", T_INT, O(link_queue_max), 0, 10000000, "10000", 0},
    {"listen_host", T_STR, O(listen_host), 0, 0, "127.0.0.1", 0},
    {"listen_port", T_INT, O(listen_port), 0, 65535, "8480", 0},
    {"ticket_secret", T_STR, O(ticket_secret), 0, 0, "", 1},
    {"dev_mode", T_BOOL, O(dev_mode), 0, 1, "no", 0},
    {"allowed_origins", T_STR, O(allowed_origins), 0, 0, "", 0},
    {"allow_no_origin", T_BOOL, O(allow_no_origin), 0, 1, "yes", 0},
    {"allowed_domains", T_STR, O(allowed_domains), 0, 0, "", 0},
    {"web_root", T_STR, O(web_root), 0, 0, "", 0},
    {"max_frame_bytes", T_INT, O(max_frame_bytes), 256, 16777216, "16384", 0},
    {"max_body_bytes", T_INT, O(max_body_bytes), 1, 1048576, "8192", 0},
    {"max_sessions", T_INT, O(max_sessions), 1, 10000000, "100000", 0},
    {"max_sessions_per_user", T_INT, O(max_sessions_per_user), 1, 10000, "16", 0},
    {"session_queue_max", T_INT, O(session_queue_max), 4, 1000000, "512", 0},
    {"auth_timeout_ms", T_INT, O(auth_timeout_ms), 100, 600000, "10000", 0},
    {"rx_buffer_bytes", T_INT, O(rx_buffer_bytes), 128, 1048576, "1024", 0},
    {"pg_conninfo", T_STR, O(pg_conninfo), 0, 0, "", 1},
    {"schema_dir", T_STR, O(schema_dir), 0, 0, IMGW_SCHEMA_DIR, 0},
    {"pg_migrate", T_BOOL, O(pg_migrate), 0, 1, "yes", 0},
    {"spool_dir", T_STR, O(spool_dir), 0, 0, "", 0},
    {"spool_max_bytes", T_INT, O(spool_max_bytes), 0, 2000000000, "104857600", 0},
    {"store_queue_max", T_INT, O(store_queue_max), 1, 10000000, "100000", 0},
    {"store_batch_max", T_INT, O(store_batch_max), 1, 10000, "1000", 0},
    {"store_writers", T_INT, O(store_writers), 1, 8, "2", 0},
    {"redis_host", T_STR, O(redis_host), 0, 0, "", 0},
    {"redis_port", T_INT, O(redis_port), 1, 65535, "6379", 0},
    {"redis_db", T_INT, O(redis_db), 0, 1000, "0", 0},
    {"redis_user", T_STR, O(redis_user), 0, 0, "", 0},
    {"redis_password", T_STR, O(redis_password), 0, 0, "", 1},
    {"relay_secret", T_STR, O(relay_secret), 0, 0, "", 1},
    {"cache_ttl_s", T_INT, O(cache_ttl_s), 1, 100000000, "604800", 0},
    {"cache_recent", T_INT, O(cache_recent), 0, 1000, "50", 0},
    {"node_id", T_INT, O(node_id), 0, 1023, "0", 0},
    {"log_level", T_STR, O(log_level), 0, 0, "info", 0},
    /* HTTP transports */
    {"upload_dir", T_STR, O(upload_dir), 0, 0, "", 0},
    {"upload_max_bytes", T_INT, O(upload_max_bytes), 1024, 104857600, "5242880", 0},
    {"public_url", T_STR, O(public_url), 0, 0, "", 0},
    {"sockjs_client_url", T_STR, O(sockjs_client_url), 0, 0, "/client/sockjs.min.js", 0},
    {"http_session_idle_s", T_INT, O(http_session_idle_s), 5, 3600, "60", 0},
};

static const centry_t *find(const char *key)
{
    for (size_t i = 0; i < GW_ARRAY_SIZE(table); i++)
        if (strcmp(table[i].name, key) == 0)
            return &table[i];
    return NULL;
}

static int parse_bool(const char *v, int *out)
{
    if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "1")) {
        *out = 1;
        return 0;
    }
    if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off") || !strcmp(v, "0")) {
        *out = 0;
        return 0;
    }
    return -1;
}

int gw_config_set(gw_config_t *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    const centry_t *e = find(key);
    char *base = (char *)cfg;

    if (e == NULL) {
        snprintf(err, errlen, "unknown key '%s'", key);
        return GW_EINVAL;
    }
    switch (e->type) {
    case T_STR: {
        char **slot = (char **)(void *)(base + e->offset);
        char *copy = strdup(value);
        if (copy == NULL)
            return GW_ENOMEM;
        free(*slot);
        *slot = copy;
        return 0;
    }
    case T_INT: {
        char *end;
        long v;
        errno = 0;
        v = strtol(value, &end, 10);
        if (errno || end == value || *end != '\0') {
            snprintf(err, errlen, "key '%s': '%s' is not an integer", key, value);
            return GW_EINVAL;
        }
        if (v < e->min || v > e->max) {
            snprintf(err, errlen, "key '%s': %ld is outside %ld..%ld", key, v, e->min, e->max);
            return GW_EINVAL;
        }
        *(int *)(void *)(base + e->offset) = (int)v;
        return 0;
    }
    case T_BOOL: {
        int b;
        if (parse_bool(value, &b) != 0) {
            snprintf(err, errlen, "key '%s': '%s' is not yes/no", key, value);
            return GW_EINVAL;
        }
        *(int *)(void *)(base + e->offset) = b;
        return 0;
    }
    }
    return GW_EINVAL;
}

int gw_config_init(gw_config_t *cfg)
{
    char err[128];

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < GW_ARRAY_SIZE(table); i++) {
        int rc = gw_config_set(cfg, table[i].name, table[i].def, err, sizeof(err));
        if (rc != 0)
            return rc;
    }
    return 0;
}

static char *trim(char *s)
{
    char *end;

    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

static int load_file(gw_config_t *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int lineno = 0;
    int rc = 0;

    if (f == NULL) {
        snprintf(err, errlen, "cannot open config file '%s': %s", path, strerror(errno));
        return GW_EINVAL;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *p, *eq, *key, *value;
        char sub[256];

        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            snprintf(err, errlen, "%s:%d: line too long", path, lineno);
            rc = GW_EINVAL;
            break;
        }
        p = trim(line);
        if (*p == '\0' || *p == '#')
            continue;
        eq = strchr(p, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "%s:%d: expected 'key = value'", path, lineno);
            rc = GW_EINVAL;
            break;
        }
        *eq = '\0';
        key = trim(p);
        value = trim(eq + 1);
        /* Allow optional double quotes around a value with spaces. */
        if (value[0] == '"' && strlen(value) >= 2 && value[strlen(value) - 1] == '"') {
            value[strlen(value) - 1] = '\0';
            value++;
        }
        rc = gw_config_set(cfg, key, value, sub, sizeof(sub));
        if (rc != 0) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, sub);
            break;
        }
    }
    fclose(f);
    return rc;
}

static int load_env(gw_config_t *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < GW_ARRAY_SIZE(table); i++) {
        char name[96] = "IMGW_";
        size_t n = strlen(name);
        const char *v;

        for (const char *k = table[i].name; *k && n + 1 < sizeof(name); k++)
            name[n++] = (char)toupper((unsigned char)*k);
        name[n] = '\0';
        v = getenv(name);
        if (v != NULL) {
            char sub[256];
            int rc = gw_config_set(cfg, table[i].name, v, sub, sizeof(sub));
            if (rc != 0) {
                snprintf(err, errlen, "environment %s: %s", name, sub);
                return rc;
            }
        }
    }
    return 0;
}

static int is_loopback(const char *host)
{
    return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0;
}

int gw_config_validate(gw_config_t *cfg, char *err, size_t errlen)
{
    if (strcmp(cfg->mode, "component") == 0)
        cfg->mode_value = GW_MODE_COMPONENT;
    else if (strcmp(cfg->mode, "samejid") == 0)
        cfg->mode_value = GW_MODE_SAMEJID;
    else {
        snprintf(err, errlen, "key 'mode': '%s' is not 'component' or 'samejid'", cfg->mode);
        return GW_EINVAL;
    }
    if (gw_log_level_parse(cfg->log_level) < 0) {
        snprintf(err, errlen, "key 'log_level': '%s' is not debug, info, warning, error or none",
                 cfg->log_level);
        return GW_EINVAL;
    }
    if (cfg->component_domain[0] == '\0' || strchr(cfg->component_domain, '@') ||
        strchr(cfg->component_domain, '/')) {
        snprintf(err, errlen, "key 'component_domain': '%s' is not a domain",
                 cfg->component_domain);
        return GW_EINVAL;
    }
    if (cfg->component_secret[0] == '\0') {
        snprintf(err, errlen, "key 'component_secret': must be set (the XEP-0114 shared secret)");
        return GW_EINVAL;
    }
    if (cfg->xmpp_domain[0] == '\0') {
        /* Default: the component domain without its first label. */
        const char *dot = strchr(cfg->component_domain, '.');
        char *d = strdup(dot ? dot + 1 : cfg->component_domain);
        if (d == NULL)
            return GW_ENOMEM;
        free(cfg->xmpp_domain);
        cfg->xmpp_domain = d;
    }
    if (cfg->dev_mode && !is_loopback(cfg->listen_host)) {
        snprintf(err, errlen,
                 "key 'dev_mode': development mode accepts any user without a ticket and is "
                 "refused unless listen_host is a loopback address (it is '%s')",
                 cfg->listen_host);
        return GW_EINVAL;
    }
    if (!cfg->dev_mode && strlen(cfg->ticket_secret) < 16) {
        snprintf(err, errlen,
                 "key 'ticket_secret': must hold at least 16 characters unless dev_mode is on");
        return GW_EINVAL;
    }
    if (cfg->reconnect_max_ms < cfg->reconnect_min_ms) {
        snprintf(err, errlen, "key 'reconnect_max_ms': smaller than reconnect_min_ms");
        return GW_EINVAL;
    }
    if (cfg->max_body_bytes > cfg->max_frame_bytes) {
        snprintf(err, errlen, "key 'max_body_bytes': larger than max_frame_bytes");
        return GW_EINVAL;
    }
    if (gw_domain_list_check(cfg->allowed_domains, err, errlen) != 0)
        return GW_EINVAL;
    if (cfg->relay_secret[0] != '\0' && strlen(cfg->relay_secret) < 16) {
        snprintf(err, errlen,
                 "key 'relay_secret': must hold at least 16 characters (or be empty "
                 "to derive it from component_secret)");
        return GW_EINVAL;
    }
    if (cfg->redis_user[0] != '\0' && cfg->redis_password[0] == '\0') {
        snprintf(err, errlen, "key 'redis_user': needs redis_password");
        return GW_EINVAL;
    }
    if (cfg->max_sessions_per_user > cfg->max_sessions) {
        snprintf(err, errlen, "key 'max_sessions_per_user': larger than max_sessions");
        return GW_EINVAL;
    }
    return 0;
}

int gw_config_load(gw_config_t *cfg, const char *path, char *err, size_t errlen)
{
    int rc;

    if (path != NULL && (rc = load_file(cfg, path, err, errlen)) != 0)
        return rc;
    if ((rc = load_env(cfg, err, errlen)) != 0)
        return rc;
    return gw_config_validate(cfg, err, errlen);
}

void gw_config_dump(const gw_config_t *cfg)
{
    const char *base = (const char *)cfg;

    for (size_t i = 0; i < GW_ARRAY_SIZE(table); i++) {
        const centry_t *e = &table[i];
        switch (e->type) {
        case T_STR: {
            const char *v = *(char *const *)(const void *)(base + e->offset);
            printf("%s = %s\n", e->name, e->secret && v[0] ? "********" : v);
            break;
        }
        case T_INT:
            printf("%s = %d\n", e->name, *(const int *)(const void *)(base + e->offset));
            break;
        case T_BOOL:
            printf("%s = %s\n", e->name,
                   *(const int *)(const void *)(base + e->offset) ? "yes" : "no");
            break;
        }
    }
}

void gw_config_free(gw_config_t *cfg)
{
    char *base = (char *)cfg;

    for (size_t i = 0; i < GW_ARRAY_SIZE(table); i++)
        if (table[i].type == T_STR) {
            char **slot = (char **)(void *)(base + table[i].offset);
            free(*slot);
            *slot = NULL;
        }
}
