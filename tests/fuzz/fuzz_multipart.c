/*
 * libFuzzer target: the streaming multipart/form-data parser. The input's
 * first line is the Content-Type value; the rest is the body, fed in pieces
 * whose size comes from the first byte. The file bytes it hands over must
 * never exceed the body's.
 */
#include "gw.h"
#include "httpparse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sink(void *ud, const unsigned char *d, size_t n)
{
    size_t *total = ud;

    if (n)
        (void)d[0], (void)d[n - 1];
    *total += n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl;
    char ctype[256], boundary[80];
    size_t clen, step, total = 0;
    gw_multipart_t m;

    if (size < 2)
        return 0;
    step = (size_t)(data[0] % 31) + 1;
    data++;
    size--;
    nl = memchr(data, '\n', size);
    if (nl == NULL)
        return 0;
    clen = (size_t)(nl - data);
    if (clen >= sizeof(ctype))
        return 0;
    memcpy(ctype, data, clen);
    ctype[clen] = '\0';
    if (gw_http_multipart_boundary(ctype, boundary, sizeof(boundary)) != 0 ||
        gw_multipart_init(&m, boundary, sink, &total) != 0)
        return 0;
    data = nl + 1;
    size -= clen + 1;
    for (size_t i = 0; i < size; i += step) {
        size_t n = size - i < step ? size - i : step;
        if (gw_multipart_feed(&m, data + i, n) != 0)
            break;
    }
    (void)gw_multipart_finish(&m);
    if (total > size)
        abort();
    return 0;
}
