#include "gw.h"
#include "task.h"
#include "text.h"

static void test_utf8(void)
{
    ASSERT(gw_utf8_valid("hello", 5));
    ASSERT(gw_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
    ASSERT(!gw_utf8_valid("\xc0\xaf", 2));         /* overlong */
    ASSERT(!gw_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    ASSERT(!gw_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    ASSERT(!gw_utf8_valid("\xe2\x82", 2));         /* truncated */
    ASSERT(!gw_utf8_valid("\xff", 1));
}

static void test_xml_ok(void)
{
    ASSERT(gw_xml_text_ok("a\tb\nc\rd", 7));
    ASSERT(!gw_xml_text_ok("a\x01", 2));
    ASSERT(!gw_xml_text_ok("a\0b", 3));
    ASSERT(!gw_xml_text_ok("\xef\xbf\xbe", 3)); /* U+FFFE */
}

static void test_escape(void)
{
    gw_sbuf_t b;

    gw_sbuf_init(&b, 1000);
    gw_xml_escape(&b, "<b>&'\"\r", 7);
    ASSERT_STR(b.data, "&lt;b&gt;&amp;&apos;&quot;&#13;");
    gw_sbuf_free(&b);

    gw_json_escape(&b, "a\"\\\n\x01/\xc3\xa9", 8);
    ASSERT_STR(b.data, "\"a\\\"\\\\\\n\\u0001/\xc3\xa9\"");
    gw_sbuf_free(&b);

    gw_sbuf_init(&b, 4);
    gw_sbuf_puts(&b, "abcdef");
    ASSERT(b.overflow);
    gw_sbuf_free(&b);
}

static void test_jid(void)
{
    char out[64];

    ASSERT(gw_user_id_ok("alice_1.x-y"));
    ASSERT(!gw_user_id_ok(""));
    ASSERT(!gw_user_id_ok("a b"));
    ASSERT(!gw_user_id_ok("a@b"));
    ASSERT(!gw_user_id_ok("a:b"));
    ASSERT_EQ(gw_jid_resolve("Bob", "gw.shop.test", out, sizeof(out)), 0);
    ASSERT_STR(out, "bob@gw.shop.test");
    ASSERT_EQ(gw_jid_resolve("seller7@Shop.Test", "gw.shop.test", out, sizeof(out)), 0);
    ASSERT_STR(out, "seller7@shop.test");
    ASSERT(gw_jid_resolve("a@b/res", "d", out, sizeof(out)) != 0);
    ASSERT(gw_jid_resolve("@b", "d", out, sizeof(out)) != 0);
    ASSERT(gw_jid_resolve("a@", "d", out, sizeof(out)) != 0);
    ASSERT(gw_jid_resolve("a@b..c", "d", out, sizeof(out)) != 0);
    ASSERT(gw_jid_resolve("<x>", "d", out, sizeof(out)) != 0);
    ASSERT(gw_jid_resolve("averyveryveryverylongname@example.com", "d", out, 16) != 0);
    ASSERT_EQ(gw_jid_bare("a@b/c/d", out, sizeof(out)), 0);
    ASSERT_STR(out, "a@b");
}

static void test_identity_and_domains(void)
{
    char err[200];

    ASSERT(gw_user_id_canonical("alice.b-1_x"));
    ASSERT(!gw_user_id_canonical("Alice"));
    ASSERT(!gw_user_id_canonical("ALICE"));
    ASSERT(!gw_user_id_canonical(""));
    ASSERT(!gw_user_id_canonical("a b"));

    ASSERT(gw_domain_ip_literal("127.0.0.1", 9));
    ASSERT(gw_domain_ip_literal("10.1", 4));
    ASSERT(gw_domain_ip_literal("2130706433", 10));
    ASSERT(gw_domain_ip_literal("::1", 3));
    ASSERT(!gw_domain_ip_literal("shop.test", 9));
    ASSERT(!gw_domain_ip_literal("1.example", 9));

    ASSERT_EQ(gw_domain_list_check("shop.test, gw.shop.test", err, sizeof(err)), 0);
    ASSERT_EQ(gw_domain_list_check("", err, sizeof(err)), 0);
    ASSERT_EQ(gw_domain_list_check("*", err, sizeof(err)), 0);
    ASSERT_EQ(gw_domain_list_check("shop.test 127.0.0.1", err, sizeof(err)), GW_EINVAL);
    ASSERT(strstr(err, "127.0.0.1") != NULL);
    ASSERT_EQ(gw_domain_list_check("bad..name", err, sizeof(err)), GW_EINVAL);

    ASSERT(gw_domain_list_has("shop.test, gw.shop.test", "shop.test"));
    ASSERT(gw_domain_list_has("shop.test, gw.shop.test", "GW.Shop.Test"));
    ASSERT(!gw_domain_list_has("shop.test, gw.shop.test", "evil.example"));
    ASSERT(!gw_domain_list_has("shop.test, gw.shop.test", "test"));
    ASSERT(!gw_domain_list_has("shop.test", "shop.test.evil"));
    ASSERT(gw_domain_list_has("*", "anything.example"));
    ASSERT(!gw_domain_list_has("*", "127.0.0.1"));
    ASSERT(!gw_domain_list_has("", "shop.test"));
}

int main(void)
{
    test_identity_and_domains();
    test_utf8();
    test_xml_ok();
    test_escape();
    test_jid();
    TASK_DONE();
}
