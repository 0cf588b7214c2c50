/*
 * libFuzzer target: SockJS framing. A client body (a JSON array of strings)
 * is decoded; every message is quoted back as the server frames it, and the
 * frame must decode to the same bytes (quote and decode are inverse). The
 * input as a path goes through the path splitter.
 */
#include "gw.h"
#include "sockjs.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct check {
    const char *want;
    size_t wlen;
    int seen;
} check_t;

static void same(void *ud, const char *msg, size_t len)
{
    check_t *c = ud;

    if (len != c->wlen || memcmp(msg, c->want, len) != 0)
        abort();
    c->seen++;
}

static void round_trip(void *ud, const char *msg, size_t len)
{
    gw_sbuf_t b;
    check_t c = {msg, len, 0};

    (void)ud;
    gw_sbuf_init(&b, 8 * len + 16);
    gw_sbuf_puts(&b, "[");
    gw_sockjs_quote(&b, msg, len);
    gw_sbuf_puts(&b, "]");
    if (!b.overflow && (gw_sockjs_decode(b.data, b.len, len + 1, same, &c) != 1 || c.seen != 1))
        abort();
    gw_sbuf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char sid[72], tp[32];
    char *z;

    (void)gw_sockjs_decode((const char *)data, size, 4096, round_trip, NULL);
    z = malloc(size + 1);
    if (z == NULL)
        return 0;
    memcpy(z, data, size);
    z[size] = '\0';
    (void)gw_sockjs_parse_path(z, sid, sizeof(sid), tp, sizeof(tp));
    free(z);
    return 0;
}
