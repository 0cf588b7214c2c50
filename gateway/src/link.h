/*
 * link.h - the XEP-0114 component link to the XMPP server (libstrophe).
 *
 * One link carries the traffic of every web user. It runs on the shared
 * libuv loop: the component socket is watched with uv_poll and libstrophe is
 * stepped with xmpp_run_once(ctx, 0) when it is readable or has output.
 * Only this module includes strophe.h.
 *
 * While the link is down, outgoing messages wait in a bounded FIFO and are
 * written in order after the next successful handshake.
 */
#ifndef GW_LINK_H
#define GW_LINK_H

#include "config.h"

#include <stddef.h>
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
    int copied; /* 1 when it came as a companion copy (same-JID mode) */
} gw_link_msg_t;

typedef struct gw_link_cbs {
    /* The handshake succeeded; queued messages have been written. */
    void (*on_up)(void *ud);
    /* The link went down; a reconnect is scheduled. */
    void (*on_down)(void *ud);
    /* A message for a web user. Pointers are valid until the callback returns. */
    void (*on_message)(void *ud, const gw_link_msg_t *m);
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
 * Sends a chat message from user (a user id of ours) to the bare JID to with
 * the given stanza id and XEP-0359 origin-id (the browser's client id, so a
 * copy of the message coming back can be matched; NULL for none). The body
 * must be XML-safe text (gw_xml_text_ok). A message of kind "image" carries its
 * URL as the body and as an XEP-0066 out-of-band URL, which apps display.
 * Returns 0 when handed to the socket, 1 when queued because the link is down,
 * GW_EFULL when the queue is full (the message was NOT accepted), GW_ENOMEM.
 */
int gw_link_send_chat(gw_link_t *l, const char *user, const char *to, const char *id,
                      const char *origin_id, const char *kind, const char *body, size_t body_len);

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

/* Tells the companion whether user has web sessions (same-JID mode; no-op otherwise). */
void gw_link_send_web_presence(gw_link_t *l, const char *user, int available);

/* 1 when the handshake has completed and the stream is open. */
int gw_link_is_up(const gw_link_t *l);

/* Number of messages waiting for the link. */
size_t gw_link_queue_len(const gw_link_t *l);

/*
 * Closes the stream cleanly (</stream:stream>) and stops reconnecting. The
 * link's handles are closed when the loop runs; call gw_link_free() after
 * the loop has finished.
 */
void gw_link_stop(gw_link_t *l);

void gw_link_free(gw_link_t *l);

/*
 * Runs the link's stanza handlers on one stanza given as XML text (len
 * bytes, parsed by libstrophe's own parser), as if it had arrived on an open
 * stream, without a socket: for tests and the fuzz target. Answers that would
 * be sent are dropped; callbacks run as for a real stanza. Returns 0, or
 * GW_EINVAL when the text is not one well-formed element.
 */
int gw_link_handle_xml(gw_link_t *l, const char *xml, size_t len);

#endif
