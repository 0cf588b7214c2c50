/*
 * Unit tests of the XMPP stream reader (xmlstream.c): what it hands over,
 * fed in one piece and split at every byte boundary, and what it refuses.
 */
#include "gw.h"
#include "payload.h"
#include "task.h"
#include "xmlstream.h"

typedef struct rec {
    gw_sbuf_t log;
    int stop_after; /* return GW_ELINK from the stanza callback after this many (0: never) */
    int stanzas;
} rec_t;

static void dump(gw_sbuf_t *b, const gw_xml_el_t *e)
{
    gw_sbuf_printf(b, "<%s{%s}", e->name, e->ns);
    for (const char **a = e->attrs; a[0] != NULL; a += 2)
        gw_sbuf_printf(b, " %s=%s", a[0], a[1]);
    gw_sbuf_puts(b, ">");
    if (e->text_len > 0) {
        gw_sbuf_puts(b, "\"");
        gw_sbuf_append(b, e->text, e->text_len);
        gw_sbuf_puts(b, "\"");
    }
    for (const gw_xml_el_t *c = e->child; c != NULL; c = c->next)
        dump(b, c);
    gw_sbuf_puts(b, "</>");
}

static int r_open(void *ud, const gw_xml_el_t *h)
{
    rec_t *r = ud;
    const char *id = gw_xml_attr(h, "id");

    gw_sbuf_printf(&r->log, "open(%s,%s)\n", id ? id : "-", gw_xml_attr(h, "from") ?: "-");
    return 0;
}

static int r_stanza(void *ud, const gw_xml_el_t *st)
{
    rec_t *r = ud;

    dump(&r->log, st);
    gw_sbuf_puts(&r->log, "\n");
    r->stanzas++;
    return r->stop_after && r->stanzas >= r->stop_after ? GW_ELINK : 0;
}

static void r_skipped(void *ud, const char *name, const char *why)
{
    rec_t *r = ud;

    gw_sbuf_printf(&r->log, "skipped(%s: %s)\n", name, why);
}

static int r_close(void *ud)
{
    rec_t *r = ud;

    gw_sbuf_puts(&r->log, "close\n");
    return 0;
}

static const gw_xmlstream_cbs_t cbs = {r_open, r_stanza, r_skipped, r_close};

/* Feeds s in pieces of at most step bytes (0: one piece); returns the first error. */
static int run(const char *s, size_t len, size_t step, const gw_xmlstream_limits_t *lim, rec_t *r,
               gw_xmlstream_t **keep)
{
    gw_xmlstream_t *x;
    int rc = 0;

    gw_sbuf_init(&r->log, 1u << 22);
    r->stanzas = 0;
    if (gw_xmlstream_new(&cbs, r, lim, &x) != 0)
        return GW_ENOMEM;
    for (size_t off = 0; off < len && rc == 0;) {
        size_t n = step == 0 || len - off < step ? len - off : step;
        rc = gw_xmlstream_feed(x, s + off, n);
        off += n;
    }
    if (keep)
        *keep = x;
    else
        gw_xmlstream_free(x);
    return rc;
}

#define HEAD                                                                                       \
    "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' "         \
    "xmlns='jabber:component:accept' from='gw.shop.test' id='sid42'>"

static const char stream[] = HEAD
    "<handshake></handshake>  \n<handshake/>"
    "<message from='bob@shop.test/x' to='alice@gw.shop.test' type='chat' id='m1'>"
    "<body>a &amp; b &lt;c&gt; &#x263A; <![CDATA[<raw>]]> \xc3\xa9</body>"
    "<x xmlns='jabber:x:oob'><url>http://e/x.png</url></x></message> "
    "<message from='shop.test' to='gw.shop.test'><copy xmlns='urn:imgw:companion:0' seq='7'>"
    "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat'>"
    "<body>hi</body></message></forwarded></copy></message>"
    "<iq type='get' id='q' xml:lang='en'><query xmlns='http://jabber.org/protocol/disco#info'/>"
    "</iq><stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
    "</stream:error></stream:stream>";

static const char expected[] =
    "open(sid42,gw.shop.test)\n"
    "<handshake{jabber:component:accept}></>\n"
    "<handshake{jabber:component:accept}></>\n"
    "<message{jabber:component:accept} from=bob@shop.test/x to=alice@gw.shop.test type=chat "
    "id=m1><body{jabber:component:accept}>\"a & b <c> \xe2\x98\xba <raw> \xc3\xa9\"</>"
    "<x{jabber:x:oob}><url{jabber:x:oob}>\"http://e/x.png\"</></></>\n"
    "<message{jabber:component:accept} from=shop.test to=gw.shop.test>"
    "<copy{urn:imgw:companion:0} seq=7><forwarded{urn:xmpp:forward:0}>"
    "<message{jabber:client} type=chat><body{jabber:client}>\"hi\"</></></></></>\n"
    "<iq{jabber:component:accept} type=get id=q "
    "http://www.w3.org/XML/1998/namespace\x01lang\x01xml=en>"
    "<query{http://jabber.org/protocol/disco#info}></></>\n"
    "<error{http://etherx.jabber.org/streams}>"
    "<conflict{urn:ietf:params:xml:ns:xmpp-streams}></></>\n"
    "close\n";

static void test_stream_any_split(void)
{
    rec_t r = {0};
    size_t len = sizeof(stream) - 1;
    int bad = 0;

    ASSERT_EQ(run(stream, len, 0, NULL, &r, NULL), 0);
    ASSERT_STR(r.log.data, expected);
    gw_sbuf_free(&r.log);
    /* Byte by byte, and two pieces split at every boundary. */
    ASSERT_EQ(run(stream, len, 1, NULL, &r, NULL), 0);
    ASSERT_STR(r.log.data, expected);
    gw_sbuf_free(&r.log);
    for (size_t cut = 1; cut < len; cut++) {
        gw_xmlstream_t *x;
        gw_sbuf_init(&r.log, 1u << 20);
        r.stanzas = 0;
        if (gw_xmlstream_new(&cbs, &r, NULL, &x) != 0 || gw_xmlstream_feed(x, stream, cut) != 0 ||
            gw_xmlstream_feed(x, stream + cut, len - cut) != 0 ||
            strcmp(r.log.data ? r.log.data : "", expected) != 0) {
            if (!bad++)
                fprintf(stderr, "split at %zu differs: %s\n", cut, r.log.data);
        }
        gw_xmlstream_free(x);
        gw_sbuf_free(&r.log);
    }
    ASSERT_EQ(bad, 0);
}

/* A stanza is handed over as soon as its end tag is complete, not later. */
static void test_prompt(void)
{
    static const char s[] = HEAD "<message><body>x</body></message>";
    rec_t r = {0};
    gw_xmlstream_t *x;

    ASSERT_EQ(run(s, sizeof(s) - 2, 0, NULL, &r, &x), 0); /* all but the last '>' */
    ASSERT_EQ(r.stanzas, 0);
    ASSERT_EQ(gw_xmlstream_feed(x, ">", 1), 0);
    ASSERT_EQ(r.stanzas, 1);
    gw_xmlstream_free(x);
    gw_sbuf_free(&r.log);
}

static void expect_error(const char *what, const char *s, int err, const char *cond)
{
    rec_t r = {0};
    gw_xmlstream_t *x;
    int rc = run(s, strlen(s), 0, NULL, &r, &x);

    if (rc != err || strcmp(gw_xmlstream_condition(x), cond) != 0)
        fprintf(stderr, "%s: rc %d (%s), condition %s\n", what, rc, gw_xmlstream_error(x),
                gw_xmlstream_condition(x));
    ASSERT_EQ(rc, err);
    ASSERT_STR(gw_xmlstream_condition(x), cond);
    ASSERT_EQ(r.stanzas, 0);
    /* Once failed, it stays failed until reset. */
    ASSERT_EQ(gw_xmlstream_feed(x, "<a/>", 4), err);
    gw_xmlstream_free(x);
    gw_sbuf_free(&r.log);
}

static void test_refused(void)
{
    /* Billion laughs: no DTD, so no entity is ever declared or expanded. */
    expect_error("dtd",
                 "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
                 "<!ENTITY lol2 '&lol;&lol;&lol;&lol;'>]><stream:stream "
                 "xmlns:stream='http://etherx.jabber.org/streams'><message><body>&lol2;</body>"
                 "</message>",
                 GW_EINVAL, "restricted-xml");
    expect_error("undefined entity", HEAD "<message><body>&lol;</body></message>", GW_EINVAL,
                 "restricted-xml");
    expect_error("pi", HEAD "<?evil data?><message/>", GW_EINVAL, "restricted-xml");
    expect_error("comment", HEAD "<message><!-- x --></message>", GW_EINVAL, "restricted-xml");
    expect_error("overlong utf-8", HEAD "<message><body>\xc0\xaf</body></message>", GW_EINVAL,
                 "not-well-formed");
    expect_error("surrogate", HEAD "<message><body>\xed\xa0\x80</body></message>", GW_EINVAL,
                 "not-well-formed");
    expect_error("0xff", HEAD "<message><body>\xff</body></message>", GW_EINVAL, "not-well-formed");
    /* The declared encoding does not change that XMPP is UTF-8. */
    expect_error("latin-1",
                 "<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream "
                 "xmlns:stream='http://etherx.jabber.org/streams'><message><body>\xe9</body>"
                 "</message>",
                 GW_EINVAL, "not-well-formed");
    expect_error("char ref 0", HEAD "<message><body>&#0;</body></message>", GW_EINVAL,
                 "not-well-formed");
    expect_error("mismatched", HEAD "<message><body></message>", GW_EINVAL, "not-well-formed");
    expect_error("unbound prefix", HEAD "<message><x:y/></message>", GW_EINVAL, "not-well-formed");
    expect_error("text between stanzas", HEAD "hello<message/>", GW_EINVAL, "bad-format");
    expect_error("not a stream", "<html><message/></html>", GW_EINVAL, "invalid-namespace");
    expect_error("stream in another namespace", "<stream xmlns='jabber:client'><message/>",
                 GW_EINVAL, "invalid-namespace");
}

static void test_limits(void)
{
    gw_xmlstream_limits_t lim;
    rec_t r = {0};
    gw_sbuf_t s;
    gw_xmlstream_t *x;
    int rc;

    gw_xmlstream_default_limits(&lim);
    lim.max_stanza = 4096;
    lim.max_token = 8192;
    lim.max_depth = 8;
    lim.max_attrs = 4;
    lim.max_attr_value = 100;
    lim.max_names = 64;

    /* Stanzas past a per-stanza limit are skipped; the stream and the next stanza go on. */
    gw_sbuf_init(&s, 1u << 20);
    gw_sbuf_puts(&s, HEAD "<a>");
    for (int i = 0; i < 9; i++)
        gw_sbuf_puts(&s, "<b>");
    for (int i = 0; i < 9; i++)
        gw_sbuf_puts(&s, "</b>");
    gw_sbuf_puts(&s, "</a><c p='1' q='2' r='3' s='4' t='5'/><d v='");
    for (int i = 0; i < 101; i++)
        gw_sbuf_puts(&s, "v");
    gw_sbuf_puts(&s, "'/><e>");
    for (int i = 0; i < 5000; i++)
        gw_sbuf_puts(&s, "x");
    gw_sbuf_puts(&s, "</e><f>");
    for (int i = 0; i < 1000; i++)
        gw_sbuf_puts(&s, "<g/>");
    gw_sbuf_puts(&s, "</f><ok/>");
    rc = run(s.data, s.len, 7, &lim, &r, NULL);
    ASSERT_EQ(rc, 0);
    ASSERT_STR(r.log.data, "open(sid42,gw.shop.test)\n"
                           "skipped(a: nested too deep)\n"
                           "skipped(c: too many attributes)\n"
                           "skipped(d: attribute name or value too long)\n"
                           "skipped(e: stanza too large)\n"
                           "skipped(f: stanza too large)\n"
                           "<ok{jabber:component:accept}></>\n");
    gw_sbuf_free(&r.log);
    gw_sbuf_free(&s);

    /* One token expat would have to hold past max_token ends the stream. */
    gw_sbuf_init(&s, 1u << 20);
    gw_sbuf_puts(&s, HEAD "<message a='");
    for (int i = 0; i < 9000; i++)
        gw_sbuf_puts(&s, "v");
    rc = run(s.data, s.len, 1000, &lim, &r, NULL);
    ASSERT_EQ(rc, GW_ELIMIT);
    gw_sbuf_free(&r.log);
    gw_sbuf_free(&s);

    /* So do more distinct names than expat should remember for one stream. */
    gw_sbuf_init(&s, 1u << 20);
    gw_sbuf_puts(&s, HEAD);
    for (int i = 0; i < 100; i++)
        gw_sbuf_printf(&s, "<n%d/>", i);
    rc = run(s.data, s.len, 0, &lim, &r, &x);
    ASSERT_EQ(rc, GW_ELIMIT);
    ASSERT_STR(gw_xmlstream_condition(x), "policy-violation");
    ASSERT(r.stanzas < 64);
    /* A reset (the next connection) starts afresh. */
    r.stanzas = 0;
    ASSERT_EQ(gw_xmlstream_reset(x), 0);
    ASSERT_EQ(gw_xmlstream_feed(x, HEAD "<m/>", strlen(HEAD "<m/>")), 0);
    ASSERT_EQ(r.stanzas, 1);
    gw_xmlstream_free(x);
    gw_sbuf_free(&r.log);
    gw_sbuf_free(&s);

    /* The same names again and again never count twice. */
    gw_sbuf_init(&s, 1u << 20);
    gw_sbuf_puts(&s, HEAD);
    for (int i = 0; i < 1000; i++)
        gw_sbuf_puts(&s, "<message to='a'><body>x</body></message>");
    ASSERT_EQ(run(s.data, s.len, 0, &lim, &r, NULL), 0);
    ASSERT_EQ(r.stanzas, 1000);
    gw_sbuf_free(&r.log);
    gw_sbuf_free(&s);
}

/* A callback's error stops the reader at once: nothing after it is handed over. */
static void test_stop(void)
{
    static const char s[] = HEAD "<a/><b/><c/>";
    rec_t r = {0};

    r.stop_after = 1;
    ASSERT_EQ(run(s, sizeof(s) - 1, 0, NULL, &r, NULL), GW_ELINK);
    ASSERT_EQ(r.stanzas, 1);
    gw_sbuf_free(&r.log);
}

/* A large stanza within the limits comes through whole (the arena grows past its first block). */
static void test_large(void)
{
    gw_sbuf_t s;
    rec_t r = {0};

    gw_sbuf_init(&s, 1u << 22);
    gw_sbuf_puts(&s, HEAD);
    for (int k = 0; k < 2; k++) {
        gw_sbuf_puts(&s, "<message><body>");
        for (int i = 0; i < 100000; i++)
            gw_sbuf_puts(&s, "a&amp;");
        gw_sbuf_puts(&s, "</body>");
        for (int i = 0; i < 1000; i++)
            gw_sbuf_puts(&s, "<x y='z'/>");
        gw_sbuf_puts(&s, "</message>");
    }
    ASSERT_EQ(run(s.data, s.len, 4096, NULL, &r, NULL), 0);
    ASSERT_EQ(r.stanzas, 2);
    gw_sbuf_free(&r.log);
    gw_sbuf_free(&s);

    /*
     * A 3 MiB body (a user's, relayed by the server) is skipped with its
     * stanza; the stream goes on: expat hands text over as it reads, so
     * nothing holds the whole body.
     */
    gw_sbuf_init(&s, 1u << 23);
    gw_sbuf_puts(&s, HEAD "<message><body>");
    for (int i = 0; i < 3 << 20; i += 8)
        gw_sbuf_puts(&s, "xxxxxxxx");
    gw_sbuf_puts(&s, "</body></message><message/>");
    ASSERT_EQ(run(s.data, s.len, 65536, NULL, &r, NULL), 0);
    ASSERT_STR(r.log.data, "open(sid42,gw.shop.test)\n"
                           "skipped(message: stanza too large)\n"
                           "<message{jabber:component:accept}></>\n");
    gw_sbuf_free(&r.log);
    gw_sbuf_free(&s);
}

int main(void)
{
    test_stream_any_split();
    test_prompt();
    test_refused();
    test_limits();
    test_stop();
    test_large();
    TASK_DONE();
}
