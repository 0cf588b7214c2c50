/*
 * relay.c - placeholder: the relay is always disabled (see relay.h).
 * Replaced by the hiredis implementation.
 */
#include "relay.h"
#include "gw.h"

#include <stdlib.h>

struct gw_relay {
    int unused;
};

int gw_relay_new(uv_loop_t *loop, const gw_config_t *cfg, gw_relay_deliver_cb cb, void *ud,
                 gw_relay_t **out)
{
    GW_UNUSED(loop);
    GW_UNUSED(cfg);
    GW_UNUSED(cb);
    GW_UNUSED(ud);
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : GW_ENOMEM;
}

void gw_relay_user_here(gw_relay_t *r, const char *user, int here)
{
    GW_UNUSED(r);
    GW_UNUSED(user);
    GW_UNUSED(here);
}

void gw_relay_forward(gw_relay_t *r, const char *user, const char *frame, size_t len)
{
    GW_UNUSED(r);
    GW_UNUSED(user);
    GW_UNUSED(frame);
    GW_UNUSED(len);
}

void gw_relay_get_stats(const gw_relay_t *r, gw_relay_stats_t *st)
{
    GW_UNUSED(r);
    st->forwarded = st->received = st->errors = 0;
}

void gw_relay_stop(gw_relay_t *r)
{
    GW_UNUSED(r);
}

void gw_relay_free(gw_relay_t *r)
{
    free(r);
}
