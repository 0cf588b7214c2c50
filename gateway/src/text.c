/*
 * text.c - UTF-8, XML and JSON text helpers.
 */
#include "text.h"
#include "gw.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Decodes one code point at s (n bytes left); returns its length or 0 when invalid. */
static size_t utf8_next(const unsigned char *s, size_t n, unsigned *cp)
{
    unsigned c = s[0];

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        if (n < 2 || (s[1] & 0xC0) != 0x80)
            return 0;
        *cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        *cp = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        if (*cp < 0x800 || (*cp >= 0xD800 && *cp <= 0xDFFF))
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        *cp = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
        if (*cp < 0x10000 || *cp > 0x10FFFF)
            return 0;
        return 4;
    }
    return 0;
}

int gw_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        unsigned cp;
        size_t k = utf8_next(p + i, n - i, &cp);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

int gw_xml_text_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        unsigned cp;
        size_t k = utf8_next(p + i, n - i, &cp);
        if (k == 0)
            return 0;
        if (cp < 0x20 && cp != 0x09 && cp != 0x0A && cp != 0x0D)
            return 0;
        if (cp == 0xFFFE || cp == 0xFFFF)
            return 0;
        i += k;
    }
    return 1;
}

void gw_xml_escape(gw_sbuf_t *b, const char *s, size_t n)
{
    size_t start = 0;

    for (size_t i = 0; i < n; i++) {
        const char *rep;
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&apos;"; break;
        /* A CR would be normalised away by the receiving parser. */
        case '\r': rep = "&#13;"; break;
        default: continue;
        }
        gw_sbuf_append(b, s + start, i - start);
        gw_sbuf_puts(b, rep);
        start = i + 1;
    }
    gw_sbuf_append(b, s + start, n - start);
}

void gw_json_escape(gw_sbuf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = 0;

    gw_sbuf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t elen;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        switch (c) {
        case '"':
            memcpy(esc, "\\\"", 2);
            elen = 2;
            break;
        case '\\':
            memcpy(esc, "\\\\", 2);
            elen = 2;
            break;
        case '\n':
            memcpy(esc, "\\n", 2);
            elen = 2;
            break;
        case '\r':
            memcpy(esc, "\\r", 2);
            elen = 2;
            break;
        case '\t':
            memcpy(esc, "\\t", 2);
            elen = 2;
            break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        gw_sbuf_append(b, s + start, i - start);
        gw_sbuf_append(b, esc, elen);
        start = i + 1;
    }
    gw_sbuf_append(b, s + start, n - start);
    gw_sbuf_append(b, "\"", 1);
}

static int user_char(int c)
{
    return isalnum(c) || c == '_' || c == '.' || c == '-';
}

int gw_user_id_ok(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++)
        if (n >= 64 || !user_char((unsigned char)s[n]) || (unsigned char)s[n] >= 0x80)
            return 0;
    return n > 0;
}

int gw_user_id_canonical(const char *s)
{
    if (!gw_user_id_ok(s))
        return 0;
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            return 0;
    return 1;
}

static int domain_ok(const char *d, size_t n)
{
    if (n == 0 || n > 253 || d[0] == '.' || d[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)d[i];
        if (!(isalnum(c) || c == '-' || c == '.'))
            return 0;
        if (c == '.' && d[i + 1] == '.')
            return 0;
    }
    return 1;
}

int gw_domain_ip_literal(const char *d, size_t n)
{
    size_t last = n;

    if (memchr(d, ':', n) || memchr(d, '[', n))
        return 1;
    while (last > 0 && d[last - 1] != '.')
        last--;
    if (last == n)
        return 0; /* ends with a dot, or empty: not a literal (and not a valid name) */
    for (size_t i = last; i < n; i++)
        if (d[i] < '0' || d[i] > '9')
            return 0;
    return 1;
}

/* The next entry of a domain list at *p: its start and length; 0 at the end. */
static size_t list_next(const char **p, const char **start)
{
    const char *s = *p;
    size_t n;

    while (*s == ',' || *s == ' ' || *s == '\t')
        s++;
    n = strcspn(s, ", \t");
    *start = s;
    *p = s + n;
    return n;
}

int gw_domain_list_check(const char *list, char *err, size_t errlen)
{
    const char *p = list, *e;
    size_t n;

    while ((n = list_next(&p, &e)) > 0) {
        if (n == 1 && e[0] == '*')
            continue;
        if (!domain_ok(e, n) || gw_domain_ip_literal(e, n)) {
            snprintf(err, errlen,
                     "key 'allowed_domains': '%.*s' is not a domain name (IP literals are never "
                     "allowed)",
                     (int)(n > 200 ? 200 : n), e);
            return GW_EINVAL;
        }
    }
    return 0;
}

int gw_domain_list_has(const char *list, const char *domain)
{
    const char *p = list, *e;
    size_t n, dlen = strlen(domain);

    if (!domain_ok(domain, dlen) || gw_domain_ip_literal(domain, dlen))
        return 0;
    while ((n = list_next(&p, &e)) > 0) {
        if ((n == 1 && e[0] == '*') || (n == dlen && strncasecmp(e, domain, n) == 0))
            return 1;
    }
    return 0;
}

int gw_jid_bare_ok(const char *s, size_t n)
{
    const char *at = memchr(s, '@', n);
    const char *dom = at ? at + 1 : s;
    size_t nlen = at ? (size_t)(at - s) : 0, dlen = n - (size_t)(dom - s);

    if (at != NULL) {
        if (nlen == 0 || nlen > 1023 || !gw_utf8_valid(s, nlen))
            return 0;
        for (size_t i = 0; i < nlen; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c <= 0x20 || c == 0x7f || strchr("\"&'/:<>@", c) != NULL)
                return 0;
        }
    }
    return domain_ok(dom, dlen);
}

int gw_jid_resolve(const char *in, const char *users_domain, char *out, size_t outlen)
{
    const char *at = strchr(in, '@');
    size_t nlen, dlen, total;
    const char *dom;

    if (at == NULL) {
        if (!gw_user_id_ok(in))
            return GW_EINVAL;
        nlen = strlen(in);
        dom = users_domain;
        dlen = strlen(users_domain);
    } else {
        char node[65];
        nlen = (size_t)(at - in);
        if (nlen == 0 || nlen >= sizeof(node))
            return GW_EINVAL;
        memcpy(node, in, nlen);
        node[nlen] = '\0';
        if (!gw_user_id_ok(node))
            return GW_EINVAL;
        dom = at + 1;
        dlen = strlen(dom);
        if (!domain_ok(dom, dlen))
            return GW_EINVAL;
    }
    total = nlen + 1 + dlen;
    if (total + 1 > outlen)
        return GW_EINVAL;
    /* JIDs compare case-insensitively (nodeprep); keep one spelling. */
    for (size_t i = 0; i < nlen; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[nlen] = '@';
    for (size_t i = 0; i < dlen; i++)
        out[nlen + 1 + i] = (char)tolower((unsigned char)dom[i]);
    out[total] = '\0';
    return 0;
}

int gw_jid_bare(const char *jid, char *out, size_t outlen)
{
    size_t n = strcspn(jid, "/");

    if (n == 0 || n + 1 > outlen)
        return GW_EINVAL;
    memcpy(out, jid, n);
    out[n] = '\0';
    return 0;
}
