/*
 * libFuzzer target: the spool record reader (spoolrec.c). Whatever a line holds, the reader
 * must not read out of bounds or leak; a line it accepts must survive encode + parse with
 * the same values (what the gateway writes it must read back).
 */
#include "spoolrec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_spoolrec_t rec, again;
    const char *why;
    gw_sbuf_t b;

    if (gw_spoolrec_parse((const char *)data, size, &rec, &why) != 0)
        return 0;
    gw_sbuf_init(&b, 1u << 24);
    gw_spoolrec_encode(&b, &rec.m);
    if (!b.overflow) {
        if (gw_spoolrec_parse(b.data, b.len, &again, &why) != 0)
            abort();
        if (again.m.id != rec.m.id || again.m.ts != rec.m.ts ||
            !same(again.m.sender, rec.m.sender) || !same(again.m.recipient, rec.m.recipient) ||
            !same(again.m.body, rec.m.body) || !same(again.m.kind, rec.m.kind) ||
            !same(again.m.cid, rec.m.cid) || !same(again.m.stanza_id, rec.m.stanza_id))
            abort();
        gw_spoolrec_free(&again);
    }
    gw_sbuf_free(&b);
    gw_spoolrec_free(&rec);
    return 0;
}
