/*
 * relay.h - routing between gateways through Redis.
 *
 * Several gateways can share one component domain (allow_multiple): the XMPP
 * server then hands each of them a share of the inbound stanzas, so a
 * message can reach a gateway that holds none of the recipient's browsers.
 * The relay keeps a shared directory (user -> node ids of the gateways that
 * hold a session of the user) and forwards such messages to those gateways
 * over Redis pub/sub, where they are pushed like local ones. Its two
 * connections are redisconn.c's; hiredis is included only by redisconn.c,
 * cache.c and relay.c.
 *
 * Keys and channels (prefix "imgw:"):
 *   imgw:where:{user}   SET of node ids with a session of user; refreshed
 *                       while the user has sessions here, expires otherwise
 *   imgw:node:{id}      pub/sub channel of gateway node_id = id
 */
#ifndef GW_RELAY_H
#define GW_RELAY_H

#include "config.h"

#include <stddef.h>
#include <uv.h>

typedef struct gw_relay gw_relay_t;

/*
 * A frame forwarded by another gateway for user (a user id of ours). frame
 * (a msg frame, JSON text, len bytes) is valid until the callback returns.
 */
typedef void (*gw_relay_deliver_cb)(void *ud, const char *user, const char *frame, size_t len);

/*
 * Creates the relay on loop. Disabled (every call a no-op) when redis_host is
 * empty. Connects in the background and reconnects; while Redis is down,
 * forwarding is skipped (the message is still stored and recovered by the
 * recipient later). Returns 0 or GW_ENOMEM.
 */
int gw_relay_new(uv_loop_t *loop, const gw_config_t *cfg, gw_relay_deliver_cb cb, void *ud,
                 gw_relay_t **out);

/* user has a first session here (here = 1) or no session any more (here = 0). */
void gw_relay_user_here(gw_relay_t *r, const char *user, int here);

/*
 * A message for user arrived here but user has no session here: forward the
 * encoded msg frame to the other gateways that hold a session of user.
 */
void gw_relay_forward(gw_relay_t *r, const char *user, const char *frame, size_t len);

typedef struct gw_relay_stats {
    uint64_t forwarded, received, errors;
} gw_relay_stats_t;
void gw_relay_get_stats(const gw_relay_t *r, gw_relay_stats_t *st);

/* Closes the connections; handles close when the loop runs. Then gw_relay_free(). */
void gw_relay_stop(gw_relay_t *r);
void gw_relay_free(gw_relay_t *r);

#endif
