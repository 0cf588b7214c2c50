/*
 * api.h - the JSON/JSONP HTTP API under /api/ (docs/http-api.md): login with
 * a ticket, long-poll sessions, and one request per protocol operation. An
 * API session is a gw_session_t like a WebSocket; the router sees it through
 * the front's on_open/on_frame/on_close callbacks.
 *
 * Ownership: the module owns its sessions. A session and a request waiting
 * on it point at each other (the session's poll or wait slot, the request's
 * owner); the two pointers are set and cleared together (link/unlink in
 * api.c), and a session is freed only after every link is cleared, so a
 * request never reaches a freed session and a session never a freed request.
 */
#ifndef GW_API_H
#define GW_API_H

#include "http.h"

#include <stddef.h>

typedef struct gw_api gw_api_t;

/* Creates the module and routes /api/ of h to it. 0, GW_ENOMEM or GW_EFULL. */
int gw_api_new(gw_http_t *h, gw_api_t **out);

/*
 * The user id of a live, authenticated session with this token into user
 * (size len). 0, or GW_ENOTFOUND.
 */
int gw_api_token_user(gw_api_t *a, const char *token, char *user, size_t len);

/* Closes every session (the router's on_close runs for each). */
void gw_api_shutdown(gw_api_t *a);

void gw_api_free(gw_api_t *a);

#endif
