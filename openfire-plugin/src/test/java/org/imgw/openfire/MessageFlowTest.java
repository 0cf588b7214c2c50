package org.imgw.openfire;

import static org.imgw.openfire.Fixtures.DOMAIN;
import static org.imgw.openfire.Fixtures.GW;
import static org.imgw.openfire.Fixtures.message;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import org.imgw.openfire.Fixtures.FakeClock;
import org.imgw.openfire.Fixtures.FakeSettings;
import org.imgw.openfire.Fixtures.ListSink;
import org.imgw.openfire.Fixtures.MemoryUsers;
import org.junit.Before;
import org.junit.Test;
import org.xmpp.packet.Message;
import org.xmpp.packet.PacketError;

public class MessageFlowTest {
    private FakeSettings settings;
    private MemoryUsers users;
    private ListSink sink;
    private FakeClock clock;
    private CompanionStats stats;
    private MessageFlow flow;

    @Before
    public void setUp() {
        settings = new FakeSettings();
        users = new MemoryUsers().with("buyer42", "seller7");
        sink = new ListSink();
        clock = new FakeClock();
        stats = new CompanionStats();
        flow = new MessageFlow(settings, users, sink, new RecentKeys(120000, 1000), clock, new Fixtures.CountingIds(),
                stats);
    }

    private static Message chat(String from, String to, String id) {
        return message("<message xmlns='jabber:client' from='" + from + "' to='" + to + "'"
                + (id == null ? "" : " id='" + id + "'") + " type='chat'><body>hi</body></message>");
    }

    /** Runs the interceptor passes Openfire makes for a message routed to the given sessions. */
    private boolean route(Message m, int recipientSessions) {
        boolean consumed = flow.onMessage(m, true, false);
        if (consumed) {
            return true;
        }
        for (int i = 0; i < recipientSessions; i++) {
            assertFalse(flow.onMessage(m, false, false));
            assertFalse(flow.onMessage(m, false, true));
        }
        assertFalse(flow.onMessage(m, true, true));
        return false;
    }

    @Test
    public void copiesOnceAcrossInterceptorPasses() {
        assertFalse(route(chat("seller7@shop.example/phone", "buyer42@shop.example", "a1"), 1));
        assertEquals(1, sink.routed.size());
        Message copy = sink.messages().get(0);
        assertEquals(GW, copy.getTo().toString());
        assertEquals(DOMAIN, copy.getFrom().toString());
        assertEquals("copy-1", copy.getID());
        Message inner = CopyEnvelope.unwrap(copy);
        assertEquals("a1", inner.getID());
        assertEquals("seller7@shop.example/phone", inner.getFrom().toString());
        assertEquals("2025-11-25T16:40:00.123Z", CopyEnvelope.stamp(copy));
        assertEquals(1, stats.copies.get());
    }

    @Test
    public void copiesOnceForSeveralResourcesOfTheRecipient() {
        // One message to the bare JID, delivered to three sessions.
        route(chat("seller7@shop.example/phone", "buyer42@shop.example", "a1"), 3);
        // The sender addressing each full JID with the same id still makes one copy.
        route(chat("seller7@shop.example/phone", "buyer42@shop.example/laptop", "a2"), 1);
        route(chat("seller7@shop.example/phone", "buyer42@shop.example/mobile", "a2"), 1);
        assertEquals(2, sink.routed.size());
        assertEquals("a1", CopyEnvelope.unwrap(sink.messages().get(0)).getID());
        assertEquals("a2", CopyEnvelope.unwrap(sink.messages().get(1)).getID());
        assertEquals(1, stats.duplicates.get());
    }

    @Test
    public void aRetryMakesNoSecondCopyWithinTheWindow() {
        route(chat("seller7@shop.example/phone", "buyer42@shop.example", "a1"), 1);
        clock.now += 30000;
        route(chat("seller7@shop.example/phone", "buyer42@shop.example", "a1"), 0);
        assertEquals(1, sink.routed.size());
        clock.now += 200000;
        route(chat("seller7@shop.example/phone", "buyer42@shop.example", "a1"), 1);
        assertEquals("after the window the id may be reused", 2, sink.routed.size());
    }

    @Test
    public void differentIdsSendersOrRecipientsAreDifferentMessages() {
        route(chat("seller7@shop.example/phone", "buyer42@shop.example", "a1"), 1);
        route(chat("seller7@shop.example/phone", "buyer42@shop.example", "a2"), 1);
        route(chat("seller7@shop.example/tablet", "buyer42@shop.example", "a1"), 1);
        route(chat("buyer42@shop.example/web", "seller7@shop.example", "a1"), 1);
        assertEquals(4, sink.routed.size());
    }

    @Test
    public void messagesWithoutIdAreAlwaysCopied() {
        route(chat("seller7@shop.example/phone", "buyer42@shop.example", null), 1);
        route(chat("seller7@shop.example/phone", "buyer42@shop.example", null), 1);
        assertEquals(2, sink.routed.size());
    }

    @Test
    public void normalAndUntypedMessagesAreCopied() {
        route(message("<message from='seller7@shop.example/p' to='buyer42@shop.example' id='n1'>"
                + "<body>x</body></message>"), 1);
        route(message("<message from='seller7@shop.example/p' to='buyer42@shop.example' id='n2' type='normal'>"
                + "<body>x</body></message>"), 1);
        assertEquals(2, sink.routed.size());
    }

    @Test
    public void remoteSendersAreCopied() {
        route(chat("friend@remote.example/r", "buyer42@shop.example", "x1"), 1);
        assertEquals(1, sink.routed.size());
    }

    @Test
    public void whatIsNotCopied() {
        String[] skipped = {
            "<message from='seller7@shop.example/p' to='buyer42@shop.example' id='1' type='groupchat'><body>x</body></message>",
            "<message from='seller7@shop.example/p' to='buyer42@shop.example' id='2' type='headline'><body>x</body></message>",
            "<message from='seller7@shop.example/p' to='buyer42@shop.example' id='3' type='error'><body>x</body></message>",
            "<message from='seller7@shop.example/p' to='buyer42@shop.example' id='4' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
            "<message from='gw.shop.example' to='buyer42@shop.example' id='5' type='chat'><body>x</body></message>",
            "<message from='alice@gw.shop.example/w' to='buyer42@shop.example' id='6' type='chat'><body>x</body></message>",
            "<message from='seller7@shop.example/p' to='friend@remote.example' id='7' type='chat'><body>x</body></message>",
            "<message from='seller7@shop.example/p' to='nobody@shop.example' id='8' type='chat'><body>x</body></message>",
            "<message from='seller7@shop.example/p' to='shop.example' id='9' type='chat'><body>x</body></message>",
            "<message from='seller7@shop.example/p' to='alice@gw.shop.example' id='10' type='chat'><body>x</body></message>",
            "<message to='buyer42@shop.example' id='11' type='chat'><body>x</body></message>",
            "<message from='seller7@shop.example/p' to='buyer42@shop.example' id='12' type='bogus'><body>x</body></message>",
        };
        for (String s : skipped) {
            assertFalse(s, route(message(s), 1));
        }
        assertEquals(0, sink.routed.size());
    }

    @Test
    public void copyCanBeSwitchedOff() {
        settings.copy = false;
        route(chat("seller7@shop.example/phone", "buyer42@shop.example", "a1"), 1);
        assertEquals(0, sink.routed.size());
    }

    private static Message sendAs(String outerFrom, String inner) {
        return message("<message from='" + outerFrom + "' to='shop.example' id='p1'>"
                + "<privilege xmlns='urn:xmpp:privilege:2'><forwarded xmlns='urn:xmpp:forward:0'>" + inner
                + "</forwarded></privilege></message>");
    }

    private static final String INNER = "<message xmlns='jabber:client' from='buyer42@shop.example'"
            + " to='seller7@shop.example' id='1734' type='chat'><body>Is it in stock?</body></message>";

    @Test
    public void theGatewaySendsAsAUser() {
        assertTrue(route(sendAs(GW, INNER), 0));
        assertEquals(1, sink.routed.size());
        Message routed = sink.messages().get(0);
        assertEquals("buyer42@shop.example/web", routed.getFrom().toString());
        assertEquals("seller7@shop.example", routed.getTo().toString());
        assertEquals("1734", routed.getID());
        assertEquals("Is it in stock?", routed.getBody());
        assertEquals("jabber:client", routed.getElement().getNamespaceURI());
        assertNull(routed.getElement().element("privilege"));
        assertEquals(1, stats.sentAs.get());
        assertEquals("the outer message itself is not copied", 0, stats.copies.get());

        // Openfire routes the inner message through the router again: it is copied like any other.
        route(routed, 1);
        assertEquals(2, sink.routed.size());
        assertEquals("1734", CopyEnvelope.unwrap(sink.messages().get(1)).getID());
    }

    @Test
    public void anExplicitInnerResourceIsKept() {
        route(sendAs(GW, INNER.replace("from='buyer42@shop.example'", "from='buyer42@shop.example/tab2'")), 0);
        assertEquals("buyer42@shop.example/tab2", sink.messages().get(0).getFrom().toString());
    }

    private void assertRefused(Message outer, PacketError.Condition condition, PacketError.Type type) {
        sink.routed.clear();
        assertTrue("a send-as request is always consumed", route(outer, 0));
        assertEquals(1, sink.routed.size());
        Message error = sink.messages().get(0);
        assertEquals("error", error.getElement().attributeValue("type"));
        assertEquals(outer.getFrom(), error.getTo());
        assertEquals(DOMAIN, error.getFrom().toString());
        assertEquals("p1", error.getID());
        assertNotNull(error.getError());
        assertEquals(condition, error.getError().getCondition());
        assertEquals(type, error.getError().getType());
    }

    @Test
    public void anyoneElseIsForbidden() {
        assertRefused(sendAs("mallory@shop.example/x", INNER), PacketError.Condition.forbidden, PacketError.Type.auth);
        assertRefused(sendAs("evil.example", INNER), PacketError.Condition.forbidden, PacketError.Type.auth);
        assertRefused(sendAs("someone@gw.shop.example", INNER), PacketError.Condition.forbidden, PacketError.Type.auth);
        assertRefused(sendAs("gw.shop.example/res", INNER), PacketError.Condition.forbidden, PacketError.Type.auth);
        assertEquals(0, stats.sentAs.get());
        assertEquals(4, stats.sendAsRefused.get());
    }

    @Test
    public void anInnerSenderOutsideTheDomainIsForbidden() {
        assertRefused(sendAs(GW, INNER.replace("buyer42@shop.example", "buyer42@remote.example")),
                PacketError.Condition.forbidden, PacketError.Type.auth);
        assertRefused(sendAs(GW, INNER.replace("from='buyer42@shop.example'", "from='shop.example'")),
                PacketError.Condition.forbidden, PacketError.Type.auth);
    }

    @Test
    public void malformedRequestsAreBadRequests() {
        PacketError.Condition bad = PacketError.Condition.bad_request;
        PacketError.Type modify = PacketError.Type.modify;
        assertRefused(sendAs(GW, INNER.replace(" to='seller7@shop.example'", "")), bad, modify);
        assertRefused(sendAs(GW, INNER.replace(" from='buyer42@shop.example'", "")), bad, modify);
        assertRefused(sendAs(GW, INNER.replace("type='chat'", "type='groupchat'")), bad, modify);
        assertRefused(sendAs(GW, INNER.replace("type='chat'", "type='headline'")), bad, modify);
        assertRefused(sendAs(GW, ""), bad, modify);
        assertRefused(message("<message from='gw.shop.example' to='shop.example' id='p1'>"
                + "<privilege xmlns='urn:xmpp:privilege:2'/></message>"), bad, modify);
    }

    @Test
    public void normalTypeIsAllowed() {
        route(sendAs(GW, INNER.replace("type='chat'", "type='normal'")), 0);
        assertEquals("normal", sink.messages().get(0).getElement().attributeValue("type"));
    }

    @Test
    public void errorsToTheDomainAreSwallowedNotAnswered() {
        Message bounce = message("<message from='gw.shop.example' to='shop.example' id='p1' type='error'>"
                + "<privilege xmlns='urn:xmpp:privilege:2'/></message>");
        assertTrue(route(bounce, 0));
        assertEquals(0, sink.routed.size());
    }

    @Test
    public void otherMessagesToTheDomainPassThrough() {
        assertFalse(route(message("<message from='seller7@shop.example/p' to='shop.example' id='x'>"
                + "<body>to the admins</body></message>"), 0));
        assertEquals(0, sink.routed.size());
    }

    @Test
    public void theOpenfireInterceptorRejectsSendAsRequests() throws Exception {
        CompanionInterceptor interceptor = new CompanionInterceptor(flow);
        try {
            interceptor.interceptPacket(sendAs(GW, INNER), null, true, false);
            org.junit.Assert.fail("expected PacketRejectedException");
        } catch (org.jivesoftware.openfire.interceptor.PacketRejectedException expected) {
            assertNull("no text, so Openfire sends no rejection message", expected.getMessage());
        }
        interceptor.interceptPacket(chat("seller7@shop.example/p", "buyer42@shop.example", "q"), null, true, false);
        interceptor.interceptPacket(new org.xmpp.packet.Presence(), null, true, false);
        assertEquals(2, sink.routed.size());
    }
}
