/*
 * payload.h - reference-counted, immutable byte buffers for fan-out.
 *
 * A frame sent to many WebSocket sessions is encoded once into a payload and
 * each session's queue holds a reference. The buffer keeps GW_PAYLOAD_PRE
 * bytes of headroom in front of the data because libwebsockets writes its
 * frame header there (front.c checks that this is at least LWS_PRE).
 */
#ifndef GW_PAYLOAD_H
#define GW_PAYLOAD_H

#include <stddef.h>

#define GW_PAYLOAD_PRE 16

typedef struct gw_payload {
    unsigned refs;
    size_t len;
    unsigned char bytes[]; /* GW_PAYLOAD_PRE headroom, then len bytes, then NUL */
} gw_payload_t;

/* Allocates a payload with room for len bytes (uninitialised); refs = 1. NULL on ENOMEM. */
gw_payload_t *gw_payload_new(size_t len);

/* Copies len bytes from data into a new payload; refs = 1. NULL on ENOMEM. */
gw_payload_t *gw_payload_from(const void *data, size_t len);

static inline unsigned char *gw_payload_data(gw_payload_t *p)
{
    return p->bytes + GW_PAYLOAD_PRE;
}

static inline gw_payload_t *gw_payload_ref(gw_payload_t *p)
{
    p->refs++;
    return p;
}

/* Drops one reference and frees the payload when it was the last. NULL is ignored. */
void gw_payload_unref(gw_payload_t *p);

/*
 * A growable text buffer with a hard limit, for encoders. Every append is
 * bounded; once an append would pass the limit the buffer is marked
 * overflowed and further appends do nothing.
 */
typedef struct gw_sbuf {
    char *data;
    size_t len, cap, limit;
    int overflow; /* 1 after an append past limit, or after an allocation failure */
} gw_sbuf_t;

void gw_sbuf_init(gw_sbuf_t *b, size_t limit);
void gw_sbuf_append(gw_sbuf_t *b, const char *s, size_t n);
void gw_sbuf_puts(gw_sbuf_t *b, const char *s);
void gw_sbuf_printf(gw_sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gw_sbuf_free(gw_sbuf_t *b);

#endif
