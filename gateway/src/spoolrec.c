/*
 * spoolrec.c - spool records (format and rules in spoolrec.h).
 */
#include "spoolrec.h"
#include "gw.h"
#include "text.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <string.h>

void gw_spoolrec_encode(gw_sbuf_t *b, const gw_store_msg_t *m)
{
    const char *kind = m->kind ? m->kind : "text";

    gw_sbuf_printf(b, "{\"id\":\"%" PRIu64 "\",\"ts\":%" PRIu64 ",\"s\":", m->id, m->ts);
    gw_json_escape(b, m->sender, strlen(m->sender));
    gw_sbuf_puts(b, ",\"r\":");
    gw_json_escape(b, m->recipient, strlen(m->recipient));
    gw_sbuf_puts(b, ",\"b\":");
    gw_json_escape(b, m->body, strlen(m->body));
    gw_sbuf_puts(b, ",\"k\":");
    gw_json_escape(b, kind, strlen(kind));
    if (m->cid) {
        gw_sbuf_puts(b, ",\"c\":");
        gw_json_escape(b, m->cid, strlen(m->cid));
    }
    gw_sbuf_puts(b, ",\"st\":");
    gw_json_escape(b, m->stanza_id, strlen(m->stanza_id));
    gw_sbuf_puts(b, "}");
}

/*
 * The string member key: 1 and *out when present and a string without NUL,
 * 0 when absent, -1 when present but not such a string.
 */
static int get_str(json_object *o, const char *key, const char **out)
{
    json_object *v;
    const char *s;
    int n;

    if (!json_object_object_get_ex(o, key, &v))
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return -1;
    s = json_object_get_string(v);
    n = json_object_get_string_len(v);
    /* json-c keeps "\u0000" in the value; a C string would silently end there. */
    if (n < 0 || memchr(s, '\0', (size_t)n) != NULL)
        return -1;
    *out = s;
    return 1;
}

/* A decimal of 1..20 digits that fits 64 bits, without a leading zero. */
static int parse_u64(const char *s, uint64_t *out)
{
    size_t n = strlen(s);
    uint64_t v = 0;

    if (n == 0 || n > 20 || s[0] == '0')
        return GW_EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - d) / 10u)
            return GW_EINVAL;
        v = v * 10u + d;
    }
    *out = v;
    return 0;
}

int gw_spoolrec_parse(const char *line, size_t len, gw_spoolrec_t *rec, const char **why)
{
    json_tokener *tok;
    json_object *o, *v;
    const char *id = NULL;
    gw_store_msg_t *m = &rec->m;

    memset(rec, 0, sizeof(*rec));
    *why = "not one JSON object";
    if (len == 0 || len > INT32_MAX)
        return GW_EINVAL;
    tok = json_tokener_new_ex(4);
    if (tok == NULL) {
        *why = "out of memory";
        return GW_EINVAL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    o = json_tokener_parse_ex(tok, line, (int)len);
    if (o == NULL || json_tokener_get_error(tok) != json_tokener_success ||
        (size_t)json_tokener_get_parse_end(tok) != len ||
        !json_object_is_type(o, json_type_object)) {
        json_tokener_free(tok);
        json_object_put(o);
        return GW_EINVAL;
    }
    json_tokener_free(tok);
    rec->root_ = o;
    *why = "a required member is missing or not a string without NUL";
    if (get_str(o, "id", &id) != 1 || get_str(o, "s", &m->sender) != 1 ||
        get_str(o, "r", &m->recipient) != 1 || get_str(o, "b", &m->body) != 1 ||
        get_str(o, "st", &m->stanza_id) != 1 || get_str(o, "k", &m->kind) < 0 ||
        get_str(o, "c", &m->cid) < 0)
        goto fail;
    if (parse_u64(id, &m->id) != 0) {
        *why = "'id' is not a positive 64-bit decimal";
        goto fail;
    }
    if (!json_object_object_get_ex(o, "ts", &v) || !json_object_is_type(v, json_type_int) ||
        json_object_get_int64(v) < 0) {
        *why = "'ts' is not a non-negative integer";
        goto fail;
    }
    m->ts = (uint64_t)json_object_get_int64(v);
    if (m->kind == NULL)
        m->kind = "text";
    return 0;
fail:
    gw_spoolrec_free(rec);
    return GW_EINVAL;
}

void gw_spoolrec_free(gw_spoolrec_t *rec)
{
    if (rec->root_)
        json_object_put((json_object *)rec->root_);
    memset(rec, 0, sizeof(*rec));
}
