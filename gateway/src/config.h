/*
 * config.h - the gateway's settings: one table, one file, environment overrides.
 *
 * Every key has a type, bounds and a default in config.c's table. The file
 * holds "key = value" lines and '#' comments; the environment variable
 * IMGW_<KEY> (upper case) overrides the file. Validation happens at start-up
 * and again on every reload (SIGHUP, gw_config_reload), and every error names
 * the key.
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
    int companion_v1;      /* use companion protocol version 1 when the server offers it */
    int companion_lease_s; /* version-1 lease; heartbeats every third of it */
    int drain_timeout_ms;  /* at shutdown, how long to wait for unconfirmed sends */
    /* browser front */
    char *listen_host;
    int listen_port;
    char *ticket_secret;
    int ticket_secret_overlap_s;
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
    char *sockjs_client_file; /* served at /sockjs/sockjs.min.js; "" = the installed copy */
    int http_session_idle_s;
    int max_post_bytes;            /* a SockJS POST or framed WebSocket message (many messages) */
    int sockjs_response_limit;     /* bytes a SockJS streaming response carries before it ends */
    int max_pending_sessions;      /* not yet authenticated, all transports */
    int max_pending_per_addr;      /* the same, per client address */
    char *client_address_header;   /* "", "x-forwarded-for" or "x-real-ip" (behind a proxy) */
    int upload_rate_per_min;       /* uploads per user per minute */
    int upload_user_bytes_per_day; /* bytes per user per 24 h */
    int upload_expiry_hours;       /* stored files older than this are removed; 0 = never */

    gw_mode_t mode_value; /* derived from mode */

    /*
     * Run-time state kept by gw_config_reload(), not settings: after a reload
     * that changed ticket_secret, the secret it replaced (owned, or NULL) and
     * the Unix time in seconds until which tickets signed with it still pass
     * (see gw_ticket_verify_cfg()).
     */
    char *ticket_secret_prev;
    unsigned long long ticket_secret_prev_until;
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

/*
 * SIGHUP: re-reads path (NULL: no file) and the environment into a fresh
 * config and validates it completely, together with the values live keeps
 * for the keys that need a restart. Only if that passes are the reloadable
 * keys (gw_config_reloadable()) copied into live, in place, and each change
 * logged by name; a changed key that needs a restart is logged by name and
 * left as it is. A changed ticket_secret keeps the one it replaces in
 * live->ticket_secret_prev, accepted until now_s + ticket_secret_overlap_s.
 *
 * On failure returns GW_EINVAL (or GW_ENOMEM) with err naming the key, and
 * live is unchanged. Returns 0 otherwise; *changed (if not NULL) receives the
 * number of reloadable keys that changed. Strings in live that were replaced
 * are freed: callers must not keep pointers into live's strings across a
 * reload (the modules read cfg->... when they need a value).
 */
int gw_config_reload(gw_config_t *live, const char *path, unsigned long long now_s, int *changed,
                     char *err, size_t errlen);

/* 1 if key can change on SIGHUP, 0 if it needs a restart, -1 if unknown. */
int gw_config_reloadable(const char *key);

void gw_config_free(gw_config_t *cfg);

#endif
