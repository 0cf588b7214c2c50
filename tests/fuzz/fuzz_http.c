/*
 * libFuzzer target: the parsers an HTTP request goes through (httpparse.h).
 * The first byte picks how the rest is cut: a chunked request body fed in
 * pieces, a query string (URL decoding, form lookup), a JSON body (top-level
 * members), a JSONP callback name, a multipart Content-Type, a picture.
 */
#include "gw.h"
#include "httpparse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count_sink(void *ud, const unsigned char *d, size_t n)
{
    size_t *total = ud;

    if (n)
        (void)d[n - 1]; /* the bytes handed over must be readable */
    *total += n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[512];
    const char *ext;
    size_t total = 0;

    if (size < 2)
        return 0;
    {
        /* Chunked body, fed in pieces whose size comes from the first byte. */
        gw_chunked_t c;
        size_t step = (size_t)(data[0] % 17) + 1, in = 0;
        memset(&c, 0, sizeof(c));
        for (size_t i = 1; i < size; i += step) {
            size_t n = size - i < step ? size - i : step;
            int rc = gw_chunked_feed(&c, data + i, n, count_sink, &total);
            in += n;
            if (rc != 0)
                break;
        }
        if (total > in)
            abort(); /* more data out than went in */
    }
    {
        char *z = malloc(size);
        if (z == NULL)
            return 0;
        memcpy(z, data + 1, size - 1);
        z[size - 1] = '\0';
        (void)gw_http_urldecode(z, size - 1, out, sizeof(out));
        (void)gw_http_form_get(z, size - 1, "d", out, sizeof(out));
        (void)gw_http_form_get(z, size - 1, "token", out, sizeof(out));
        (void)gw_http_json_member(z, size - 1, "op", out, sizeof(out));
        (void)gw_http_json_member(z, size - 1, "cid", out, 8);
        (void)gw_http_callback_ok(z, size - 1);
        (void)gw_http_multipart_boundary(z, out, sizeof(out));
        free(z);
    }
    if (gw_http_image_type(data + 1, size - 1, &ext) != NULL) {
        const char *mime = gw_http_image_type(data + 1, size - 1, &ext);
        (void)gw_http_image_check(data + 1, size - 1, mime);
    }
    return 0;
}
