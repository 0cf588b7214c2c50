package org.imgw.openfire;

import static org.imgw.openfire.Fixtures.DOMAIN;
import static org.imgw.openfire.Fixtures.GW;
import static org.imgw.openfire.Fixtures.message;
import static org.imgw.openfire.Fixtures.xml;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;

import org.dom4j.Element;
import org.junit.Test;
import org.xmpp.packet.Message;

public class CopyEnvelopeTest {
    private static final String ORIGINAL = "<message xmlns='jabber:client' from='seller7@shop.example/phone'"
            + " to='buyer42@shop.example' id='a1' type='chat'><body>Hello &lt;b&gt; \u00fcn\u00efcode</body>"
            + "<stanza-id xmlns='urn:xmpp:sid:0' by='shop.example' id='s-1'/>"
            + "<origin-id xmlns='urn:xmpp:sid:0' id='o-1'/></message>";

    @Test
    public void stampIsUtcWithMilliseconds() {
        assertEquals("2025-11-25T16:40:00.123Z", CopyEnvelope.formatStamp(1764088800123L));
        assertEquals("1970-01-01T00:00:00.000Z", CopyEnvelope.formatStamp(0L));
    }

    @Test
    public void buildsTheSection2Envelope() {
        Message copy = CopyEnvelope.build(message(ORIGINAL), DOMAIN, GW, "copy-1", 1764088800123L);
        assertEquals(DOMAIN, copy.getFrom().toString());
        assertEquals(GW, copy.getTo().toString());
        assertEquals("copy-1", copy.getID());
        assertNull("the envelope has no type", copy.getElement().attributeValue("type"));
        Element c = Stanzas.child(copy.getElement(), "copy", Companion.NS);
        assertNotNull(c);
        Element forwarded = Stanzas.child(c, "forwarded", "urn:xmpp:forward:0");
        assertNotNull(forwarded);
        Element delay = Stanzas.child(forwarded, "delay", "urn:xmpp:delay");
        assertEquals("2025-11-25T16:40:00.123Z", delay.attributeValue("stamp"));
        Element inner = Stanzas.child(forwarded, "message", "jabber:client");
        assertNotNull(inner);
        assertEquals("seller7@shop.example/phone", inner.attributeValue("from"));
        assertEquals("buyer42@shop.example", inner.attributeValue("to"));
        assertEquals("a1", inner.attributeValue("id"));
        assertEquals("chat", inner.attributeValue("type"));
        assertEquals("jabber:client", inner.element("body").getNamespaceURI());
        assertEquals("s-1", Stanzas.child(inner, "stanza-id", "urn:xmpp:sid:0").attributeValue("id"));
        assertEquals("shop.example", Stanzas.child(inner, "stanza-id", "urn:xmpp:sid:0").attributeValue("by"));
        assertEquals("o-1", Stanzas.child(inner, "origin-id", "urn:xmpp:sid:0").attributeValue("id"));
    }

    @Test
    public void leavesTheOriginalAlone() {
        Message original = message(ORIGINAL);
        String before = original.toXML();
        CopyEnvelope.build(original, DOMAIN, GW, "copy-1", 0L);
        assertEquals(before, original.toXML());
    }

    @Test
    public void survivesSerializationAndUnwraps() {
        Message copy = CopyEnvelope.build(message(ORIGINAL), DOMAIN, GW, "copy-9", 0L);
        Message reparsed = message(copy.toXML());
        Message inner = CopyEnvelope.unwrap(reparsed);
        assertNotNull(inner);
        assertEquals("Hello <b> \u00fcn\u00efcode", inner.getBody());
        assertEquals("a1", inner.getID());
        assertEquals("seller7@shop.example/phone", inner.getFrom().toString());
        assertEquals(Message.Type.chat, inner.getType());
        assertEquals("1970-01-01T00:00:00.000Z", CopyEnvelope.stamp(reparsed));
    }

    @Test
    public void movesNamespacelessStanzasIntoJabberClient() {
        // Openfire builds stanzas such as new Message() with no namespace at all.
        Message m = new Message();
        m.setFrom("seller7@shop.example/x");
        m.setTo("buyer42@shop.example");
        m.setID("n1");
        m.setBody("plain");
        m.getElement().addElement("stanza-id", "urn:xmpp:sid:0").addAttribute("id", "z");
        Message copy = message(CopyEnvelope.build(m, DOMAIN, GW, "c", 0L).toXML());
        Element inner = Stanzas.child(Stanzas.child(Stanzas.child(copy.getElement(), "copy", Companion.NS),
                "forwarded", "urn:xmpp:forward:0"), "message", "jabber:client");
        assertNotNull(inner);
        assertEquals("jabber:client", inner.element("body").getNamespaceURI());
        assertEquals("plain", inner.element("body").getText());
        assertNotNull(Stanzas.child(inner, "stanza-id", "urn:xmpp:sid:0"));
    }

    @Test
    public void movesServerAndComponentStanzasIntoJabberClient() {
        for (String ns : new String[] { "jabber:server", "jabber:component:accept" }) {
            Message m = message("<message xmlns='" + ns + "' from='a@remote.example/r' to='buyer42@shop.example'"
                    + " id='r1'><body>hi</body><x xmlns='jabber:x:oob'><url>u</url></x></message>");
            Message inner = CopyEnvelope.unwrap(message(CopyEnvelope.build(m, DOMAIN, GW, "c", 0L).toXML()));
            assertNotNull(ns, inner);
            assertEquals("hi", inner.getBody());
            Element x = Stanzas.child(inner.getElement(), "x", "jabber:x:oob");
            assertNotNull(x);
            assertEquals("extension children keep their namespace", "jabber:x:oob",
                    x.element("url").getNamespaceURI());
        }
    }

    @Test
    public void unwrapOfSomethingElseIsNull() {
        assertNull(CopyEnvelope.unwrap(message("<message from='a@b' to='c@d'><body>x</body></message>")));
        assertNull(CopyEnvelope.unwrap(message("<message from='a@b' to='c@d'><copy xmlns='urn:imgw:companion:0'/></message>")));
        assertNull(CopyEnvelope.stamp(new Message(xml("<message/>"))));
    }
}
