/*
 * test_httpparse.c - the I/O-free parts of the HTTP transports: JSONP callback
 * names, image magic, form decoding, JSON member lookup, multipart, chunked
 * bodies, SockJS framing and paths.
 */
#include "gw.h"
#include "http.h"
#include "pending.h"
#include "sockjs.h"
#include "task.h"

static char sink_buf[4096];
static size_t sink_len;

static int sink(void *ud, const unsigned char *d, size_t n)
{
    (void)ud;
    if (sink_len + n > sizeof(sink_buf))
        return GW_EFULL;
    memcpy(sink_buf + sink_len, d, n);
    sink_len += n;
    return 0;
}

static char msgs[8][256];
static int nmsgs;

static void on_msg(void *ud, const char *m, size_t n)
{
    (void)ud;
    if (nmsgs < 8 && n < 256) {
        memcpy(msgs[nmsgs], m, n);
        msgs[nmsgs][n] = '\0';
    }
    nmsgs++;
}

static void test_callbacks(void)
{
    const char *good[] = {"cb", "_jp.a1b2c3", "$", "jQuery123_456", "a.b.c.d", "A$_9"};
    const char *bad[] = {"",   "alert(1);x", "a-b",      "1abc",     "a..b", "a.",
                         ".a", "a.b.c.d.e",  "<script>", "\xc3\xbc", "a b"};
    char longname[200];

    for (size_t i = 0; i < GW_ARRAY_SIZE(good); i++)
        ASSERT(gw_http_callback_ok(good[i], strlen(good[i])));
    for (size_t i = 0; i < GW_ARRAY_SIZE(bad); i++)
        ASSERT(!gw_http_callback_ok(bad[i], strlen(bad[i])));
    memset(longname, 'a', sizeof(longname));
    ASSERT(gw_http_callback_ok(longname, 64));
    ASSERT(!gw_http_callback_ok(longname, 65));
    ASSERT(!gw_http_callback_ok(longname, sizeof(longname)));
}

static void test_magic(void)
{
    const char *ext = NULL;
    const unsigned char png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const unsigned char jpg[] = "\xff\xd8\xff\xe0\0\x10JFIF\0\1";
    const unsigned char gif[] = "GIF89a\1\0\1\0\0\0";
    const unsigned char webp[] = "RIFF\0\0\0\0WEBPVP8 ";
    const unsigned char txt[] = "hello world, text";

    ASSERT_STR(gw_http_image_type(png, 16, &ext), "image/png");
    ASSERT_STR(ext, "png");
    ASSERT_STR(gw_http_image_type(jpg, 12, &ext), "image/jpeg");
    ASSERT_STR(ext, "jpg");
    ASSERT_STR(gw_http_image_type(gif, 12, &ext), "image/gif");
    ASSERT_STR(gw_http_image_type(webp, 16, &ext), "image/webp");
    ASSERT_STR(ext, "webp");
    ASSERT(gw_http_image_type(txt, 16, &ext) == NULL);
    ASSERT(gw_http_image_type(png, 4, &ext) == NULL);
}

static void test_form(void)
{
    char out[64];
    const char *f = "a=1&body=x+y%2Bz%26&d=%E4%B8%AD&bad=%zz&nul=%00&e";

    ASSERT_EQ(gw_http_form_get(f, strlen(f), "body", out, sizeof(out)), 6);
    ASSERT_STR(out, "x y+z&");
    ASSERT_EQ(gw_http_form_get(f, strlen(f), "d", out, sizeof(out)), 3);
    ASSERT_STR(out, "\xe4\xb8\xad");
    ASSERT_EQ(gw_http_form_get(f, strlen(f), "bad", out, sizeof(out)), GW_EINVAL);
    ASSERT_EQ(gw_http_form_get(f, strlen(f), "nul", out, sizeof(out)), GW_EINVAL);
    ASSERT_EQ(gw_http_form_get(f, strlen(f), "e", out, sizeof(out)), 0);
    ASSERT_EQ(gw_http_form_get(f, strlen(f), "zz", out, sizeof(out)), GW_ENOTFOUND);
    ASSERT_EQ(gw_http_form_get(f, strlen(f), "body", out, 3), GW_ERANGE);
    ASSERT_EQ(gw_http_urldecode("%4", 2, out, sizeof(out)), GW_EINVAL);
    ASSERT_EQ(gw_http_urldecode("%ff", 3, out, sizeof(out)), GW_EINVAL); /* not UTF-8 */
}

static void test_json_member(void)
{
    const char *j = "{\"op\":\"ack\",\"n\":{\"cid\":\"inner\",\"a\":[1,\"]\",{}]},\"t\":true,"
                    "\"cid\":\"c\\\"1\",\"x\":1.5}";
    char out[32];

    ASSERT_EQ(gw_http_json_member(j, strlen(j), "op", out, sizeof(out)), 3);
    ASSERT_STR(out, "ack");
    ASSERT_EQ(gw_http_json_member(j, strlen(j), "cid", out, sizeof(out)), 3);
    ASSERT_STR(out, "c\"1");
    ASSERT_EQ(gw_http_json_member(j, strlen(j), "t", out, sizeof(out)), GW_EINVAL);
    ASSERT_EQ(gw_http_json_member(j, strlen(j), "for", out, sizeof(out)), GW_ENOTFOUND);
    ASSERT_EQ(gw_http_json_member("[1]", 3, "op", out, sizeof(out)), GW_EINVAL);
}

static void test_multipart(void)
{
    char b[80];
    gw_multipart_t m;
    const char *body = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n"
                       "hello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; "
                       "filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
                       "DATA\r\n--X\r\r\nmore\r\n--XyZ--\r\nepilogue";
    const char *expect = "DATA\r\n--X\r\r\nmore";

    ASSERT_EQ(gw_http_multipart_boundary("multipart/form-data; boundary=XyZ", b, sizeof(b)), 0);
    ASSERT_STR(b, "XyZ");
    ASSERT_EQ(gw_http_multipart_boundary("multipart/form-data; boundary=\"q q\"", b, sizeof(b)), 0);
    ASSERT_STR(b, "q q");
    ASSERT_EQ(gw_http_multipart_boundary("text/plain", b, sizeof(b)), GW_EINVAL);
    /* Whole, then one byte at a time: the same file bytes. */
    for (int step = 0; step < 2; step++) {
        sink_len = 0;
        ASSERT_EQ(gw_multipart_init(&m, "XyZ", sink, NULL), 0);
        if (step == 0) {
            ASSERT_EQ(gw_multipart_feed(&m, (const unsigned char *)body, strlen(body)), 0);
        } else {
            for (size_t i = 0; i < strlen(body); i++)
                ASSERT_EQ(gw_multipart_feed(&m, (const unsigned char *)body + i, 1), 0);
        }
        ASSERT_EQ(gw_multipart_finish(&m), 0);
        ASSERT_EQ(sink_len, strlen(expect));
        ASSERT(memcmp(sink_buf, expect, sink_len) == 0);
    }
    sink_len = 0;
    gw_multipart_init(&m, "XyZ", sink, NULL);
    gw_multipart_feed(&m, (const unsigned char *)"--XyZ\r\n\r\nno file\r\n--XyZ--", 27);
    ASSERT_EQ(gw_multipart_finish(&m), GW_EINVAL);
}

static void test_chunked(void)
{
    const char *body = "4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\n";
    gw_chunked_t c;

    memset(&c, 0, sizeof(c));
    sink_len = 0;
    ASSERT_EQ(gw_chunked_feed(&c, (const unsigned char *)body, strlen(body), sink, NULL), 1);
    ASSERT_EQ(sink_len, 9);
    ASSERT(memcmp(sink_buf, "Wikipedia", 9) == 0);
    memset(&c, 0, sizeof(c));
    sink_len = 0;
    for (size_t i = 0; i + 1 < strlen(body); i++)
        ASSERT_EQ(gw_chunked_feed(&c, (const unsigned char *)body + i, 1, sink, NULL), 0);
    ASSERT_EQ(gw_chunked_feed(&c, (const unsigned char *)body + strlen(body) - 1, 1, sink, NULL),
              1);
    ASSERT_EQ(sink_len, 9);
    memset(&c, 0, sizeof(c));
    ASSERT_EQ(gw_chunked_feed(&c, (const unsigned char *)"zz\r\n", 4, sink, NULL), GW_EINVAL);
}

static void test_sockjs(void)
{
    gw_sbuf_t b;
    char sid[72], tp[32];
    const char *arr = "[\"{\\\"op\\\":\\\"ping\\\"}\", \"\\u00e9\\ud83d\\ude00\"]";

    gw_sbuf_init(&b, 1024);
    gw_sockjs_quote(&b, "a\"\\<\n\xe2\x80\xa8\xc3\xa9", 10);
    ASSERT_EQ(b.len, 27);
    ASSERT(memcmp(b.data, "\"a\\\"\\\\\\u003c\\u000a\\u2028\xc3\xa9\"", b.len) == 0);
    gw_sbuf_free(&b);
    gw_sbuf_init(&b, 1024);
    gw_sockjs_close_frame(&b, 2010, "Another connection still open");
    ASSERT(b.len == 39 && memcmp(b.data, "c[2010,\"Another connection still open\"]", 39) == 0);
    gw_sbuf_free(&b);

    nmsgs = 0;
    ASSERT_EQ(gw_sockjs_decode(arr, strlen(arr), 100, on_msg, NULL), 2);
    ASSERT_STR(msgs[0], "{\"op\":\"ping\"}");
    ASSERT_STR(msgs[1], "\xc3\xa9\xf0\x9f\x98\x80");
    ASSERT_EQ(gw_sockjs_decode("[]", 2, 100, on_msg, NULL), 0);
    nmsgs = 0;
    ASSERT_EQ(gw_sockjs_decode("[\"a\",1]", 7, 100, on_msg, NULL), GW_EINVAL);
    ASSERT_EQ(nmsgs, 0); /* nothing dispatched from an invalid body */
    ASSERT_EQ(gw_sockjs_decode("[\"\\ud800\"]", 10, 100, on_msg, NULL), GW_EINVAL);
    ASSERT_EQ(gw_sockjs_decode("[\"abcdef\"]", 10, 3, on_msg, NULL), GW_ERANGE);
    ASSERT_EQ(gw_sockjs_decode("[\"\\u0000\"]", 10, 100, on_msg, NULL), GW_EINVAL);
    ASSERT_EQ(gw_sockjs_decode("[\"a\"", 4, 100, on_msg, NULL), GW_EINVAL);

    ASSERT_EQ(gw_sockjs_parse_path("/sockjs/chat", sid, sizeof(sid), tp, sizeof(tp)),
              GW_SOCKJS_P_GREETING);
    ASSERT_EQ(gw_sockjs_parse_path("/sockjs/getUserMsg/info", sid, sizeof(sid), tp, sizeof(tp)),
              GW_SOCKJS_P_INFO);
    ASSERT_EQ(
        gw_sockjs_parse_path("/sockjs/chat/iframe-1.6.1.html", sid, sizeof(sid), tp, sizeof(tp)),
        GW_SOCKJS_P_IFRAME);
    ASSERT_EQ(gw_sockjs_parse_path("/sockjs/chat/websocket", sid, sizeof(sid), tp, sizeof(tp)),
              GW_SOCKJS_P_RAW_WS);
    ASSERT_EQ(
        gw_sockjs_parse_path("/sockjs/getChatList/123/ab_c/xhr", sid, sizeof(sid), tp, sizeof(tp)),
        GW_SOCKJS_P_SHORT_ID);
    ASSERT_EQ(gw_sockjs_parse_path("/sockjs/getChatList/1 2/ab_c d-fgh/xhr", sid, sizeof(sid), tp,
                                   sizeof(tp)),
              GW_SOCKJS_P_SESSION);
    ASSERT_STR(sid, "ab_c d-fgh");
    ASSERT_STR(tp, "xhr");
    ASSERT_EQ(
        gw_sockjs_parse_path("/sockjs/chat/1/abcdefgh./xhr", sid, sizeof(sid), tp, sizeof(tp)),
        GW_SOCKJS_P_BAD);
    ASSERT_EQ(gw_sockjs_parse_path("/sockjs/chat/1.2/abc/xhr", sid, sizeof(sid), tp, sizeof(tp)),
              GW_SOCKJS_P_BAD);
    ASSERT_EQ(gw_sockjs_parse_path("/sockjs/chat/1//xhr", sid, sizeof(sid), tp, sizeof(tp)),
              GW_SOCKJS_P_BAD);
    ASSERT_EQ(gw_sockjs_parse_path("/sockjs/other/info", sid, sizeof(sid), tp, sizeof(tp)),
              GW_SOCKJS_P_BAD);
    ASSERT_EQ(gw_sockjs_parse_path("/sockjs/chatx/info", sid, sizeof(sid), tp, sizeof(tp)),
              GW_SOCKJS_P_BAD);
}

/* Every character SockJS servers must escape comes out as \\uXXXX; others pass. */
static void test_sockjs_escapes(void)
{
    static const unsigned ranges[][2] = {
        {0x200c, 0x200f}, {0x2028, 0x202f}, {0x2060, 0x206f}, {0xfff0, 0xffff}};
    gw_sbuf_t b;
    char in[4], want[16];

    for (size_t k = 0; k < sizeof(ranges) / sizeof(ranges[0]); k++)
        for (unsigned cp = ranges[k][0] - 1; cp <= ranges[k][1] + 1; cp++) {
            int esc = cp >= ranges[k][0] && cp <= ranges[k][1];
            in[0] = (char)(0xE0 | (cp >> 12));
            in[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
            in[2] = (char)(0x80 | (cp & 0x3F));
            gw_sbuf_init(&b, 64);
            gw_sockjs_quote(&b, in, 3);
            if (esc) {
                snprintf(want, sizeof(want), "\"\\u%04x\"", cp);
                ASSERT_EQ(b.len, 8);
                ASSERT(memcmp(b.data, want, 8) == 0);
            } else if (cp != 0xfeff && cp <= 0xffff) {
                ASSERT_EQ(b.len, 5);
            }
            gw_sbuf_free(&b);
        }
}

/* A valid 1x1 PNG, then the same with bytes appended, a bad CRC, HTML after the magic. */
static void test_image_check(void)
{
    static const unsigned char png[] = {
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
        0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00,
        0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78,
        0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99,
        0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
    static const unsigned char gif[] = {'G', 'I', 'F', '8', '9', 'a', 1,   0,    1,    0, 0x80, 0,
                                        0,   0,   0,   0,   255, 255, 255, 0x2c, 0,    0, 0,    0,
                                        1,   0,   1,   0,   0,   2,   2,   0x44, 0x01, 0, 0x3b};
    static const unsigned char jpg[] = {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 'J',  'F',  0xff, 0xda,
                                        0x00, 0x02, 0x12, 0x34, 0xff, 0x00, 0x56, 0xff, 0xd9};
    unsigned char buf[256];

    ASSERT_EQ(gw_http_image_check(png, sizeof(png), "image/png"), 1);
    ASSERT_EQ(gw_http_image_check(png, sizeof(png), "image/gif"), 0);
    memcpy(buf, png, sizeof(png));
    memcpy(buf + sizeof(png), "<html>", 6);
    ASSERT_EQ(gw_http_image_check(buf, sizeof(png) + 6, "image/png"), 0);
    buf[30] ^= 1; /* IHDR CRC */
    ASSERT_EQ(gw_http_image_check(buf, sizeof(png), "image/png"), 0);
    memcpy(buf, png, 8);
    memcpy(buf + 8, "<html><script>alert(1)</script></html>", 38);
    ASSERT_EQ(gw_http_image_check(buf, 46, "image/png"), 0);
    ASSERT_EQ(gw_http_image_check(gif, sizeof(gif), "image/gif"), 1);
    ASSERT_EQ(gw_http_image_check(gif, sizeof(gif) - 1, "image/gif"), 0);
    ASSERT_EQ(gw_http_image_check(jpg, sizeof(jpg), "image/jpeg"), 1);
    memcpy(buf, jpg, sizeof(jpg));
    buf[sizeof(jpg)] = 'x';
    ASSERT_EQ(gw_http_image_check(buf, sizeof(jpg) + 1, "image/jpeg"), 0);
    ASSERT_EQ(gw_http_image_check(jpg, 3, "image/jpeg"), 0);
}

static void test_pending(void)
{
    gw_pending_t *p;

    ASSERT_EQ(gw_pending_new(3, 2, &p), 0);
    ASSERT_EQ(gw_pending_acquire(p, "1.1.1.1"), 0);
    ASSERT_EQ(gw_pending_acquire(p, "1.1.1.1"), 0);
    ASSERT_EQ(gw_pending_acquire(p, "1.1.1.1"), GW_EFULL);
    ASSERT_EQ(gw_pending_full(p, "1.1.1.1"), 1);
    ASSERT_EQ(gw_pending_acquire(p, "2.2.2.2"), 0);
    ASSERT_EQ(gw_pending_acquire(p, "3.3.3.3"), GW_EFULL); /* global cap */
    gw_pending_release(p, "1.1.1.1");
    ASSERT_EQ(gw_pending_total(p), 2);
    ASSERT_EQ(gw_pending_acquire(p, "3.3.3.3"), 0);
    gw_pending_free(p);
}

/* The builder formats any length: nothing is silently dropped (the htmlfile prelude was). */
static void test_sbuf_printf(void)
{
    gw_sbuf_t b;
    char big[1000];

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    gw_sbuf_init(&b, 4096);
    gw_sbuf_printf(&b, "<%s>", big);
    ASSERT_EQ(b.overflow, 0);
    ASSERT_EQ(b.len, sizeof(big) + 1);
    gw_sbuf_free(&b);
}

int main(void)
{
    test_sockjs_escapes();
    test_image_check();
    test_pending();
    test_sbuf_printf();
    test_callbacks();
    test_magic();
    test_form();
    test_json_member();
    test_multipart();
    test_chunked();
    test_sockjs();
    TASK_DONE();
}
