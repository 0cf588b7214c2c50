/*
 * libFuzzer target: the XMPP stream reader (xmlstream.c) on arbitrary bytes,
 * fed whole and then again split in two at a point the input chooses. Both
 * feeds must hand over the same stanzas; every tree must be well-formed
 * (names and text NUL-terminated, text_len their length).
 */
#include "gw.h"
#include "xmlstream.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long long digest;

static void walk(const gw_xml_el_t *e, unsigned depth)
{
    if (depth > 64 || e->name == NULL || e->ns == NULL || e->text == NULL ||
        strlen(e->text) != e->text_len)
        abort();
    for (const char *s = e->name; *s; s++)
        digest = digest * 31 + (unsigned char)*s;
    digest = digest * 31 + e->text_len;
    for (const char **a = e->attrs; a[0] != NULL; a += 2)
        digest = digest * 31 + strlen(a[0]) + strlen(a[1]);
    for (const gw_xml_el_t *c = e->child; c != NULL; c = c->next)
        walk(c, depth + 1);
}

static int f_open(void *ud, const gw_xml_el_t *h)
{
    (void)ud;
    walk(h, 0);
    return 0;
}

static int f_stanza(void *ud, const gw_xml_el_t *st)
{
    (void)ud;
    walk(st, 0);
    return 0;
}

static int f_close(void *ud)
{
    (void)ud;
    return 0;
}

static unsigned long long feed(const uint8_t *data, size_t size, size_t cut, int *rc)
{
    static const gw_xmlstream_cbs_t cbs = {f_open, f_stanza, NULL, f_close};
    gw_xmlstream_limits_t lim;
    gw_xmlstream_t *x;

    gw_xmlstream_default_limits(&lim);
    lim.max_stanza = 4096; /* small limits, so that the fuzzer reaches them */
    lim.max_token = 8192;
    lim.max_depth = 8;
    lim.max_names = 64;
    digest = 0;
    if (gw_xmlstream_new(&cbs, NULL, &lim, &x) != 0)
        abort();
    *rc = gw_xmlstream_feed(x, (const char *)data, cut);
    if (*rc == 0)
        *rc = gw_xmlstream_feed(x, (const char *)data + cut, size - cut);
    gw_xmlstream_free(x);
    return digest;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int rc1, rc2;
    unsigned long long d1, d2;

    d1 = feed(data, size, size, &rc1);
    d2 = feed(data, size, size ? data[0] % size : 0, &rc2);
    /*
     * Where a read ends must not change what is read (the token limit aside).
     * One feed may still wait for bytes where the other has already failed:
     * expat decides on the first bytes of a stream only once it has enough.
     */
    if (rc1 == GW_ELIMIT || rc2 == GW_ELIMIT)
        return 0;
    if ((rc1 == rc2 && d1 != d2) || (rc1 != rc2 && rc1 != 0 && rc2 != 0))
        abort();
    return 0;
}
