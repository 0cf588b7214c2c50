/*
 * payload.c - reference-counted buffers and bounded string builders.
 */
#include "payload.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

gw_payload_t *gw_payload_new(size_t len)
{
    gw_payload_t *p = malloc(sizeof(*p) + GW_PAYLOAD_PRE + len + 1);

    if (p == NULL)
        return NULL;
    p->refs = 1;
    p->len = len;
    p->bytes[GW_PAYLOAD_PRE + len] = '\0';
    return p;
}

gw_payload_t *gw_payload_from(const void *data, size_t len)
{
    gw_payload_t *p = gw_payload_new(len);

    if (p != NULL)
        memcpy(gw_payload_data(p), data, len);
    return p;
}

void gw_payload_unref(gw_payload_t *p)
{
    if (p != NULL && --p->refs == 0)
        free(p);
}

void gw_sbuf_init(gw_sbuf_t *b, size_t limit)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->limit = limit;
    b->overflow = 0;
}

static int reserve(gw_sbuf_t *b, size_t n)
{
    size_t need, cap;
    char *d;

    if (b->overflow)
        return -1;
    if (n > b->limit || b->len > b->limit - n) {
        b->overflow = 1;
        return -1;
    }
    need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 128;
    while (cap < need)
        cap *= 2;
    d = realloc(b->data, cap);
    if (d == NULL) {
        b->overflow = 1;
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

void gw_sbuf_append(gw_sbuf_t *b, const char *s, size_t n)
{
    if (reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void gw_sbuf_puts(gw_sbuf_t *b, const char *s)
{
    gw_sbuf_append(b, s, strlen(s));
}

void gw_sbuf_printf(gw_sbuf_t *b, const char *fmt, ...)
{
    char tmp[256], *big;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->overflow = 1;
        return;
    }
    if ((size_t)n < sizeof(tmp)) {
        gw_sbuf_append(b, tmp, (size_t)n);
        return;
    }
    /* Longer than the stack buffer: format again into one that fits, never truncate. */
    big = malloc((size_t)n + 1);
    if (big == NULL) {
        b->overflow = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    gw_sbuf_append(b, big, (size_t)n);
    free(big);
}

void gw_sbuf_free(gw_sbuf_t *b)
{
    free(b->data);
    gw_sbuf_init(b, b->limit);
}
