/*
 * proto.c - JSON frames. json-c parses; encoding is done by hand into a
 * bounded buffer because every encoded frame is small and of a fixed shape.
 */
#include "proto.h"
#include "gw.h"
#include "text.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <string.h>

#define ENC_LIMIT (4u * 1024u * 1024u)

/*
 * A string value read with its length. json-c keeps an escaped "\u0000" in
 * the value, so a C string would silently end there ("app1\u0000@evil" would
 * read as "app1"); a string holding a NUL is refused instead. Sets *bad for
 * a value that is not such a string; returns NULL for one that is absent.
 */
static const char *str_value(json_object *v, int *bad, size_t *len)
{
    const char *s = json_object_get_string(v);
    int n = json_object_get_string_len(v);

    if (!json_object_is_type(v, json_type_string) || n < 0 || memchr(s, '\0', (size_t)n)) {
        *bad = 1;
        return NULL;
    }
    if (len)
        *len = (size_t)n;
    return s;
}

static const char *get_str(json_object *root, const char *key, int *bad, size_t *len)
{
    json_object *v;

    if (!json_object_object_get_ex(root, key, &v) || json_object_is_type(v, json_type_null))
        return NULL;
    return str_value(v, bad, len);
}

static int only_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return 0;
    return 1;
}

static int cid_ok(const char *cid)
{
    size_t n = strlen(cid);

    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)cid[i];
        if (c < 0x21 || c > 0x7e)
            return 0;
    }
    return 1;
}

int gw_proto_parse(const char *data, size_t len, size_t max_body, gw_frame_t *f, const char **code,
                   const char **reason, char *cid_buf, size_t cid_len)
{
    json_tokener *tok;
    json_object *root, *v;
    const char *op;
    int bad = 0;

    memset(f, 0, sizeof(*f));
    if (cid_buf && cid_len)
        cid_buf[0] = '\0';
    if (len > INT32_MAX) {
        *code = "bad_json";
        *reason = "frame too large";
        return GW_EINVAL;
    }
    tok = json_tokener_new_ex(16);
    if (tok == NULL) {
        *code = "bad_json";
        *reason = "out of memory";
        return GW_EINVAL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    root = json_tokener_parse_ex(tok, data, (int)len);
    if (root == NULL || json_tokener_get_error(tok) != json_tokener_success ||
        !only_space(data + json_tokener_get_parse_end(tok),
                    len - json_tokener_get_parse_end(tok))) {
        json_tokener_free(tok);
        json_object_put(root);
        *code = "bad_json";
        *reason = "the frame is not one well-formed JSON value";
        return GW_EINVAL;
    }
    json_tokener_free(tok);
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        *code = "bad_json";
        *reason = "the frame is not a JSON object";
        return GW_EINVAL;
    }
    f->root_ = root;

    f->cid = get_str(root, "cid", &bad, NULL);
    if (f->cid && cid_ok(f->cid) && cid_buf && cid_len > strlen(f->cid))
        memcpy(cid_buf, f->cid, strlen(f->cid) + 1);

    op = get_str(root, "op", &bad, NULL);
    if (op == NULL) {
        *code = "bad_frame";
        *reason = "missing string member 'op'";
        goto fail;
    }
    if (bad) {
        /* 'cid' was not a string, or held a NUL. */
        *code = "bad_frame";
        *reason = "'cid' must be 1-64 printable ASCII characters";
        goto fail;
    }
    if (strcmp(op, "hello") == 0) {
        f->op = GW_OP_HELLO;
        if (json_object_object_get_ex(root, "v", &v)) {
            if (!json_object_is_type(v, json_type_int)) {
                *code = "bad_frame";
                *reason = "'v' must be an integer";
                goto fail;
            }
            f->v = json_object_get_int(v);
        }
        f->ticket = get_str(root, "ticket", &bad, NULL);
        f->user = get_str(root, "user", &bad, NULL);
        f->last_id = get_str(root, "last_id", &bad, NULL);
        if (f->last_id != NULL && gw_proto_parse_id(f->last_id) == 0) {
            *code = "bad_hello";
            *reason = "'last_id' must be a message id (decimal string)";
            goto fail;
        }
        if (bad || (f->ticket == NULL && f->user == NULL)) {
            *code = "bad_hello";
            *reason = "hello needs a string 'ticket' (or 'user' in development mode), without NUL";
            goto fail;
        }
    } else if (strcmp(op, "send") == 0) {
        f->op = GW_OP_SEND;
        f->to = get_str(root, "to", &bad, NULL);
        f->body = get_str(root, "body", &bad, &f->body_len);
        f->kind = get_str(root, "kind", &bad, NULL);
        if (bad || f->to == NULL || f->body == NULL || f->cid == NULL) {
            *code = "bad_frame";
            *reason = "send needs string members 'to', 'body' and 'cid' (none may hold a NUL)";
            goto fail;
        }
        if (!cid_ok(f->cid)) {
            *code = "bad_frame";
            *reason = "'cid' must be 1-64 printable ASCII characters";
            goto fail;
        }
        if (f->body_len == 0 || f->body_len > max_body) {
            *code = "bad_frame";
            *reason = "'body' is empty or longer than max_body_bytes";
            goto fail;
        }
        if (!gw_xml_text_ok(f->body, f->body_len)) {
            *code = "bad_frame";
            *reason = "'body' holds control characters that XMPP cannot carry";
            goto fail;
        }
        if (f->kind == NULL)
            f->kind = "text";
        else if (strcmp(f->kind, "text") != 0 && strcmp(f->kind, "image") != 0) {
            *code = "bad_frame";
            *reason = "'kind' must be 'text' or 'image'";
            goto fail;
        }
    } else if (strcmp(op, "open") == 0) {
        f->op = GW_OP_OPEN;
        if (!json_object_object_get_ex(root, "with", &v)) {
            *code = "bad_frame";
            *reason = "open needs 'with' (a user id, a bare JID or null)";
            goto fail;
        }
        if (json_object_is_type(v, json_type_null))
            f->with_null = 1;
        else if ((f->with = str_value(v, &bad, NULL)) == NULL) {
            *code = "bad_frame";
            *reason = "'with' must be a string (without NUL) or null";
            goto fail;
        }
    } else if (strcmp(op, "history") == 0 || strcmp(op, "chats") == 0 || strcmp(op, "read") == 0) {
        const char *with = NULL, *before = NULL, *id = NULL;
        int bad_before = 0, bad_id = 0;
        f->op = op[0] == 'h' ? GW_OP_HISTORY : op[0] == 'c' ? GW_OP_CHATS : GW_OP_READ;
        f->limit = 50;
        f->before = UINT64_MAX;
        with = get_str(root, "with", &bad, NULL);
        /* Each member's own message: a numeric id is not a missing 'with'. */
        before = get_str(root, "before", &bad_before, NULL);
        id = get_str(root, "id", &bad_id, NULL);
        if (json_object_object_get_ex(root, "limit", &v)) {
            if (!json_object_is_type(v, json_type_int) || json_object_get_int(v) < 1 ||
                json_object_get_int(v) > 100) {
                *code = "bad_frame";
                *reason = "'limit' must be an integer from 1 to 100";
                goto fail;
            }
            f->limit = json_object_get_int(v);
        }
        if (bad || (f->op != GW_OP_CHATS && with == NULL)) {
            *code = "bad_frame";
            *reason = "'with' (a user id or bare JID, without NUL) is required";
            goto fail;
        }
        f->with = with;
        if (bad_before || (before != NULL && (f->before = gw_proto_parse_id(before)) == 0)) {
            *code = "bad_frame";
            *reason = "'before' must be a message id (decimal string)";
            goto fail;
        }
        if (f->op == GW_OP_READ && (bad_id || id == NULL || (f->id = gw_proto_parse_id(id)) == 0)) {
            *code = "bad_frame";
            *reason = "read needs 'id', a message id (decimal string)";
            goto fail;
        }
    } else if (strcmp(op, "ping") == 0) {
        f->op = GW_OP_PING;
        if (json_object_object_get_ex(root, "t", &v))
            f->t_json = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
                                                              JSON_C_TO_STRING_NOSLASHESCAPE);
    } else {
        *code = "unknown_op";
        *reason = "unknown 'op'";
        goto fail;
    }
    return 0;

fail:
    json_object_put(root);
    memset(f, 0, sizeof(*f));
    return GW_EINVAL;
}

int gw_proto_failed_op(const char *data, size_t len, char *out, size_t outlen)
{
    static const char *const ops[] = {"open", "history", "chats", "read"};
    json_tokener *tok;
    json_object *root, *v;
    int rc = GW_ENOTFOUND;

    if (len > INT32_MAX || outlen == 0 || (tok = json_tokener_new_ex(16)) == NULL)
        return GW_ENOTFOUND;
    root = json_tokener_parse_ex(tok, data, (int)len);
    if (root != NULL && json_object_is_type(root, json_type_object) &&
        json_object_object_get_ex(root, "op", &v) && json_object_is_type(v, json_type_string)) {
        const char *op = json_object_get_string(v);
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
            if (strcmp(op, ops[i]) == 0 && strlen(op) < outlen) {
                memcpy(out, op, strlen(op) + 1);
                rc = 0;
            }
    }
    json_object_put(root);
    json_tokener_free(tok);
    return rc;
}

void gw_frame_free(gw_frame_t *f)
{
    if (f->root_)
        json_object_put((json_object *)f->root_);
    memset(f, 0, sizeof(*f));
}

static gw_payload_t *finish(gw_sbuf_t *b)
{
    gw_payload_t *p = NULL;

    if (!b->overflow)
        p = gw_payload_from(b->data, b->len);
    gw_sbuf_free(b);
    return p;
}

/*
 * The encoders of frames sent per message append directly: a printf call
 * costs more than the rest of a member (the msg frame was 8,600 instructions
 * with printf, most of it in vfprintf).
 */
static void put_u64(gw_sbuf_t *b, uint64_t v)
{
    char d[20];
    size_t n = sizeof(d);

    do {
        d[--n] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0);
    gw_sbuf_append(b, d + n, sizeof(d) - n);
}

static void put_str_member(gw_sbuf_t *b, const char *name, const char *v)
{
    gw_sbuf_append(b, ",\"", 2);
    gw_sbuf_puts(b, name);
    gw_sbuf_append(b, "\":", 2);
    if (v)
        gw_json_escape(b, v, strlen(v));
    else
        gw_sbuf_puts(b, "null");
}

gw_payload_t *gw_proto_welcome(const char *user, const char *jid, const char *session)
{
    gw_sbuf_t b;

    gw_sbuf_init(&b, ENC_LIMIT);
    gw_sbuf_printf(&b, "{\"op\":\"welcome\",\"v\":%d", GW_PROTO_VERSION);
    put_str_member(&b, "user", user);
    put_str_member(&b, "jid", jid);
    put_str_member(&b, "session", session);
    gw_sbuf_puts(&b, "}");
    return finish(&b);
}

static gw_payload_t *error_frame(const char *code, const char *reason, const char *cid,
                                 const char *op)
{
    gw_sbuf_t b;

    gw_sbuf_init(&b, ENC_LIMIT);
    gw_sbuf_puts(&b, "{\"op\":\"error\"");
    put_str_member(&b, "code", code);
    put_str_member(&b, "reason", reason);
    if (cid && cid[0])
        put_str_member(&b, "cid", cid);
    if (op)
        put_str_member(&b, "for", op);
    gw_sbuf_puts(&b, "}");
    return finish(&b);
}

gw_payload_t *gw_proto_error(const char *code, const char *reason, const char *cid)
{
    return error_frame(code, reason, cid, NULL);
}

gw_payload_t *gw_proto_error_for(const char *code, const char *reason, const char *op)
{
    return error_frame(code, reason, NULL, op);
}

gw_payload_t *gw_proto_ack(const char *cid, uint64_t id, uint64_t ts, int queued)
{
    gw_sbuf_t b;

    gw_sbuf_init(&b, ENC_LIMIT);
    gw_sbuf_puts(&b, "{\"op\":\"ack\"");
    put_str_member(&b, "cid", cid);
    gw_sbuf_printf(&b, ",\"id\":\"%" PRIu64 "\",\"ts\":%" PRIu64 ",\"queued\":%s}", id, ts,
                   queued ? "true" : "false");
    return finish(&b);
}

gw_payload_t *gw_proto_opened(const char *with)
{
    gw_sbuf_t b;

    gw_sbuf_init(&b, ENC_LIMIT);
    gw_sbuf_puts(&b, "{\"op\":\"opened\"");
    put_str_member(&b, "with", with);
    gw_sbuf_puts(&b, "}");
    return finish(&b);
}

gw_payload_t *gw_proto_pong(const char *t_json)
{
    gw_sbuf_t b;

    gw_sbuf_init(&b, ENC_LIMIT);
    gw_sbuf_puts(&b, "{\"op\":\"pong\",\"t\":");
    gw_sbuf_puts(&b, t_json ? t_json : "null");
    gw_sbuf_puts(&b, "}");
    return finish(&b);
}

void gw_proto_msg_append(gw_sbuf_t *b, const gw_msg_t *m, const char *conv, int open, int recovered)
{
    gw_sbuf_puts(b, "{\"op\":\"msg\",\"id\":\"");
    put_u64(b, m->id);
    gw_sbuf_append(b, "\"", 1);
    put_str_member(b, "conv", conv);
    put_str_member(b, "from", m->from);
    put_str_member(b, "to", m->to);
    gw_sbuf_puts(b, ",\"body\":");
    gw_json_escape(b, m->body, m->body_len);
    put_str_member(b, "kind", m->kind ? m->kind : "text");
    gw_sbuf_puts(b, ",\"ts\":");
    put_u64(b, m->ts);
    gw_sbuf_puts(b, open ? ",\"open\":true" : ",\"open\":false");
    if (m->cid)
        put_str_member(b, "cid", m->cid);
    if (recovered)
        gw_sbuf_puts(b, ",\"recovered\":true");
    gw_sbuf_puts(b, "}");
}

gw_payload_t *gw_proto_msg(const gw_msg_t *m, const char *conv, int open)
{
    gw_sbuf_t b;

    gw_sbuf_init(&b, ENC_LIMIT);
    gw_proto_msg_append(&b, m, conv, open, 0);
    return finish(&b);
}

uint64_t gw_proto_parse_id(const char *s)
{
    uint64_t v = 0;
    size_t n = strlen(s);

    if (n == 0 || n > 19)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10u + (uint64_t)(s[i] - '0');
    }
    return v <= (uint64_t)INT64_MAX ? v : 0;
}
