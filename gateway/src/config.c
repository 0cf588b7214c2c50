/*
 * config.c - the settings table and its parser.
 */
#include "config.h"
#include "gw.h"
#include "log.h"
#include "text.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { T_STR, T_INT, T_BOOL } ctype_t;

typedef struct {
    const char *name;
    ctype_t type;
    size_t offset;
    long min, max;   /* for T_INT */
    const char *def; /* default, as file text */
    int secret;      /* masked in dumps and logs */
    int reload;      /* 1: changes on SIGHUP; 0: needs a restart */
} centry_t;

#define O(f) offsetof(gw_config_t, f)

#ifndef IMGW_SCHEMA_DIR
#define IMGW_SCHEMA_DIR "/usr/local/share/imgw/schema"
#endif

static const centry_t table[] = {
    {"xmpp_host", T_STR, O(xmpp_host), 0, 0, "127.0.0.1", 0, 0},
    {"xmpp_port", T_INT, O(xmpp_port), 1, 65535, "5275", 0, 0},
    {"component_domain", T_STR, O(component_domain), 0, 0, "gw.localhost", 0, 0},
    {"component_secret", T_STR, O(component_secret), 0, 0, "", 1, 0},
    {"xmpp_domain", T_STR, O(xmpp_domain), 0, 0, "", 0, 0},
    {"allow_multiple", T_BOOL, O(allow_multiple), 0, 1, "no", 0, 0},
    {"mode", T_STR, O(mode), 0, 0, "samejid", 0, 0},
    {"keepalive_s", T_INT, O(keepalive_s), 1, 300, "60", 0, 0},
    {"reconnect_min_ms", T_INT, O(reconnect_min_ms), 10, 60000, "250", 0, 1},
    {"reconnect_max_ms", T_INT, O(reconnect_max_ms), 100, 600000, "30000", 0, 1},
    {"handshake_timeout_ms", T_INT, O(handshake_timeout_ms), 100, 120000, "10000", 0, 0},
    {"link_queue_max", T_INT, O(link_queue_max), 0, 10000000, "10000", 0, 1},
    {"companion_v1", T_BOOL, O(companion_v1), 0, 1, "yes", 0, 0},
    {"companion_lease_s", T_INT, O(companion_lease_s), 5, 300, "30", 0, 0},
    {"drain_timeout_ms", T_INT, O(drain_timeout_ms), 0, 600000, "5000", 0, 0},
    {"listen_host", T_STR, O(listen_host), 0, 0, "127.0.0.1", 0, 0},
    {"listen_port", T_INT, O(listen_port), 0, 65535, "8480", 0, 0},
    {"ticket_secret", T_STR, O(ticket_secret), 0, 0, "", 1, 1},
    {"ticket_secret_overlap_s", T_INT, O(ticket_secret_overlap_s), 0, 604800, "3600", 0, 1},
    {"dev_mode", T_BOOL, O(dev_mode), 0, 1, "no", 0, 0},
    {"allowed_origins", T_STR, O(allowed_origins), 0, 0, "", 0, 1},
    {"allow_no_origin", T_BOOL, O(allow_no_origin), 0, 1, "yes", 0, 1},
    {"allowed_domains", T_STR, O(allowed_domains), 0, 0, "", 0, 0},
    {"web_root", T_STR, O(web_root), 0, 0, "", 0, 0},
    {"max_frame_bytes", T_INT, O(max_frame_bytes), 256, 16777216, "16384", 0, 0},
    {"max_body_bytes", T_INT, O(max_body_bytes), 1, 1048576, "8192", 0, 0},
    {"max_sessions", T_INT, O(max_sessions), 1, 10000000, "100000", 0, 1},
    {"max_sessions_per_user", T_INT, O(max_sessions_per_user), 1, 10000, "16", 0, 1},
    {"session_queue_max", T_INT, O(session_queue_max), 4, 1000000, "512", 0, 1},
    {"auth_timeout_ms", T_INT, O(auth_timeout_ms), 100, 600000, "10000", 0, 1},
    {"rx_buffer_bytes", T_INT, O(rx_buffer_bytes), 128, 1048576, "1024", 0, 0},
    {"pg_conninfo", T_STR, O(pg_conninfo), 0, 0, "", 1, 0},
    {"schema_dir", T_STR, O(schema_dir), 0, 0, IMGW_SCHEMA_DIR, 0, 0},
    {"pg_migrate", T_BOOL, O(pg_migrate), 0, 1, "yes", 0, 0},
    {"spool_dir", T_STR, O(spool_dir), 0, 0, "", 0, 0},
    {"spool_max_bytes", T_INT, O(spool_max_bytes), 0, 2000000000, "104857600", 0, 1},
    {"store_queue_max", T_INT, O(store_queue_max), 1, 10000000, "100000", 0, 1},
    {"store_batch_max", T_INT, O(store_batch_max), 1, 10000, "1000", 0, 1},
    {"store_writers", T_INT, O(store_writers), 1, 8, "2", 0, 0},
    {"redis_host", T_STR, O(redis_host), 0, 0, "", 0, 0},
    {"redis_port", T_INT, O(redis_port), 1, 65535, "6379", 0, 0},
    {"redis_db", T_INT, O(redis_db), 0, 1000, "0", 0, 0},
    {"redis_user", T_STR, O(redis_user), 0, 0, "", 0, 0},
    {"redis_password", T_STR, O(redis_password), 0, 0, "", 1, 0},
    {"relay_secret", T_STR, O(relay_secret), 0, 0, "", 1, 0},
    {"cache_ttl_s", T_INT, O(cache_ttl_s), 1, 100000000, "604800", 0, 0},
    {"cache_recent", T_INT, O(cache_recent), 0, 1000, "50", 0, 0},
    {"node_id", T_INT, O(node_id), 0, 1023, "0", 0, 0},
    {"log_level", T_STR, O(log_level), 0, 0, "info", 0, 1},
    /* HTTP transports */
    {"upload_dir", T_STR, O(upload_dir), 0, 0, "", 0, 0},
    {"upload_max_bytes", T_INT, O(upload_max_bytes), 1024, 104857600, "5242880", 0, 1},
    {"public_url", T_STR, O(public_url), 0, 0, "", 0, 0},
    {"sockjs_client_url", T_STR, O(sockjs_client_url), 0, 0, "/sockjs/sockjs.min.js", 0, 0},
    {"http_session_idle_s", T_INT, O(http_session_idle_s), 5, 3600, "60", 0, 1},
    {"sockjs_client_file", T_STR, O(sockjs_client_file), 0, 0, "", 0, 0},
    {"max_post_bytes", T_INT, O(max_post_bytes), 1024, 16777216, "1048576", 0, 0},
    {"sockjs_response_limit", T_INT, O(sockjs_response_limit), 4096, 16777216, "131072", 0, 0},
    {"max_pending_sessions", T_INT, O(max_pending_sessions), 1, 10000000, "10000", 0, 0},
    {"max_pending_per_addr", T_INT, O(max_pending_per_addr), 1, 10000000, "256", 0, 0},
    {"client_address_header", T_STR, O(client_address_header), 0, 0, "", 0, 0},
    {"upload_rate_per_min", T_INT, O(upload_rate_per_min), 1, 100000, "10", 0, 0},
    {"upload_expiry_hours", T_INT, O(upload_expiry_hours), 0, 876000, "720", 0, 0},
    {"upload_user_bytes_per_day", T_INT, O(upload_user_bytes_per_day), 1024, 2000000000,
     "104857600", 0, 0},
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

/*
 * Parsed, never matched by prefix: "127.0.0.1.nip.io" is a name that resolves
 * anywhere. "localhost" is taken by its exact name (RFC 6761 reserves it).
 */
static int is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (strcmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return 0;
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
    if (cfg->client_address_header[0] &&
        strcasecmp(cfg->client_address_header, "x-forwarded-for") != 0 &&
        strcasecmp(cfg->client_address_header, "x-real-ip") != 0) {
        snprintf(err, errlen,
                 "key 'client_address_header': '%s' is not 'x-forwarded-for' or 'x-real-ip'",
                 cfg->client_address_header);
        return GW_EINVAL;
    }
    if (cfg->max_post_bytes < cfg->max_frame_bytes) {
        snprintf(err, errlen, "key 'max_post_bytes': smaller than max_frame_bytes");
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
    free(cfg->ticket_secret_prev);
    cfg->ticket_secret_prev = NULL;
}

/* ---- reload (SIGHUP) ------------------------------------------------------- */

int gw_config_reloadable(const char *key)
{
    const centry_t *e = find(key);

    return e == NULL ? -1 : e->reload;
}

static int same_value(const gw_config_t *a, const gw_config_t *b, const centry_t *e)
{
    const char *pa = (const char *)a + e->offset, *pb = (const char *)b + e->offset;

    if (e->type == T_STR)
        return strcmp(*(char *const *)(const void *)pa, *(char *const *)(const void *)pb) == 0;
    return *(const int *)(const void *)pa == *(const int *)(const void *)pb;
}

/* Value of e in cfg as text for a log line; secrets never appear. */
static const char *value_text(const gw_config_t *cfg, const centry_t *e, char *buf, size_t len)
{
    const char *p = (const char *)cfg + e->offset;

    if (e->secret)
        return "********";
    if (e->type == T_STR)
        return *(char *const *)(const void *)p;
    if (e->type == T_BOOL)
        return *(const int *)(const void *)p ? "yes" : "no";
    snprintf(buf, len, "%d", *(const int *)(const void *)p);
    return buf;
}

/* Copies the value of e from src into dst (strings duplicated). 0 or GW_ENOMEM. */
static int copy_value(gw_config_t *dst, const gw_config_t *src, const centry_t *e)
{
    char *pd = (char *)dst + e->offset;
    const char *ps = (const char *)src + e->offset;

    if (e->type == T_STR) {
        char *copy = strdup(*(char *const *)(const void *)ps);
        char **slot = (char **)(void *)pd;
        if (copy == NULL)
            return GW_ENOMEM;
        free(*slot);
        *slot = copy;
    } else {
        *(int *)(void *)pd = *(const int *)(const void *)ps;
    }
    return 0;
}

int gw_config_reload(gw_config_t *live, const char *path, unsigned long long now_s, int *changed,
                     char *err, size_t errlen)
{
    gw_config_t next, merged;
    int nchanged = 0;
    int rc;

    if (changed != NULL)
        *changed = 0;
    /* Both are freed at the end whatever happens; init leaves them freeable on failure. */
    rc = gw_config_init(&next);
    if (rc == 0)
        rc = gw_config_init(&merged);
    else
        memset(&merged, 0, sizeof(merged));
    if (rc != 0) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    /* The file must be valid by itself: it is what the next restart will load. */
    if (path != NULL && (rc = load_file(&next, path, err, errlen)) != 0)
        goto done;
    if ((rc = load_env(&next, err, errlen)) != 0)
        goto done;
    if ((rc = gw_config_validate(&next, err, errlen)) != 0)
        goto done;
    /*
     * And what live would become must be valid too: the new values of the
     * reloadable keys with the values live keeps for the others. The file alone
     * is not enough: one that turns dev_mode on and empties ticket_secret is
     * valid by itself, but dev_mode needs a restart, so live would be left with
     * dev_mode off and an empty secret (anyone could sign tickets).
     */
    for (size_t i = 0; i < GW_ARRAY_SIZE(table); i++)
        if ((rc = copy_value(&merged, table[i].reload ? &next : live, &table[i])) != 0) {
            snprintf(err, errlen, "out of memory");
            goto done;
        }
    if ((rc = gw_config_validate(&merged, err, errlen)) != 0)
        goto done;

    for (size_t i = 0; i < GW_ARRAY_SIZE(table); i++) {
        const centry_t *e = &table[i];
        char a[24], b[24];
        if (same_value(live, &next, e))
            continue;
        if (!e->reload) {
            gw_warn("config", "reload: '%s' changed (%s -> %s) but needs a restart; keeping %s",
                    e->name, value_text(live, e, a, sizeof(a)), value_text(&next, e, b, sizeof(b)),
                    value_text(live, e, a, sizeof(a)));
            continue;
        }
        gw_info("config", "reload: '%s' %s -> %s", e->name, value_text(live, e, a, sizeof(a)),
                value_text(&merged, e, b, sizeof(b)));
        nchanged++;
    }
    /* Nothing can fail from here on: move the new values into live in place. */
    if (strcmp(live->ticket_secret, merged.ticket_secret) != 0) {
        char *old = live->ticket_secret;
        live->ticket_secret = merged.ticket_secret;
        merged.ticket_secret = NULL;
        free(live->ticket_secret_prev);
        live->ticket_secret_prev = NULL;
        live->ticket_secret_prev_until = 0;
        if (merged.ticket_secret_overlap_s > 0) {
            live->ticket_secret_prev = old;
            live->ticket_secret_prev_until =
                now_s + (unsigned long long)merged.ticket_secret_overlap_s;
            gw_info("config",
                    "reload: tickets signed with the previous ticket_secret pass for %d s",
                    merged.ticket_secret_overlap_s);
        } else {
            free(old);
            gw_info("config", "reload: tickets signed with the previous ticket_secret are refused "
                              "from now on (ticket_secret_overlap_s = 0)");
        }
    }
    for (size_t i = 0; i < GW_ARRAY_SIZE(table); i++) {
        const centry_t *e = &table[i];
        if (!e->reload || e->offset == offsetof(gw_config_t, ticket_secret))
            continue;
        if (e->type == T_STR) {
            char **sl = (char **)(void *)((char *)live + e->offset);
            char **sm = (char **)(void *)((char *)&merged + e->offset);
            char *t = *sl;
            *sl = *sm;
            *sm = t;
        } else {
            *(int *)(void *)((char *)live + e->offset) =
                *(const int *)(const void *)((const char *)&merged + e->offset);
        }
    }
    if (changed != NULL)
        *changed = nchanged;
done:
    gw_config_free(&next);
    gw_config_free(&merged);
    return rc;
}
