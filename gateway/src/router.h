/*
 * router.h - where a message goes next.
 *
 * The router owns the session registry and joins the front (browsers) to the
 * link (XMPP): it authenticates sessions, turns browser sends into XMPP
 * messages and fans XMPP messages out to every session of the recipient.
 * It is the only module that knows both sides.
 */
#ifndef GW_ROUTER_H
#define GW_ROUTER_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct gw_router gw_router_t;

typedef struct gw_router_stats {
    uint64_t sent;       /* browser sends accepted */
    uint64_t queued;     /* of which queued while the link was down */
    uint64_t refused;    /* sends refused (queue full, bad recipient) */
    uint64_t delivered;  /* XMPP messages delivered to at least one session */
    uint64_t frames_out; /* msg frames queued to sessions */
    uint64_t dropped;    /* XMPP messages for users without sessions */
    uint64_t retries;    /* sends repeated with a client id already seen */
    uint64_t in_refused; /* XMPP messages the store could not keep (not shown) */
    size_t sessions, users;
} gw_router_stats_t;

/*
 * Creates the router, its registry, the link and the front on loop, and
 * starts them. Returns 0, GW_EIO (cannot listen) or GW_ENOMEM.
 */
int gw_router_start(uv_loop_t *loop, const gw_config_t *cfg, gw_router_t **out);

/*
 * Closes browser sessions with 1001, waits up to drain_timeout_ms for accepted
 * sends to be routed by the XMPP server, then closes the XMPP stream; done(ud)
 * runs when finished. Sends still unconfirmed stay in the outbox journal.
 */
void gw_router_stop(gw_router_t *r, void (*done)(void *ud), void *ud);

/* Frees everything; call after the loop has run the stop to completion. */
void gw_router_free(gw_router_t *r);

void gw_router_get_stats(const gw_router_t *r, gw_router_stats_t *st);

/* The WebSocket port actually bound. */
int gw_router_port(const gw_router_t *r);

#endif
