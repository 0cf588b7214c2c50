package org.imgw.openfire;

import static org.imgw.openfire.Fixtures.DOMAIN;
import static org.imgw.openfire.Fixtures.GW;
import static org.imgw.openfire.Fixtures.iq;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.util.Arrays;
import org.dom4j.Element;
import org.imgw.openfire.Fixtures.FakeClock;
import org.imgw.openfire.Fixtures.FakeSettings;
import org.imgw.openfire.Fixtures.ListSink;
import org.imgw.openfire.Fixtures.MemoryUsers;
import org.imgw.openfire.Fixtures.RecordingPresence;
import org.junit.Before;
import org.junit.Test;
import org.xmpp.packet.IQ;
import org.xmpp.packet.Message;
import org.xmpp.packet.PacketError;

public class CompanionIq1Test {
    private static final String BOOT = "5f0c9a1e2b3d4c5e";
    private FakeSettings settings;
    private RecordingPresence presence;
    private CompanionStats stats;
    private WebUsers web;
    private CopyLedger ledger;
    private ListSink sink;
    private FakeClock clock;
    private CompanionIq1 logic;

    @Before
    public void setUp() {
        settings = new FakeSettings();
        presence = new RecordingPresence();
        stats = new CompanionStats();
        web = new WebUsers(presence, stats);
        sink = new ListSink();
        clock = new FakeClock();
        ledger = new CopyLedger(settings, null, sink, stats);
        ledger.start(clock.now(), 0);
        logic = new CompanionIq1(settings, new MemoryUsers().with("alice", "bob", "buyer42"), web, ledger, clock, stats);
    }

    private static IQ set(String from, String child) {
        return iq("<iq type='set' from='" + from + "' to='shop.example' id='q1'>" + child + "</iq>");
    }

    private static String gateway(String attrs) {
        return "<gateway xmlns='urn:imgw:companion:1' " + attrs + "/>";
    }

    private static final String HELLO = "node='3' boot='" + BOOT + "' lease='30' mark='1742' users='0' sum='0000000000000000'";

    private Element status(IQ reply) {
        assertNotNull(reply);
        assertEquals("result", reply.getElement().attributeValue("type"));
        assertEquals("q1", reply.getID());
        assertEquals(DOMAIN, reply.getFrom().toString());
        assertEquals(GW, reply.getTo().toString());
        Element s = reply.getChildElement();
        assertEquals("status", s.getName());
        assertEquals(Companion.NS1, s.getNamespaceURI());
        return s;
    }

    private void assertError(IQ reply, PacketError.Condition condition) {
        assertNotNull(reply);
        assertEquals("error", reply.getElement().attributeValue("type"));
        assertEquals("q1", reply.getID());
        assertEquals(condition, reply.getError().getCondition());
    }

    @Test
    public void gatewayIsAnsweredWithTheCompanionsView() {
        Element s = status(logic.handle(set(GW, gateway(HELLO))));
        assertEquals("3", s.attributeValue("node"));
        assertEquals(BOOT, s.attributeValue("boot"));
        assertEquals("1742", s.attributeValue("mark"));
        assertEquals("ok", s.attributeValue("sync"));
        assertEquals(1, stats.instancesRegistered.get());
        assertTrue("auto mode remembers that a version-1 gateway came", settings.acksSeen);
        assertTrue(ledger.enabled());
        logic.handle(set(GW, gateway(HELLO)));
        assertEquals("remembered once", 1, settings.acksSeenMarks);
    }

    @Test
    public void aDifferingSetAsksForTheList() {
        logic.handle(set(GW, gateway(HELLO)));
        Element s = status(logic.handle(set(GW, gateway(HELLO.replace("users='0' sum='0000000000000000'",
                "users='2' sum='50c66ea276ea3353'")))));
        assertEquals("resync", s.attributeValue("sync"));
        IQ list = set(GW, "<web xmlns='urn:imgw:companion:1' node='3' boot='" + BOOT + "' reset='true'>"
                + "<on u='alice'/><on u='Bob'/></web>");
        IQ reply = logic.handle(list);
        assertEquals("result", reply.getElement().attributeValue("type"));
        assertNull(reply.getChildElement());
        s = status(logic.handle(set(GW, gateway(HELLO.replace("users='0' sum='0000000000000000'",
                "users='2' sum='50C66EA276EA3353'")))));
        assertEquals("ok", s.attributeValue("sync"));
        assertEquals(Arrays.asList("alice=true", "bob=true"), presence.published);
        assertEquals(1, stats.resyncs.get());
    }

    @Test
    public void aMarkIsEchoedOnlyWhenSent() {
        Element s = status(logic.handle(set(GW, gateway(HELLO.replace(" mark='1742'", "")))));
        assertNull(s.attributeValue("mark"));
        s = status(logic.handle(set(GW, gateway(HELLO.replace("mark='1742'", "mark='99999999999999999999'")))));
        assertEquals("99999999999999999999", s.attributeValue("mark"));
    }

    @Test
    public void aCleanStopNeedsNoCountOrSum() {
        logic.handle(set(GW, gateway(HELLO)));
        Element s = status(logic.handle(set(GW, gateway("node='3' boot='" + BOOT + "' lease='0'"))));
        assertEquals("ok", s.attributeValue("sync"));
        assertFalse(web.anyInstance());
    }

    @Test
    public void onlyTheGatewayMayTalkVersionOne() {
        for (String from : new String[] { "alice@shop.example/phone", "evil.example", "x@gw.shop.example", "gw.shop.example/r" }) {
            assertError(logic.handle(set(from, gateway(HELLO))), PacketError.Condition.forbidden);
        }
        assertError(logic.handle(set("shop.example", gateway(HELLO))), PacketError.Condition.forbidden);
        assertFalse(web.anyInstance());
        assertFalse(settings.acksSeen);
    }

    @Test
    public void malformedGatewayRequestsChangeNothing() {
        String[] bad = {
            HELLO.replace("node='3'", "node='1024'"), HELLO.replace("node='3'", "node='-1'"),
            HELLO.replace("node='3'", "node='3x'"), HELLO.replace("node='3' ", ""),
            HELLO.replace(BOOT, "5F0C9A1E2B3D4C5E"), HELLO.replace(BOOT, "5f0c9a1e2b3d4c5"),
            HELLO.replace(BOOT, BOOT + BOOT + BOOT + BOOT + "0"), HELLO.replace("lease='30'", "lease='4'"),
            HELLO.replace("lease='30'", "lease='301'"), HELLO.replace("lease='30' ", ""),
            HELLO.replace("users='0'", "users='-1'"), HELLO.replace("users='0' ", ""),
            HELLO.replace("sum='0000000000000000'", "sum='00'"), HELLO.replace(" sum='0000000000000000'", ""),
            HELLO.replace("mark='1742'", "mark='17a'"), HELLO.replace("mark='1742'", "mark='123456789012345678901'"),
            HELLO.replace("lease='30'", "lease='\uff13\uff10'"),
        };
        for (String attrs : bad) {
            assertError(logic.handle(set(GW, gateway(attrs))), PacketError.Condition.bad_request);
        }
        assertFalse(web.anyInstance());
        assertError(logic.handle(set(GW, "<nonsense xmlns='urn:imgw:companion:1'/>")), PacketError.Condition.bad_request);
        assertError(logic.handle(iq("<iq type='get' from='gw.shop.example' to='shop.example' id='q1'>" + gateway(HELLO)
                + "</iq>")), PacketError.Condition.bad_request);
        assertNull(logic.handle(iq("<iq type='result' from='gw.shop.example' to='shop.example' id='q1'/>")));
    }

    @Test
    public void webNeedsALiveInstance() {
        IQ w = set(GW, "<web xmlns='urn:imgw:companion:1' node='3' boot='" + BOOT + "'><on u='alice'/></web>");
        assertError(logic.handle(w), PacketError.Condition.item_not_found);
        logic.handle(set(GW, gateway(HELLO)));
        assertEquals("result", logic.handle(w).getElement().attributeValue("type"));
        assertTrue(web.isWebOnline("alice"));
        clock.now += 30000;
        web.expire(clock.now);
        assertError(logic.handle(w), PacketError.Condition.item_not_found);
    }

    @Test
    public void malformedWebRequestsApplyNothing() {
        logic.handle(set(GW, gateway(HELLO)));
        String open = "<web xmlns='urn:imgw:companion:1' node='3' boot='" + BOOT + "'";
        String[] bad = {
            open + "><on u='alice'/><on u='bad name'/></web>",
            open + "><on u='alice'/><on/></web>",
            open + "><on u='alice'/><maybe u='bob'/></web>",
            open + "><on u='alice'/><on xmlns='urn:other' u='bob'/></web>",
            open + " reset='yes'><on u='alice'/></web>",
            "<web xmlns='urn:imgw:companion:1' node='3'><on u='alice'/></web>",
        };
        for (String b : bad) {
            assertError(logic.handle(set(GW, b)), PacketError.Condition.bad_request);
        }
        StringBuilder many = new StringBuilder(open + ">");
        for (int i = 0; i <= CompanionIq1.MAX_WEB_CHANGES; i++) {
            many.append("<on u='alice'/>");
        }
        assertError(logic.handle(set(GW, many + "</web>")), PacketError.Condition.bad_request);
        assertFalse(web.isWebOnline("alice"));
        assertEquals(0, presence.published.size());
    }

    @Test
    public void unknownUsersAreIgnoredAndTheRequestSucceeds() {
        logic.handle(set(GW, gateway(HELLO)));
        IQ reply = logic.handle(set(GW, "<web xmlns='urn:imgw:companion:1' node='3' boot='" + BOOT + "'>"
                + "<on u='nobody'/><on u='alice'/></web>"));
        assertEquals("result", reply.getElement().attributeValue("type"));
        assertFalse(web.isWebOnline("nobody"));
        assertTrue(web.isWebOnline("alice"));
        assertEquals(1, stats.webUnknownUsers.get());
    }

    @Test
    public void acksRemoveCopies() {
        settings.acks = "true";
        long[] seqs = new long[3];
        for (int i = 0; i < 3; i++) {
            Message env = CopyEnvelope.build(Fixtures.message("<message from='bob@shop.example/p' to='alice@shop.example'"
                    + " id='m" + i + "' type='chat'><body>x</body></message>"), DOMAIN, GW, "copy-" + i, clock.now());
            seqs[i] = ledger.track(env, clock.now());
        }
        IQ reply = logic.handle(set(GW, "<acks xmlns='urn:imgw:companion:1'>" + seqs[0] + " " + seqs[1] + "-" + seqs[1]
                + " 5</acks>"));
        assertEquals("result", reply.getElement().attributeValue("type"));
        assertEquals(Arrays.asList(seqs[2]), ledger.memorySeqs());
        assertEquals(2, stats.copiesAcked.get());
        assertError(logic.handle(set(GW, "<acks xmlns='urn:imgw:companion:1'>" + seqs[2] + " x</acks>")),
                PacketError.Condition.bad_request);
        assertEquals("nothing applied", 1, ledger.inMemory());
        assertError(logic.handle(set("alice@shop.example/p", "<acks xmlns='urn:imgw:companion:1'>" + seqs[2] + "</acks>")),
                PacketError.Condition.forbidden);
        assertEquals(1, ledger.inMemory());
    }

    @Test
    public void aNewInstanceGetsEveryQuietCopyAgain() {
        settings.acks = "true";
        Message env = CopyEnvelope.build(Fixtures.message("<message from='bob@shop.example/p' to='alice@shop.example'"
                + " id='m1' type='chat'><body>x</body></message>"), DOMAIN, GW, "copy-1", clock.now());
        long seq = ledger.track(env, clock.now());
        clock.now += 3000;
        logic.handle(set(GW, gateway(HELLO)));
        ledger.tick(clock.now, web.anyInstance());
        assertEquals(1, sink.routed.size());
        Element copy = Stanzas.child(sink.messages().get(0).getElement(), "copy", Companion.NS);
        assertEquals(Long.toString(seq), copy.attributeValue("seq"));
        assertEquals(1, stats.copiesResent.get());
    }

    @Test
    public void theOpenfireHandlerServesNamespaceOne() {
        CompanionIQHandler handler = new CompanionIQHandler("gateway", Companion.NS1, new CompanionIQHandler.Logic() {
            @Override
            public IQ handle(IQ iq) {
                return logic.handle(iq);
            }
        });
        assertEquals(Companion.NS1, handler.getInfo().getNamespace());
        status(handler.handleIQ(set(GW, gateway(HELLO))));
    }
}
