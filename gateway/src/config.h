/*
 * config.h - the gateway's settings: one table, one file, environment overrides.
 *
 * Every key has a type, bounds and a default in config.c's table. The file
 * holds "key = value" lines and '#' comments; the environment variable
 * IMGW_<KEY> (upper case) overrides the file. Validation happens once, at
 * start-up, and every error names the key.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stddef.h>

typedef enum { GW_MODE_COMPONENT = 0, GW_MODE_SAMEJID = 1 } gw_mode_t;

typedef struct gw_config {
    /* XMPP component link */
    char *xmpp_host;
    int xmpp_port;
    char *component_domain;
    char *component_secret;
    char *xmpp_domain;
    int allow_multiple;
    char *mode;
    int keepalive_s;
    int reconnect_min_ms;
    int reconnect_max_ms;
    int handshake_timeout_ms;
    int link_queue_max;
    /* browser front */
    char *listen_host;
    int listen_port;
    char *ticket_secret;
    int dev_mode;
    char *allowed_origins;
    int allow_no_origin;
    char *allowed_domains; /* where web users may send; "" = xmpp_domain and component_domain */
    char *web_root;
    int max_frame_bytes;
    int max_body_bytes;
    int max_sessions;
    int max_sessions_per_user;
    int session_queue_max;
    int auth_timeout_ms;
    int rx_buffer_bytes;
    /* history (PostgreSQL) */
    char *pg_conninfo;
    char *schema_dir;
    int pg_migrate;
    char *spool_dir;
    int spool_max_bytes;
    int store_queue_max;
    int store_batch_max;
    int store_writers;
    /* hot state (Redis) */
    char *redis_host;
    int redis_port;
    int redis_db;
    char *redis_user;     /* Redis 6+ ACL user for AUTH; "" = the default user */
    char *redis_password; /* AUTH password; "" = no AUTH */
    char *relay_secret;   /* signs relay envelopes; "" = derived from component_secret */
    int cache_ttl_s;
    int cache_recent;
    /* misc */
    int node_id;
    char *log_level;
    /* HTTP transports */
    char *upload_dir;
    int upload_max_bytes;
    char *public_url;
    char *sockjs_client_url;
    int http_session_idle_s;

    gw_mode_t mode_value; /* derived from mode */
} gw_config_t;

/*
 * Fills cfg with the defaults. Call gw_config_free() afterwards.
 * Returns 0 or GW_ENOMEM.
 */
int gw_config_init(gw_config_t *cfg);

/*
 * Reads "key = value" lines from path (NULL: no file) and then the
 * environment, and validates the result. On failure returns GW_EINVAL and
 * writes a message naming the key (and file line) into err.
 */
int gw_config_load(gw_config_t *cfg, const char *path, char *err, size_t errlen);

/* Sets one key from text, as a file line would. GW_EINVAL with err on failure. */
int gw_config_set(gw_config_t *cfg, const char *key, const char *value, char *err, size_t errlen);

/* Cross-key checks (dev mode on loopback only, secrets present...). */
int gw_config_validate(gw_config_t *cfg, char *err, size_t errlen);

/* Writes every key and its effective value (secrets masked) to stdout. */
void gw_config_dump(const gw_config_t *cfg);

void gw_config_free(gw_config_t *cfg);

#endif
