/*
 * sockjs.h - a SockJS 0.3 server (what sockjs-client 1.x speaks) under
 * /sockjs/getUserMsg, /sockjs/getChatList and /sockjs/chat. Each SockJS
 * message a client sends is one protocol frame for the router; each frame
 * the router sends goes out as one SockJS message.
 *
 * The framing helpers at the top do no I/O and are unit tested. The HTTP
 * transports (xhr, xhr_streaming, xhr_send, jsonp, jsonp_send, eventsource,
 * htmlfile, info, iframe.html) run through http.c's request plumbing; the
 * WebSocket transports live in front.c, which owns the WebSocket protocol.
 */
#ifndef GW_SOCKJS_H
#define GW_SOCKJS_H

#include "http.h"
#include "payload.h"

#include <stddef.h>
#include <stdint.h>

/* Heartbeat period, session timeout after the last receiver left (the streaming byte
 * limit is sockjs_response_limit, 128 KiB by default). */
#define GW_SOCKJS_HEARTBEAT_MS  25000
#define GW_SOCKJS_DISCONNECT_MS 5000
/* The shortest session id accepted: sockjs-client makes 8 random characters. */
#define GW_SOCKJS_SID_MIN 8

/*
 * Appends s[0..n) as a JSON string literal, escaping what JSON requires and
 * also <, >, &, DEL, U+200C-200F, U+2028-202F, U+2060-206F and U+FFF0-FFFF
 * (as \uXXXX), so the text is safe inside a <script> (htmlfile), in old
 * JavaScript engines (jsonp) and through proxies that mangle invisible
 * characters, as the SockJS protocol asks of servers.
 */
void gw_sockjs_quote(gw_sbuf_t *b, const char *s, size_t n);

/* Appends c[code,"reason"]. */
void gw_sockjs_close_frame(gw_sbuf_t *b, int code, const char *reason);

/*
 * Decodes a SockJS client body: a JSON array of strings. Each decoded string
 * (valid UTF-8 without NUL, at most max_msg bytes) is passed to cb, but only
 * after the whole body was found valid. cb may be NULL (validation only).
 * Returns the number of messages, GW_ERANGE (a message longer than max_msg),
 * GW_EINVAL (not an array of strings, bad escape, invalid UTF-8, NUL) or
 * GW_ENOMEM.
 */
int gw_sockjs_decode(const char *in, size_t n, size_t max_msg,
                     void (*cb)(void *ud, const char *msg, size_t len), void *ud);

enum {
    GW_SOCKJS_P_BAD = 0,  /* not a SockJS path: 404 */
    GW_SOCKJS_P_GREETING, /* /sockjs/NAME or /sockjs/NAME/ */
    GW_SOCKJS_P_INFO,     /* .../info */
    GW_SOCKJS_P_IFRAME,   /* .../iframe.html, .../iframe-VERSION.html */
    GW_SOCKJS_P_RAW_WS,   /* .../websocket */
    GW_SOCKJS_P_SESSION,  /* .../SERVER/SESSION/TRANSPORT */
    GW_SOCKJS_P_SHORT_ID, /* the same (filled too) with a session id shorter than GW_SOCKJS_SID_MIN
                           */
};

/*
 * Splits a request path (pure). For GW_SOCKJS_P_SESSION, session (size slen)
 * and transport (size tlen) are filled; server and session ids are printable
 * UTF-8 of at most 64 bytes without '.' or '/'. Returns one of GW_SOCKJS_P_*.
 */
int gw_sockjs_parse_path(const char *path, char *session, size_t slen, char *transport,
                         size_t tlen);

/* ---- the module (SockJS sessions over HTTP) ---------------------------------- */

typedef struct gw_sockjs gw_sockjs_t;

/* Creates the module and routes /sockjs/ of h to it. 0, GW_ENOMEM or GW_EFULL. */
int gw_sockjs_new(gw_http_t *h, gw_sockjs_t **out);

/* Heartbeats, session timeouts, authentication timeouts (from h's timer; ctx is the module). */
void gw_sockjs_tick(void *ctx, uint64_t now_ms);

/* Closes every session (router on_close runs for each). */
void gw_sockjs_shutdown(gw_sockjs_t *sj);

void gw_sockjs_free(gw_sockjs_t *sj);

#endif
