/*
 * libFuzzer target: the component link's stanza handling (link.c) on XML parsed by
 * the link's stream reader (xmlstream.c), without a socket (gw_link_handle_xml). What reaches the
 * router must be well-formed: JIDs and body present and NUL-terminated, body_len its length.
 */
#include "config.h"
#include "gw.h"
#include "link.h"
#include "log.h"
#include "msgid.h"
#include "text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t loop;
static gw_config_t cfg;
static gw_link_t *link_;
static gw_msgid_key_t key;

static void on_up(void *ud)
{
    (void)ud;
}

static void on_down(void *ud)
{
    (void)ud;
}

/* What the router does first with a message: the same checks, on fuzzed input. */
static void on_message(void *ud, const gw_link_msg_t *m)
{
    char bare[512];

    (void)ud;
    if (m->from == NULL || m->to == NULL || m->body == NULL || m->kind == NULL ||
        strlen(m->body) != m->body_len || m->body_len == 0)
        abort();
    (void)gw_utf8_valid(m->body, m->body_len);
    if (gw_jid_bare(m->from, bare, sizeof(bare)) == 0 && m->id != NULL)
        (void)gw_msgid_verify(&key, m->id, strlen(m->id), bare, m->origin_id);
    (void)gw_jid_bare(m->to, bare, sizeof(bare));
}

static void on_routed(void *ud, uint64_t mark)
{
    (void)ud;
    (void)mark;
}

static void list_web_users(void *ud, gw_link_t *l)
{
    (void)ud;
    gw_link_web_list(l, "alice");
}

static void on_foreign_answer(void *ud, int node, const char *id, int status, const char *detail)
{
    (void)ud;
    (void)status;
    if (node < 0 || node > 1023 || id == NULL ||
        (strncmp(id, "reg-", 4) != 0 && strncmp(id, "st-", 3) != 0) ||
        (status != 0 && detail == NULL))
        abort();
}

static int setup(void)
{
    static const gw_link_cbs_t cbs = {on_up,     on_down,        on_message,
                                      on_routed, list_web_users, on_foreign_answer};
    char err[256];

    gw_log_level = GW_LOG_NONE; /* the handlers' warnings would drown the fuzzer's output */
    uv_loop_init(&loop);
    if (gw_config_init(&cfg) != 0 ||
        gw_config_set(&cfg, "component_secret", "fuzz", err, sizeof(err)) != 0 ||
        gw_config_set(&cfg, "ticket_secret", "fuzz-ticket-secret-0123", err, sizeof(err)) != 0 ||
        gw_config_set(&cfg, "mode", "samejid", err, sizeof(err)) != 0 ||
        gw_config_set(&cfg, "xmpp_domain", "shop.test", err, sizeof(err)) != 0 ||
        gw_config_set(&cfg, "component_domain", "gw.shop.test", err, sizeof(err)) != 0 ||
        gw_config_validate(&cfg, err, sizeof(err)) != 0)
        return -1;
    gw_msgid_key_derive(&key, "fuzz", 4);
    return gw_link_new(&loop, &cfg, &cbs, NULL, &link_);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (link_ == NULL && setup() != 0)
        abort();
    (void)gw_link_handle_xml(link_, (const char *)data, size);
    return 0;
}
