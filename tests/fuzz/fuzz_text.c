/* libFuzzer target: UTF-8 and XML checks, escapers and JID resolution. */
#include "text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char *z = malloc(size + 1);
    char out[320];
    gw_sbuf_t b;

    if (z == NULL)
        return 0;
    memcpy(z, data, size);
    z[size] = '\0';
    (void)gw_utf8_valid(s, size);
    (void)gw_xml_text_ok(s, size);
    gw_sbuf_init(&b, 1u << 20);
    gw_xml_escape(&b, s, size);
    gw_json_escape(&b, s, size);
    gw_sbuf_free(&b);
    (void)gw_user_id_ok(z);
    (void)gw_jid_resolve(z, "gw.example.com", out, sizeof(out));
    (void)gw_jid_bare(z, out, sizeof(out));
    free(z);
    return 0;
}
