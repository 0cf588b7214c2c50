/*
 * proto.h - the browser JSON protocol (docs/protocol.md): parsing client
 * frames and encoding server frames. No I/O: bytes in, values out.
 */
#ifndef GW_PROTO_H
#define GW_PROTO_H

#include "payload.h"

#include <stddef.h>
#include <stdint.h>

#define GW_PROTO_VERSION 1

typedef enum {
    GW_OP_HELLO = 1,
    GW_OP_SEND,
    GW_OP_OPEN,
    GW_OP_PING,
    GW_OP_HISTORY,
    GW_OP_CHATS,
    GW_OP_READ,
} gw_op_t;

/*
 * A parsed client frame. String members point into the parser's JSON tree
 * and stay valid until gw_frame_free(); absent members are NULL.
 */
typedef struct gw_frame {
    gw_op_t op;
    int v;               /* hello: protocol version asked for (0 when absent) */
    const char *ticket;  /* hello */
    const char *user;    /* hello, development mode */
    const char *last_id; /* hello, recovery (decimal string) */
    const char *to;      /* send */
    const char *body;    /* send */
    size_t body_len;
    const char *cid;  /* send */
    const char *kind; /* send: "text" (default) */
    const char *with; /* open: NULL together with with_null = 1 closes */
    int with_null;
    const char *t_json; /* ping: the JSON text of "t", or NULL */
    uint64_t before;    /* history: ids below this (UINT64_MAX when absent) */
    uint64_t id;        /* read: up to this id */
    int limit;          /* history, chats: 1..100 (default 50) */
    void *root_;        /* owned json tree */
} gw_frame_t;

/*
 * Parses one text frame. On success returns 0 and fills f (release with
 * gw_frame_free). On failure returns GW_EINVAL, sets *code to a protocol
 * error code ("bad_json", "bad_frame", "unknown_op") and *reason to a static
 * explanation; f needs no release. When the failing frame carried a usable
 * "cid", *cid_out points at a copy in cid_buf (size cid_len) so the error can
 * name it.
 */
int gw_proto_parse(const char *data, size_t len, size_t max_body, gw_frame_t *f, const char **code,
                   const char **reason, char *cid_buf, size_t cid_len);

void gw_frame_free(gw_frame_t *f);

/*
 * The "op" of a frame gw_proto_parse() refused, when the frame is a JSON
 * object whose "op" is one of the operations answered without a cid
 * (open, history, chats, read): copies it into out (size outlen) and returns
 * 0, else GW_ENOTFOUND. Lets the refusal name the operation ("for").
 */
int gw_proto_failed_op(const char *data, size_t len, char *out, size_t outlen);

/* A message as delivered to browsers. Strings need not be NUL-terminated except where noted. */
typedef struct gw_msg {
    uint64_t id;
    uint64_t ts;
    const char *from; /* bare JID, NUL-terminated */
    const char *to;   /* bare JID, NUL-terminated */
    const char *body;
    size_t body_len;
    const char *kind; /* NUL-terminated */
    const char *cid;  /* NUL-terminated or NULL */
} gw_msg_t;

/*
 * Encoders. Each returns a new payload (refs = 1, caller owns it) or NULL on
 * ENOMEM. Encoded frames never exceed limit bytes; NULL is returned past it.
 */
gw_payload_t *gw_proto_welcome(const char *user, const char *jid, const char *session);
gw_payload_t *gw_proto_error(const char *code, const char *reason, const char *cid);
/* An error answering op (adds "for": op), for requests that carry no cid. */
gw_payload_t *gw_proto_error_for(const char *code, const char *reason, const char *op);
gw_payload_t *gw_proto_ack(const char *cid, uint64_t id, uint64_t ts, int queued);
gw_payload_t *gw_proto_opened(const char *with);
gw_payload_t *gw_proto_pong(const char *t_json);

/*
 * Encodes a msg frame. conv is the peer's bare JID for the receiving user;
 * open is the value of the "open" member. The two variants differ only in
 * "open", so callers encode at most two payloads per message and share them.
 */
gw_payload_t *gw_proto_msg(const gw_msg_t *m, const char *conv, int open);

/*
 * Appends the JSON object of a msg frame (op "msg", plus "recovered": true
 * when recovered is set) to b, for list frames and for recovery.
 */
void gw_proto_msg_append(gw_sbuf_t *b, const gw_msg_t *m, const char *conv, int open,
                         int recovered);

/* Parses a decimal message id (1..2^63-1); returns 0 when s is not one. */
uint64_t gw_proto_parse_id(const char *s);

#endif
