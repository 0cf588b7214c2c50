/*
 * upload.h - picture upload (POST /upload) and the stored files (/files/).
 *
 * An upload needs a live API session's token. Each user has a rate and a
 * daily byte quota; a stored file must be, as a whole, the picture its first
 * bytes claim; files older than upload_expiry_hours are swept away.
 * /files/ answers with Content-Security-Policy: default-src 'none',
 * nosniff and a Content-Disposition, so a stored file never runs as a page.
 */
#ifndef GW_UPLOAD_H
#define GW_UPLOAD_H

#include "api.h"
#include "http.h"

typedef struct gw_upload gw_upload_t;

/* Creates the module and routes /upload and /files/ of h to it. 0, GW_ENOMEM or GW_EFULL. */
int gw_upload_new(gw_http_t *h, gw_api_t *api, gw_upload_t **out);

void gw_upload_free(gw_upload_t *u);

#endif
