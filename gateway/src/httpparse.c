/*
 * httpparse.c - the parsers of the HTTP transports: query strings, form
 * bodies, JSONP callback names, picture formats, multipart/form-data and
 * chunked request bodies. Pure functions: bytes in, values out, no I/O, so
 * each is unit tested (tests/unit/test_httpparse.c) and fuzzed
 * (tests/fuzz/fuzz_http.c, fuzz_multipart.c).
 */
#define _GNU_SOURCE /* strcasestr */
#include "httpparse.h"
#include "gw.h"
#include "text.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

static int ident_start(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == '$';
}

static int ident_char(int c)
{
    return ident_start(c) || (c >= '0' && c <= '9');
}

int gw_http_callback_ok(const char *name, size_t len)
{
    size_t i = 0;
    int parts = 0;

    if (name == NULL)
        return 0;
    while (i < len) {
        size_t start = i;
        if (!ident_start((unsigned char)name[i]))
            return 0;
        i++;
        while (i < len && ident_char((unsigned char)name[i]))
            i++;
        if (i - start > 64)
            return 0;
        if (++parts > 4)
            return 0;
        if (i == len)
            return 1;
        if (name[i] != '.')
            return 0;
        i++;
        if (i == len)
            return 0;
    }
    return 0;
}

const char *gw_http_image_type(const unsigned char *b, size_t n, const char **ext)
{
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) {
        *ext = "jpg";
        return "image/jpeg";
    }
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) {
        *ext = "png";
        return "image/png";
    }
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0)) {
        *ext = "gif";
        return "image/gif";
    }
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0) {
        *ext = "webp";
        return "image/webp";
    }
    return NULL;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int gw_http_urldecode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n)
                return GW_EINVAL;
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return GW_EINVAL;
            c = hi * 16 + lo;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == 0)
            return GW_EINVAL;
        if (o + 1 >= outlen)
            return GW_ERANGE;
        out[o++] = (char)c;
    }
    if (outlen == 0)
        return GW_ERANGE;
    out[o] = '\0';
    if (!gw_utf8_valid(out, o))
        return GW_EINVAL;
    return (int)o;
}

int gw_http_form_get(const char *form, size_t n, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name), i = 0;

    while (i < n) {
        size_t end = i, eq;
        while (end < n && form[end] != '&')
            end++;
        eq = i;
        while (eq < end && form[eq] != '=')
            eq++;
        if (eq - i == nlen && memcmp(form + i, name, nlen) == 0)
            return gw_http_urldecode(eq < end ? form + eq + 1 : form + end,
                                     eq < end ? end - eq - 1 : 0, out, outlen);
        i = end + 1;
    }
    return GW_ENOTFOUND;
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* Index just past the JSON string starting at s[i] == '"', or 0 when unterminated. */
static size_t skip_string(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return 0;
}

/* Index just past the JSON value at s[i], or 0 when malformed. */
static size_t skip_value(const char *s, size_t n, size_t i)
{
    int depth = 0;

    if (i >= n)
        return 0;
    do {
        char c = s[i];
        if (c == '"') {
            i = skip_string(s, n, i);
            if (i == 0)
                return 0;
            continue;
        }
        if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']') {
            if (depth == 0)
                return i; /* the end of a scalar at the end of a container */
            depth--;
        } else if (depth == 0 && (c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t'))
            return i;
        i++;
    } while (i < n && depth >= 0 && !(depth == 0 && (s[i - 1] == '}' || s[i - 1] == ']')));
    return depth == 0 ? i : 0;
}

int gw_http_json_member(const char *json, size_t n, const char *name, char *out, size_t outlen)
{
    size_t i = skip_ws(json, n, 0), nlen = strlen(name);

    if (i >= n || json[i] != '{')
        return GW_EINVAL;
    i = skip_ws(json, n, i + 1);
    while (i < n && json[i] == '"') {
        size_t kstart = i + 1, kend = skip_string(json, n, i), vstart, vend;
        if (kend == 0)
            return GW_EINVAL;
        i = skip_ws(json, n, kend);
        if (i >= n || json[i] != ':')
            return GW_EINVAL;
        vstart = skip_ws(json, n, i + 1);
        vend = skip_value(json, n, vstart);
        if (vend == 0 || vend <= vstart)
            return GW_EINVAL;
        if (kend - 1 - kstart == nlen && memcmp(json + kstart, name, nlen) == 0) {
            size_t o = 0;
            if (json[vstart] != '"')
                return GW_EINVAL;
            for (size_t k = vstart + 1; k + 1 < vend; k++) {
                char c = json[k];
                if (c == '\\') {
                    k++;
                    c = json[k];
                    if (c != '"' && c != '\\' && c != '/')
                        return GW_EINVAL;
                }
                if (o + 1 >= outlen)
                    return GW_EINVAL;
                out[o++] = c;
            }
            out[o] = '\0';
            return (int)o;
        }
        i = skip_ws(json, n, vend);
        if (i < n && json[i] == ',')
            i = skip_ws(json, n, i + 1);
        else
            break;
    }
    return GW_ENOTFOUND;
}

int gw_http_multipart_boundary(const char *ctype, char *out, size_t outlen)
{
    const char *p;
    size_t n;

    if (strncasecmp(ctype, "multipart/form-data", 19) != 0)
        return GW_EINVAL;
    p = strcasestr(ctype, "boundary=");
    if (p == NULL)
        return GW_EINVAL;
    p += 9;
    if (*p == '"') {
        p++;
        n = strcspn(p, "\"");
        if (p[n] != '"')
            return GW_EINVAL;
    } else {
        n = strcspn(p, "; \t");
    }
    if (n == 0 || n > 70 || n + 1 > outlen)
        return GW_EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == '\r' || p[i] == '\n' ||
            (unsigned char)p[i] > 0x7e)
            return GW_EINVAL;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

enum { MP_DELIM, MP_AFTER1, MP_AFTER2, MP_HEADERS, MP_BODY, MP_DONE };

int gw_multipart_init(gw_multipart_t *m, const char *boundary, gw_multipart_sink_cb sink, void *ud)
{
    size_t n = strlen(boundary);

    memset(m, 0, sizeof(*m));
    if (n == 0 || n + 4 >= sizeof(m->delim))
        return GW_EINVAL;
    memcpy(m->delim, "\r\n--", 4);
    memcpy(m->delim + 4, boundary, n);
    m->dlen = n + 4;
    /* The first delimiter has no CRLF before it: pretend one was seen. */
    m->match = 2;
    m->state = MP_BODY;
    m->sink = sink;
    m->ud = ud;
    return 0;
}

static int part_is_file(const char *hdr, size_t n)
{
    /* Content-Disposition: form-data; name="f"; filename="x.png" */
    char buf[sizeof(((gw_multipart_t *)0)->hdr) + 1];

    memcpy(buf, hdr, n);
    buf[n] = '\0';
    for (char *line = buf; line && *line;) {
        char *next = strstr(line, "\r\n");
        if (next)
            *next = '\0';
        if (strncasecmp(line, "content-disposition:", 20) == 0 && strstr(line, "filename=") != NULL)
            return 1;
        line = next ? next + 2 : NULL;
    }
    return 0;
}

int gw_multipart_feed(gw_multipart_t *m, const unsigned char *in, size_t len)
{
    size_t run = 0; /* start of pending file bytes in in[] */
    int rc;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = in[i];
        switch (m->state) {
        case MP_BODY:
            if (m->match < m->dlen && c == (unsigned char)m->delim[m->match]) {
                if (m->match == 0 && m->in_file && i > run &&
                    (rc = m->sink(m->ud, in + run, i - run)) < 0)
                    return rc;
                m->match++;
                if (m->match == m->dlen) {
                    if (m->in_file) {
                        m->in_file = 0;
                        m->file_done = 1;
                    }
                    m->match = 0;
                    m->state = MP_AFTER1;
                }
                run = i + 1;
                break;
            }
            if (m->match > 0) {
                /* The held-back bytes were data; '\r' only starts the delimiter. */
                size_t held = m->match;
                m->match = 0;
                if (m->in_file && (rc = m->sink(m->ud, (const unsigned char *)m->delim, held)) < 0)
                    return rc;
                run = i;
                if (c == (unsigned char)m->delim[0]) {
                    m->match = 1;
                    run = i + 1;
                }
            }
            break;
        case MP_AFTER1:
            if (c == '-')
                m->state = MP_AFTER2;
            else if (c == '\r')
                m->state = MP_AFTER2 + 10; /* expect \n */
            else if (c != ' ' && c != '\t')
                return GW_EINVAL;
            break;
        case MP_AFTER2:
            if (c != '-')
                return GW_EINVAL;
            m->state = MP_DONE;
            break;
        case MP_AFTER2 + 10:
            if (c != '\n')
                return GW_EINVAL;
            m->state = MP_HEADERS;
            m->hlen = 0;
            break;
        case MP_HEADERS:
            if (m->hlen >= sizeof(m->hdr))
                return GW_EINVAL;
            m->hdr[m->hlen++] = (char)c;
            if (m->hlen >= 2 && m->hdr[m->hlen - 2] == '\r' && m->hdr[m->hlen - 1] == '\n' &&
                (m->hlen == 2 ||
                 (m->hlen >= 4 && m->hdr[m->hlen - 4] == '\r' && m->hdr[m->hlen - 3] == '\n'))) {
                m->in_file = !m->file_done && part_is_file(m->hdr, m->hlen);
                m->state = MP_BODY;
                run = i + 1;
            }
            break;
        case MP_DONE: return 0;
        default: return GW_EINVAL;
        }
    }
    if (m->state == MP_BODY && m->in_file && m->match == 0 && len > run &&
        (rc = m->sink(m->ud, in + run, len - run)) < 0)
        return rc;
    /* With a partial match pending, its bytes are held back (they are delim[0..match)). */
    return 0;
}

int gw_multipart_finish(const gw_multipart_t *m)
{
    return m->file_done ? 0 : GW_EINVAL;
}

enum {
    CH_SIZE,
    CH_EXT,
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER,
    CH_TRAILER_LF,
    CH_DONE
};

int gw_chunked_feed(gw_chunked_t *c, const unsigned char *in, size_t len, gw_multipart_sink_cb sink,
                    void *ud)
{
    size_t i = 0;
    int rc;

    while (i < len) {
        unsigned char b = in[i];
        switch (c->state) {
        case CH_SIZE: {
            int v = hexval(b);
            if (v >= 0) {
                if (++c->line > 15)
                    return GW_EINVAL;
                c->left = c->left * 16u + (uint64_t)v;
            } else if (b == ';' || b == ' ' || b == '\t') {
                c->state = CH_EXT;
            } else if (b == '\r' && c->line) {
                c->state = CH_SIZE_LF;
            } else {
                return GW_EINVAL;
            }
            i++;
            break;
        }
        case CH_EXT:
            if (b == '\r')
                c->state = CH_SIZE_LF;
            i++;
            break;
        case CH_SIZE_LF:
            if (b != '\n')
                return GW_EINVAL;
            i++;
            c->line = 0;
            c->state = c->left ? CH_DATA : CH_TRAILER;
            break;
        case CH_DATA: {
            size_t n = len - i < c->left ? len - i : (size_t)c->left;
            if ((rc = sink(ud, in + i, n)) < 0)
                return rc;
            i += n;
            c->left -= n;
            if (c->left == 0)
                c->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (b != '\r')
                return GW_EINVAL;
            c->state = CH_DATA_LF;
            i++;
            break;
        case CH_DATA_LF:
            if (b != '\n')
                return GW_EINVAL;
            c->state = CH_SIZE;
            c->line = 0;
            i++;
            break;
        case CH_TRAILER:
            if (b == '\r')
                c->state = CH_TRAILER_LF;
            else if (++c->line > 4096)
                return GW_EINVAL;
            i++;
            break;
        case CH_TRAILER_LF:
            if (b != '\n')
                return GW_EINVAL;
            i++;
            if (c->line == 0) {
                c->state = CH_DONE;
                return 1;
            }
            c->line = 0;
            c->state = CH_TRAILER;
            break;
        default: return 1;
        }
    }
    return c->state == CH_DONE ? 1 : 0;
}

/* ---- picture structure --------------------------------------------------------------- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint32_t crc32_png(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;

    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

/* Signature, IHDR first, every chunk's CRC, IEND last and at the very end. */
static int png_ok(const unsigned char *b, size_t n)
{
    size_t i = 8;
    int first = 1;

    while (i + 12 <= n) {
        uint32_t len = be32(b + i);
        const unsigned char *type = b + i + 4;
        if (len > n - i - 12)
            return 0;
        for (int k = 0; k < 4; k++)
            if (!((type[k] >= 'A' && type[k] <= 'Z') || (type[k] >= 'a' && type[k] <= 'z')))
                return 0;
        if (first && (memcmp(type, "IHDR", 4) != 0 || len != 13))
            return 0;
        first = 0;
        if (crc32_png(type, (size_t)len + 4) != be32(b + i + 8 + len))
            return 0;
        i += 12 + (size_t)len;
        if (memcmp(type, "IEND", 4) == 0)
            return len == 0 && i == n;
    }
    return 0;
}

/* Sub-blocks (size byte, data) up to the zero terminator; the index after it, or 0. */
static size_t gif_blocks(const unsigned char *b, size_t n, size_t i)
{
    while (i < n) {
        size_t k = b[i];
        if (k == 0)
            return i + 1;
        i += 1 + k;
    }
    return 0;
}

static int gif_ok(const unsigned char *b, size_t n)
{
    size_t i = 13;

    if (n < 14)
        return 0;
    if (b[10] & 0x80)
        i += 3u * (1u << ((b[10] & 7) + 1));
    while (i < n) {
        if (b[i] == 0x3B)
            return i + 1 == n; /* the trailer ends the file */
        if (b[i] == 0x21) {
            if (i + 2 > n || (i = gif_blocks(b, n, i + 2)) == 0)
                return 0;
        } else if (b[i] == 0x2C) {
            if (i + 10 > n)
                return 0;
            {
                unsigned flags = b[i + 9];
                i += 10;
                if (flags & 0x80)
                    i += 3u * (1u << ((flags & 7) + 1));
            }
            if (i + 1 > n || (i = gif_blocks(b, n, i + 1)) == 0) /* LZW minimum code size */
                return 0;
        } else {
            return 0;
        }
    }
    return 0;
}

/* Marker segments up to SOS, entropy-coded data, more segments, EOI at the very end. */
static int jpeg_ok(const unsigned char *b, size_t n)
{
    size_t i = 2;

    while (i + 2 <= n) {
        unsigned m;
        if (b[i] != 0xFF)
            return 0;
        while (i < n && b[i] == 0xFF)
            i++;
        if (i >= n)
            return 0;
        m = b[i++];
        if (m == 0xD9)
            return i == n;
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7))
            continue;
        if (m == 0x00 || m == 0xD8 || i + 2 > n)
            return 0;
        {
            size_t len = (size_t)b[i] << 8 | b[i + 1];
            if (len < 2 || len > n - i)
                return 0;
            i += len;
        }
        if (m == 0xDA) {
            /* Scan data: up to a marker that is neither a stuffed 00 nor a restart. */
            while (i + 1 < n &&
                   !(b[i] == 0xFF && b[i + 1] != 0x00 && !(b[i + 1] >= 0xD0 && b[i + 1] <= 0xD7)))
                i++;
        }
    }
    return 0;
}

/* RIFF length equal to the file's, chunks that tile it exactly, an image chunk first. */
static int webp_ok(const unsigned char *b, size_t n)
{
    size_t i = 12;

    if (n < 20 || (size_t)le32(b + 4) + 8 != n)
        return 0;
    if (memcmp(b + 12, "VP8 ", 4) != 0 && memcmp(b + 12, "VP8L", 4) != 0 &&
        memcmp(b + 12, "VP8X", 4) != 0)
        return 0;
    while (i + 8 <= n) {
        size_t len = le32(b + i + 4);
        if (len > n - i - 8)
            return 0;
        i += 8 + len + (len & 1);
    }
    return i == n;
}

int gw_http_image_check(const unsigned char *b, size_t n, const char *mime)
{
    const char *ext, *t = gw_http_image_type(b, n, &ext);

    if (t == NULL || mime == NULL || strcmp(t, mime) != 0)
        return 0;
    if (strcmp(t, "image/png") == 0)
        return png_ok(b, n);
    if (strcmp(t, "image/gif") == 0)
        return gif_ok(b, n);
    if (strcmp(t, "image/jpeg") == 0)
        return jpeg_ok(b, n);
    return webp_ok(b, n);
}
