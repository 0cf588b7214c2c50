/*
 * link.h - the XEP-0114 component link to the XMPP server.
 *
 * One link carries the traffic of every web user. It runs on the shared
 * libuv loop: a uv_tcp stream, read through the stream reader of
 * xmlstream.h (expat), written once per loop iteration. No other module sees
 * the stream's XML.
 *
 * Outgoing chat messages are not queued here: the caller (router.c through
 * outbox.c) keeps every message until the link reports it routed, and writes
 * again whatever a lost connection may have swallowed.
 *
 * With a version-1 companion (docs/companion-protocol.md sections 7-10) the
 * link also keeps the gateway instance's lease (heartbeats carrying a mark),
 * tells the companion which users have web sessions here, and acknowledges
 * copies once the router says they are durable.
 */
#ifndef GW_LINK_H
#define GW_LINK_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct gw_link gw_link_t;

/* A chat message received from the XMPP server, already unwrapped. */
typedef struct gw_link_msg {
    const char *from;      /* full or bare JID of the sender */
    const char *to;        /* JID of the recipient */
    const char *id;        /* stanza id, may be NULL */
    const char *origin_id; /* XEP-0359 origin-id, may be NULL */
    const char *kind;      /* "image" when an XEP-0066 OOB URL equals the body, else "text" */
    const char *type;      /* "chat" or "normal" */
    const char *body;      /* UTF-8, NUL-terminated */
    size_t body_len;
    int copied;   /* 1 when it came as a companion copy (same-JID mode) */
    uint64_t seq; /* the copy's sequence number to acknowledge (gw_link_ack), or 0 */
} gw_link_msg_t;

typedef struct gw_link_cbs {
    /* The handshake succeeded: chats may be written again. */
    void (*on_up)(void *ud);
    /*
     * The link went down; a reconnect is scheduled. Chats written and not yet
     * reported routed may be lost with the connection: write them again after
     * the next on_up.
     */
    void (*on_down)(void *ud);
    /* A message for a web user. Pointers are valid until the callback returns. */
    void (*on_message)(void *ud, const gw_link_msg_t *m);
    /*
     * Every chat written with a mark up to `mark` has been routed by the
     * server (version-1 companion: confirmed by its status; otherwise: handed
     * to the kernel, which is all XEP-0114 can tell).
     */
    void (*on_routed)(void *ud, uint64_t mark);
    /*
     * The companion wants this instance's full list of web users: call
     * gw_link_web_list(l, user) for each user announced with
     * gw_link_web_user(l, user, 1) and not taken back, from inside this call.
     */
    void (*list_web_users)(void *ud, gw_link_t *l);
    /*
     * Optional: the server's answer to another gateway's registration request,
     * or a companion status for another instance, arrived here (allowMultiple
     * deals IQ results round-robin). Pass it on to gateway node, which calls
     * gw_link_finish_answer() with it. status is 0 for a result (detail: the
     * companion's status, or a status's sync) or GW_EINVAL (detail: the error
     * condition); the strings are valid until the callback returns.
     */
    void (*on_foreign_answer)(void *ud, int node, const char *id, int status, const char *detail);
} gw_link_cbs_t;

/*
 * Creates a link on loop with settings from cfg (which must outlive it).
 * Returns 0 and *out, or GW_ENOMEM.
 */
int gw_link_new(uv_loop_t *loop, const gw_config_t *cfg, const gw_link_cbs_t *cbs, void *ud,
                gw_link_t **out);

/* Starts connecting; reconnects on its own from then on. */
int gw_link_start(gw_link_t *l);

/*
 * Writes a chat message from user (a user id of ours) to the bare JID to with
 * the given stanza id and XEP-0359 origin-id (the browser's client id, so a
 * copy of the message coming back can be matched; NULL for none). The body
 * must be XML-safe text (gw_xml_text_ok). A message of kind "image" carries its
 * URL as the body and as an XEP-0066 out-of-band URL, which apps display.
 * Returns 0 when queued for writing (written to the socket before the loop
 * next waits), with *mark set to the number this write
 * got (increasing; on_routed reports it), GW_ELINK when the link is not up
 * (nothing written; also when the server has stopped reading and the write
 * queue's bound is reached, which gives the connection up), GW_ENOMEM.
 */
int gw_link_send_chat(gw_link_t *l, const char *user, const char *to, const char *id,
                      const char *origin_id, const char *kind, const char *body, size_t body_len,
                      uint64_t *mark);

/*
 * Web users of this instance (same-JID mode): user has a browser session here
 * (on = 1) or no more (on = 0). Each user is announced at most once and taken
 * back at most once; the link tells the companion (version 1: batched <web>
 * requests and a checksum in every heartbeat; version 0: one presence IQ each).
 */
void gw_link_web_user(gw_link_t *l, const char *user, int on);

/* One user of the full list, from inside the list_web_users callback only. */
void gw_link_web_list(gw_link_t *l, const char *user);

/*
 * Acknowledges a companion copy (gw_link_msg_t.seq) once it is durable.
 * Batched (50 ms or 400 numbers); acknowledgements that cannot be sent are
 * dropped, which only makes the companion send the copy again.
 */
void gw_link_ack(gw_link_t *l, uint64_t seq);

/* 1 when the companion announced version 1 on this connection. */
int gw_link_companion_v1(const gw_link_t *l);

/*
 * Called with the outcome of a companion request: status 0 for a result
 * (condition is then the result's status attribute, e.g. "created" or
 * "exists", or NULL), GW_EINVAL for an error (condition names the XMPP error,
 * e.g. "conflict"), GW_ELINK when the link went down or the answer did not
 * come within the handshake timeout. Only an answer carrying the request's
 * id (unpredictable) from the XMPP server's domain counts.
 */
typedef void (*gw_link_iq_cb)(void *ud, int status, const char *condition);

/*
 * Asks the companion to create user (same-JID mode). cb(ud, ...) runs exactly
 * once, later, unless this returns non-zero (GW_ELINK when the link is down,
 * GW_ENOMEM), in which case it never runs.
 */
int gw_link_register_user(gw_link_t *l, const char *user, gw_link_iq_cb cb, void *ud);

/*
 * Settles this gateway's pending request id with an answer another gateway
 * received (see on_foreign_answer). Returns 0, or GW_ENOTFOUND when no such
 * request waits (answered, expired, or not ours).
 */
int gw_link_finish_answer(gw_link_t *l, const char *id, int status, const char *detail);

/* 1 when the handshake has completed and the stream is open. */
int gw_link_is_up(const gw_link_t *l);

/*
 * Closes the stream cleanly (a version-1 companion first hears lease 0, which
 * releases this instance's web users at once; then </stream:stream>) and stops
 * reconnecting. The link's handles are closed when the loop runs; call
 * gw_link_free() after the loop has finished.
 */
void gw_link_stop(gw_link_t *l);

void gw_link_free(gw_link_t *l);

/*
 * Runs the link's stanza handlers on one stanza given as XML text (len
 * bytes, parsed by the link's stream reader inside a made-up stream header,
 * so the prefix "stream:" is bound), as if it had arrived on an open stream,
 * without a socket: for tests and the fuzz target. Answers that would
 * be sent are dropped; callbacks run as for a real stanza. Returns 0, or
 * GW_EINVAL when the text is not one well-formed element.
 */
int gw_link_handle_xml(gw_link_t *l, const char *xml, size_t len);

#endif
