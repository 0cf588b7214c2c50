/*
 * cache.c - placeholder: the cache is always disabled (see cache.h).
 * Replaced by the hiredis implementation.
 */
#include "cache.h"
#include "gw.h"

#include <stdlib.h>

struct gw_cache {
    int unused;
};

int gw_cache_new(uv_loop_t *loop, const gw_config_t *cfg, gw_cache_t **out)
{
    GW_UNUSED(loop);
    GW_UNUSED(cfg);
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : GW_ENOMEM;
}

int gw_cache_is_up(const gw_cache_t *c)
{
    GW_UNUSED(c);
    return 0;
}

void gw_cache_on_message(gw_cache_t *c, const gw_cache_msg_t *m, const char *conv_key)
{
    GW_UNUSED(c);
    GW_UNUSED(m);
    GW_UNUSED(conv_key);
}

void gw_cache_mark_read(gw_cache_t *c, const char *user, const char *peer)
{
    GW_UNUSED(c);
    GW_UNUSED(user);
    GW_UNUSED(peer);
}

void gw_cache_web_user(gw_cache_t *c, const char *user, int online)
{
    GW_UNUSED(c);
    GW_UNUSED(user);
    GW_UNUSED(online);
}

void gw_cache_get_chats(gw_cache_t *c, const char *user, size_t limit, gw_cache_chats_cb cb,
                        void *ud)
{
    GW_UNUSED(c);
    GW_UNUSED(user);
    GW_UNUSED(limit);
    cb(ud, GW_ENOTFOUND, NULL, 0);
}

void gw_cache_put_chats(gw_cache_t *c, const char *user, const gw_chat_t *chats, size_t n)
{
    GW_UNUSED(c);
    GW_UNUSED(user);
    GW_UNUSED(chats);
    GW_UNUSED(n);
}

void gw_cache_get_stats(const gw_cache_t *c, gw_cache_stats_t *st)
{
    GW_UNUSED(c);
    st->hits = st->misses = st->errors = st->writes = 0;
}

void gw_cache_stop(gw_cache_t *c) { GW_UNUSED(c); }

void gw_cache_free(gw_cache_t *c) { free(c); }
