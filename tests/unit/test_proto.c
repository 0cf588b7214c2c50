#include "gw.h"
#include "proto.h"
#include "task.h"

static int parse(const char *s, gw_frame_t *f, const char **code)
{
    const char *reason;
    char cid[80];

    return gw_proto_parse(s, strlen(s), 100, f, code, &reason, cid, sizeof(cid));
}

static void test_parse_ok(void)
{
    gw_frame_t f;
    const char *code = NULL;

    ASSERT_EQ(parse("{\"op\":\"hello\",\"v\":1,\"ticket\":\"t\"}", &f, &code), 0);
    ASSERT_EQ(f.op, GW_OP_HELLO);
    ASSERT_EQ(f.v, 1);
    ASSERT_STR(f.ticket, "t");
    gw_frame_free(&f);

    ASSERT_EQ(parse("{\"op\":\"send\",\"to\":\"bob\",\"body\":\"<b>&\\u00e9\",\"cid\":\"c1\"} \n",
                    &f, &code),
              0);
    ASSERT_EQ(f.op, GW_OP_SEND);
    ASSERT_STR(f.body, "<b>&\xc3\xa9");
    ASSERT_EQ(f.body_len, 6);
    ASSERT_STR(f.kind, "text");
    gw_frame_free(&f);

    ASSERT_EQ(parse("{\"op\":\"open\",\"with\":null}", &f, &code), 0);
    ASSERT_EQ(f.with_null, 1);
    gw_frame_free(&f);

    ASSERT_EQ(parse("{\"op\":\"ping\",\"t\":{\"a\":[1,\"/\"]}}", &f, &code), 0);
    ASSERT_STR(f.t_json, "{\"a\":[1,\"/\"]}");
    gw_frame_free(&f);
}

static void test_parse_bad(void)
{
    gw_frame_t f;
    const char *code = NULL, *reason = NULL;
    char cid[80];

    ASSERT(parse("{", &f, &code) != 0);
    ASSERT_STR(code, "bad_json");
    ASSERT(parse("[1]", &f, &code) != 0);
    ASSERT_STR(code, "bad_json");
    ASSERT(parse("{} {}", &f, &code) != 0);
    ASSERT_STR(code, "bad_json");
    ASSERT(parse("{\"op\":\"fly\"}", &f, &code) != 0);
    ASSERT_STR(code, "unknown_op");
    ASSERT(parse("{\"op\":3}", &f, &code) != 0);
    ASSERT_STR(code, "bad_frame");
    ASSERT(parse("{\"op\":\"send\",\"to\":\"b\",\"cid\":\"c\"}", &f, &code) != 0);
    ASSERT_STR(code, "bad_frame");
    ASSERT(parse("{\"op\":\"send\",\"to\":\"b\",\"body\":\"x\\u0001\",\"cid\":\"c\"}", &f, &code) !=
           0);
    ASSERT_STR(code, "bad_frame");
    ASSERT(parse("{\"op\":\"hello\"}", &f, &code) != 0);
    ASSERT_STR(code, "bad_hello");
    /* A numeric read id is named as such, not as a missing 'with' (issue 11, item 9). */
    ASSERT(gw_proto_parse("{\"op\":\"read\",\"with\":\"bob\",\"id\":12}", 34, 100, &f, &code,
                          &reason, cid, sizeof(cid)) != 0);
    ASSERT_STR(code, "bad_frame");
    ASSERT(strstr(reason, "'id'") != NULL);
    {
        char op[16];
        const char *h = "{\"op\":\"history\",\"with\":\"b\",\"limit\":0}";
        ASSERT_EQ(gw_proto_failed_op(h, strlen(h), op, sizeof(op)), 0);
        ASSERT_STR(op, "history");
        ASSERT_EQ(gw_proto_failed_op("{\"op\":\"send\"}", 13, op, sizeof(op)), GW_ENOTFOUND);
        ASSERT_EQ(gw_proto_failed_op("{", 1, op, sizeof(op)), GW_ENOTFOUND);
    }
    /* Strings are read with their length: an escaped NUL never truncates a value (issue 9). */
    ASSERT(parse("{\"op\":\"send\",\"to\":\"app1\\u0000@evil.example\",\"body\":\"x\",\"cid\":"
                 "\"c\"}",
                 &f, &code) != 0);
    ASSERT_STR(code, "bad_frame");
    ASSERT(parse("{\"op\":\"hello\",\"ticket\":\"alice:1:00\\u0000junk\"}", &f, &code) != 0);
    ASSERT_STR(code, "bad_hello");
    ASSERT(parse("{\"op\":\"hello\",\"user\":\"alice\\u0000\"}", &f, &code) != 0);
    ASSERT_STR(code, "bad_hello");
    ASSERT(parse("{\"op\":\"send\",\"to\":\"b\",\"body\":\"x\\u0000y\",\"cid\":\"c\"}", &f,
                 &code) != 0);
    ASSERT_STR(code, "bad_frame");
    ASSERT(parse("{\"op\":\"send\",\"to\":\"b\",\"body\":\"x\",\"cid\":\"c\\u0000\"}", &f, &code) !=
           0);
    ASSERT_STR(code, "bad_frame");
    ASSERT(parse("{\"op\":\"open\",\"with\":\"bob\\u0000x\"}", &f, &code) != 0);
    ASSERT_STR(code, "bad_frame");
    ASSERT(parse("{\"op\":\"history\",\"with\":\"bob\\u0000x\"}", &f, &code) != 0);
    ASSERT_STR(code, "bad_frame");
    ASSERT(parse("{\"op\":\"read\",\"with\":\"bob\",\"id\":\"5\\u0000\"}", &f, &code) != 0);
    ASSERT_STR(code, "bad_frame");
    ASSERT(parse("{\"op\":\"hel\\u0000lo\"}", &f, &code) != 0);
    /* A body over max_body (100) is refused, and the error can name the cid. */
    {
        char big[300];
        snprintf(big, sizeof(big),
                 "{\"op\":\"send\",\"to\":\"b\",\"cid\":\"k9\",\"body\":\"%0150d\"}", 0);
        ASSERT(gw_proto_parse(big, strlen(big), 100, &f, &code, &reason, cid, sizeof(cid)) != 0);
        ASSERT_STR(cid, "k9");
    }
}

static void test_encode(void)
{
    gw_payload_t *p;
    gw_msg_t m = {
        12345678901234567ull, 1700000000000ull, "a@x", "b@y", "hi \"there\"\n", 11, "text", NULL};

    p = gw_proto_msg(&m, "a@x", 1);
    ASSERT(p != NULL);
    ASSERT_STR((char *)gw_payload_data(p),
               "{\"op\":\"msg\",\"id\":\"12345678901234567\",\"conv\":\"a@x\",\"from\":\"a@x\","
               "\"to\":\"b@y\",\"body\":\"hi \\\"there\\\"\\n\",\"kind\":\"text\",\"ts\":"
               "1700000000000,\"open\":true}");
    gw_payload_unref(p);
    p = gw_proto_ack("c1", 7, 8, 1);
    ASSERT_STR((char *)gw_payload_data(p),
               "{\"op\":\"ack\",\"cid\":\"c1\",\"id\":\"7\",\"ts\":8,\"queued\":true}");
    gw_payload_unref(p);
    p = gw_proto_error("bad_json", "x", NULL);
    ASSERT_STR((char *)gw_payload_data(p),
               "{\"op\":\"error\",\"code\":\"bad_json\",\"reason\":\"x\"}");
    gw_payload_unref(p);
    p = gw_proto_opened(NULL);
    ASSERT_STR((char *)gw_payload_data(p), "{\"op\":\"opened\",\"with\":null}");
    gw_payload_unref(p);
}

int main(void)
{
    test_parse_ok();
    test_parse_bad();
    test_encode();
    TASK_DONE();
}
