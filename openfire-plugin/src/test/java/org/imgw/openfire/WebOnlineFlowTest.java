package org.imgw.openfire;

import static org.imgw.openfire.Fixtures.GW;
import static org.imgw.openfire.Fixtures.message;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import org.dom4j.Element;
import org.imgw.openfire.Fixtures.FakeClock;
import org.imgw.openfire.Fixtures.FakeSettings;
import org.imgw.openfire.Fixtures.ListSink;
import org.imgw.openfire.Fixtures.MapRosters;
import org.imgw.openfire.Fixtures.MemoryUsers;
import org.imgw.openfire.Fixtures.RecordingPresence;
import org.imgw.openfire.Fixtures.SetSessions;
import org.jivesoftware.openfire.interceptor.PacketRejectedException;
import org.junit.Before;
import org.junit.Test;
import org.xmpp.packet.Message;
import org.xmpp.packet.Presence;

/** Sections 8-10 as the interceptor sees them: web-online users, numbered copies, send-as once. */
public class WebOnlineFlowTest {
    private static final String BOOT = "5f0c9a1e2b3d4c5e";
    private FakeSettings settings;
    private ListSink sink;
    private FakeClock clock;
    private CompanionStats stats;
    private WebUsers web;
    private SetSessions sessions;
    private CopyLedger ledger;
    private MapRosters rosters;
    private MessageFlow flow;

    @Before
    public void setUp() throws CompanionError {
        settings = new FakeSettings();
        sink = new ListSink();
        clock = new FakeClock();
        stats = new CompanionStats();
        web = new WebUsers(new RecordingPresence(), stats);
        sessions = new SetSessions();
        ledger = new CopyLedger(settings, null, sink, stats);
        ledger.start(clock.now(), 0);
        rosters = new MapRosters().both("buyer42", "seller7").item("buyer42", "friend@remote.example", "from");
        flow = new MessageFlow(settings, new MemoryUsers().with("buyer42", "seller7"), sink,
                new RecentKeys(120000, 1000), clock, new Fixtures.CountingIds(), stats, web, sessions, ledger,
                new RecentKeys(600000, 1000), new WebPresence(settings, web, rosters, sink, stats));
        web.gateway(3, BOOT, 30, 0, 0, null, clock.now());
        web.web(3, BOOT, false, Collections.singletonList(new WebUsers.Change("buyer42", true)),
                new HashSet<String>(Arrays.asList("buyer42")), clock.now());
    }

    private static Message chat(String to, String id) {
        return message("<message xmlns='jabber:client' from='seller7@shop.example/phone' to='" + to + "' id='" + id
                + "' type='chat'><body>hi</body></message>");
    }

    /** True when the interceptor rejects the message (Openfire then neither delivers nor stores it). */
    private boolean rejected(Message m) {
        CompanionInterceptor interceptor = new CompanionInterceptor(flow);
        try {
            interceptor.interceptPacket(m, null, true, false);
            return false;
        } catch (PacketRejectedException e) {
            assertNull("no rejection text: Openfire sends nothing back", e.getMessage());
            return true;
        }
    }

    @Test
    public void aWebOnlyUsersMessageReachesTheGatewayAndNotOfflineStorage() {
        assertTrue(rejected(chat("buyer42@shop.example", "a1")));
        assertEquals("copied first", 1, sink.routed.size());
        assertEquals("a1", CopyEnvelope.unwrap(sink.messages().get(0)).getID());
        assertEquals(1, stats.offlineAvoided.get());
    }

    @Test
    public void aRealSessionTakesTheMessageAsUsual() {
        sessions.online.add("buyer42");
        assertFalse(rejected(chat("buyer42@shop.example", "a1")));
        assertEquals(1, sink.routed.size());
    }

    @Test
    public void theWebResourceOnlyEverReachesTheGateway() {
        sessions.online.add("buyer42");
        assertTrue(rejected(chat("buyer42@shop.example/web", "a1")));
        assertEquals(1, sink.routed.size());
        assertEquals("buyer42@shop.example/web", CopyEnvelope.unwrap(sink.messages().get(0)).getTo().toString());
    }

    @Test
    public void aFullJidOfAGoneResourceIsNotStoredEither() {
        assertTrue(rejected(chat("buyer42@shop.example/phone", "a1")));
        sessions.online.add("buyer42");
        assertFalse(rejected(chat("buyer42@shop.example/phone", "a2")));
    }

    @Test
    public void aRetryIsConsumedWithoutASecondCopy() {
        assertTrue(rejected(chat("buyer42@shop.example", "a1")));
        assertTrue(rejected(chat("buyer42@shop.example", "a1")));
        assertEquals(1, sink.routed.size());
    }

    @Test
    public void messagesWithoutBodyForTheWebResourceAreConsumed() {
        assertTrue(rejected(message("<message from='seller7@shop.example/p' to='buyer42@shop.example' type='chat'>"
                + "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")));
        assertEquals("nothing to copy", 0, sink.routed.size());
    }

    @Test
    public void usersOfflineEverywhereStillGetOfflineStorage() {
        assertFalse(rejected(chat("seller7@shop.example", "a1")));
        assertEquals("and the copy for the history", 1, sink.routed.size());
        web.gateway(3, BOOT, 0, 0, 0, null, clock.now());
        assertFalse(rejected(chat("buyer42@shop.example", "a2")));
    }

    @Test
    public void otherTypesAndSendersAreLeftToOpenfire() {
        assertFalse(rejected(message("<message from='seller7@shop.example/p' to='buyer42@shop.example' type='headline'>"
                + "<body>x</body></message>")));
        assertFalse(rejected(message("<message from='seller7@shop.example/p' to='buyer42@shop.example' type='groupchat'>"
                + "<body>x</body></message>")));
        assertFalse(rejected(message("<message from='seller7@shop.example/p' to='buyer42@shop.example' type='error'>"
                + "<body>x</body></message>")));
        assertFalse("not copied, so not consumed", rejected(message("<message from='gw.shop.example' "
                + "to='buyer42@shop.example' type='chat'><body>x</body></message>")));
        settings.copy = false;
        assertFalse("copies off: Openfire keeps the message", rejected(chat("buyer42@shop.example", "a9")));
    }

    @Test
    public void copiesCarrySeqOnlyWhileAcknowledgementsAreOn() {
        rejected(chat("seller7@shop.example", "a1"));
        Element copy = Stanzas.child(sink.messages().get(0).getElement(), "copy", Companion.NS);
        assertNull(copy.attributeValue("seq"));
        assertEquals(0, ledger.inMemory());
        settings.acksSeen = true;
        rejected(chat("seller7@shop.example", "a2"));
        copy = Stanzas.child(sink.messages().get(1).getElement(), "copy", Companion.NS);
        assertNotNull(copy.attributeValue("seq"));
        assertEquals(Collections.singletonList(Long.parseLong(copy.attributeValue("seq"))), ledger.memorySeqs());
        settings.acks = "false";
        rejected(chat("seller7@shop.example", "a3"));
        assertNull(Stanzas.child(sink.messages().get(2).getElement(), "copy", Companion.NS).attributeValue("seq"));
    }

    private static Message sendAs(String innerId) {
        return message("<message from='gw.shop.example' to='shop.example' id='p1'>"
                + "<privilege xmlns='urn:xmpp:privilege:2'><forwarded xmlns='urn:xmpp:forward:0'>"
                + "<message xmlns='jabber:client' from='buyer42@shop.example' to='seller7@shop.example' id='" + innerId
                + "' type='chat'><body>Is it in stock?</body></message></forwarded></privilege></message>");
    }

    @Test
    public void aSendAsWrittenTwiceIsRoutedOnce() {
        assertTrue(rejected(sendAs("1734")));
        assertTrue(rejected(sendAs("1734")));
        assertTrue(rejected(sendAs("1735")));
        assertEquals(2, sink.routed.size());
        assertEquals(1, stats.sendAsDuplicates.get());
        clock.now += 600001;
        assertTrue(rejected(sendAs("1734")));
        assertEquals("after the window the id may come again", 3, sink.routed.size());
    }

    @Test
    public void aProbeIsAnsweredWithTheWebResourceAfterOpenfiresAnswer() throws Exception {
        Presence probe = new Presence(Fixtures.xml("<presence type='probe' from='friend@remote.example/x' to='buyer42@shop.example'/>"));
        CompanionInterceptor interceptor = new CompanionInterceptor(flow);
        interceptor.interceptPacket(probe, null, true, false);
        assertEquals("not before Openfire answered", 0, sink.routed.size());
        interceptor.interceptPacket(probe, null, true, true);
        assertEquals(1, sink.routed.size());
        Presence answer = (Presence) sink.routed.get(0);
        assertEquals("buyer42@shop.example/web", answer.getFrom().toString());
        assertEquals("friend@remote.example/x", answer.getTo().toString());
        assertTrue(answer.isAvailable());
        interceptor.interceptPacket(probe, null, false, false);
        assertEquals(1, sink.routed.size());
    }

    @Test
    public void aProbeFromANonSubscriberOrForAnOfflineUserGetsNothing() throws Exception {
        CompanionInterceptor interceptor = new CompanionInterceptor(flow);
        interceptor.interceptPacket(new Presence(Fixtures.xml("<presence type='probe' from='stranger@remote.example/x'"
                + " to='buyer42@shop.example'/>")), null, true, true);
        interceptor.interceptPacket(new Presence(Fixtures.xml("<presence type='probe' from='buyer42@shop.example/x'"
                + " to='seller7@shop.example'/>")), null, true, true);
        interceptor.interceptPacket(new Presence(Fixtures.xml("<presence from='seller7@shop.example/x'"
                + " to='buyer42@shop.example'/>")), null, true, true);
        assertEquals(0, sink.routed.size());
    }

    @Test
    public void theV0ConstructorKeepsVersionZeroBehaviour() {
        MessageFlow v0 = new MessageFlow(settings, new MemoryUsers().with("buyer42"), sink, new RecentKeys(1000, 1000),
                clock, new Fixtures.CountingIds(), stats);
        assertFalse(v0.onMessage(chat("buyer42@shop.example", "z"), true, false));
        try {
            v0.onPresence(new Presence(Fixtures.xml("<presence type='probe' from='a@b.example' to='buyer42@shop.example'/>")),
                    true, true);
        } catch (RuntimeException e) {
            fail(e.toString());
        }
        assertEquals(GW, sink.messages().get(0).getTo().toString());
    }
}
