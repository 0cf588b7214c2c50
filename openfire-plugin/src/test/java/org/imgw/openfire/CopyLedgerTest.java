package org.imgw.openfire;

import static org.imgw.openfire.Fixtures.DOMAIN;
import static org.imgw.openfire.Fixtures.GW;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import org.dom4j.Element;
import org.imgw.openfire.Fixtures.FakeSettings;
import org.imgw.openfire.Fixtures.ListSink;
import org.imgw.openfire.Fixtures.MemoryStore;
import org.junit.Before;
import org.junit.Test;
import org.xmpp.packet.Message;

public class CopyLedgerTest {
    private static final long T0 = 1764088800123L;
    private FakeSettings settings;
    private ListSink sink;
    private CompanionStats stats;
    private MemoryStore store;
    private CopyLedger ledger;

    @Before
    public void setUp() {
        settings = new FakeSettings();
        settings.acks = "true";
        settings.backlog = 100;
        sink = new ListSink();
        stats = new CompanionStats();
        store = new MemoryStore();
        ledger = new CopyLedger(settings, store, sink, stats);
        ledger.start(T0, 0);
    }

    private static Message envelope(int i) {
        return CopyEnvelope.build(Fixtures.message("<message xmlns='jabber:client' from='bob@shop.example/p'"
                + " to='alice@shop.example' id='m" + i + "' type='chat'><body>hello " + i + "</body></message>"),
                DOMAIN, GW, "copy-" + i, T0);
    }

    private long track(int i, long now) {
        return ledger.track(envelope(i), now);
    }

    private static long[] one(long seq) {
        return new long[] { seq, seq };
    }

    private List<Long> resentSeqs() {
        List<Long> out = new ArrayList<Long>();
        for (Message m : sink.messages()) {
            Element copy = Stanzas.child(m.getElement(), "copy", Companion.NS);
            out.add(Long.parseLong(copy.attributeValue("seq")));
        }
        return out;
    }

    @Test
    public void sequenceNumbersStartAtTheTimeInMicrosecondsAndIncrease() {
        long a = track(1, T0);
        long b = track(2, T0);
        assertEquals(T0 * 1000, a);
        assertEquals(a + 1, b);
        Element copy = Stanzas.child(envelope(3).getElement(), "copy", Companion.NS);
        assertEquals("the envelope gets seq only when tracked", null, copy.attributeValue("seq"));
        Message env = envelope(4);
        long c = ledger.track(env, T0);
        assertEquals(Long.toString(c), Stanzas.child(env.getElement(), "copy", Companion.NS).attributeValue("seq"));
        assertEquals(c, ledger.lastSeq());
    }

    @Test
    public void sequenceNumbersKeepIncreasingAcrossRestarts() {
        store.rows.put(T0 * 1000 + 5000, new CopyStore.Row(T0 * 1000 + 5000, T0, "<message/>"));
        CopyLedger restarted = new CopyLedger(settings, store, sink, stats);
        restarted.start(T0, 0);
        assertEquals("one past the highest stored", T0 * 1000 + 5001, restarted.track(envelope(1), T0));
        restarted = new CopyLedger(settings, store, sink, stats);
        restarted.start(T0 - 60000, T0 * 1000 + 9000);
        assertEquals("one past the last handed out, with the clock gone back", T0 * 1000 + 9001,
                restarted.track(envelope(1), T0));
        restarted = new CopyLedger(settings, new MemoryStore(), sink, stats);
        restarted.start(T0 + 10, T0 * 1000 + 9000);
        assertEquals("the clock, when it is ahead", (T0 + 10) * 1000, restarted.track(envelope(1), T0));
    }

    @Test
    public void acknowledgedCopiesAreForgottenAndUnknownNumbersIgnored() {
        long a = track(1, T0);
        long b = track(2, T0);
        long c = track(3, T0);
        assertEquals(2, ledger.ack(Arrays.asList(new long[] { a, b }, one(c + 100), one(1))));
        assertEquals(Collections.singletonList(c), ledger.memorySeqs());
        assertEquals(0, ledger.ack(Arrays.asList(new long[] { a, b })));
        assertEquals(1, ledger.ack(Collections.singletonList(new long[] { 0, Long.MAX_VALUE })));
        assertEquals(0, ledger.inMemory());
        assertEquals("nothing was ever stored: no database delete", 0, ledger.pendingDeletes());
    }

    @Test
    public void unacknowledgedCopiesAreResentWithDoublingIntervals() {
        long seq = track(1, T0);
        long t = settings.timeout;
        ledger.tick(T0 + t - 1, true);
        assertEquals(0, sink.routed.size());
        List<Long> sendTimes = new ArrayList<Long>();
        for (long now = T0; now <= T0 + 40 * t; now += 100) {
            int before = sink.routed.size();
            ledger.tick(now, true);
            if (sink.routed.size() > before) {
                sendTimes.add(now - T0);
            }
        }
        // Resent at T, then 2T, 4T, 8T later, then every 8T.
        assertEquals(Arrays.asList(t, 3 * t, 7 * t, 15 * t, 23 * t, 31 * t, 39 * t), sendTimes);
        assertEquals(Collections.nCopies(7, seq), resentSeqs());
        assertTrue(ledger.isResent(seq));
        assertEquals(7, stats.copiesResent.get());
    }

    @Test
    public void nothingIsResentWhileNoInstanceIsAlive() {
        track(1, T0);
        ledger.tick(T0 + 10 * settings.timeout, false);
        assertEquals(0, sink.routed.size());
        ledger.tick(T0 + 10 * settings.timeout, true);
        assertEquals(1, sink.routed.size());
    }

    @Test
    public void aNewInstanceGetsEveryCopyNotSentInTheLastTwoSeconds() {
        long old = track(1, T0);
        long recent = track(2, T0 + 2500);
        ledger.instanceRegistered(T0 + 3000);
        ledger.tick(T0 + 3000, true);
        assertEquals(Collections.singletonList(old), resentSeqs());
        assertFalse(ledger.isResent(recent));
    }

    @Test
    public void resendsAreFlowControlledByTheWindow() {
        settings.window = 3;
        List<Long> seqs = new ArrayList<Long>();
        for (int i = 0; i < 10; i++) {
            seqs.add(track(i, T0));
        }
        ledger.tick(T0 + settings.timeout, true);
        assertEquals(seqs.subList(0, 3), resentSeqs());
        assertEquals(3, ledger.outstanding());
        sink.routed.clear();
        ledger.tick(T0 + settings.timeout + 100, true);
        assertEquals("the window is full", 0, sink.routed.size());
        ledger.ack(Arrays.asList(one(seqs.get(0)), one(seqs.get(1))));
        ledger.tick(T0 + settings.timeout + 200, true);
        assertEquals(seqs.subList(3, 5), resentSeqs());
        sink.routed.clear();
        // A resent copy that times out again goes out again without a new place in the window.
        ledger.tick(T0 + 3 * settings.timeout, true);
        assertTrue(resentSeqs().contains(seqs.get(2)));
        assertEquals(3, ledger.outstanding());
    }

    @Test
    public void newCopiesAreNeverHeldBack() {
        settings.window = 1;
        for (int i = 0; i < 5; i++) {
            track(i, T0);
        }
        ledger.tick(T0 + settings.timeout, true);
        assertEquals(1, ledger.outstanding());
        // track() itself never waits or refuses: the caller routes every new copy at once.
        track(99, T0 + settings.timeout);
        assertEquals(6, ledger.inMemory());
    }

    @Test
    public void pastTheBacklogTheOldestGoToTheDatabaseAndComeBackInOrder() {
        List<Long> seqs = new ArrayList<Long>();
        for (int i = 0; i < 150; i++) {
            seqs.add(track(i, T0));
        }
        ledger.tick(T0 + 1, false);
        assertEquals(100, ledger.inMemory());
        assertEquals(50, store.rows.size());
        assertEquals(seqs.subList(0, 50), new ArrayList<Long>(store.rows.keySet()));
        assertEquals(seqs.subList(50, 150), ledger.memorySeqs());
        assertEquals(50, stats.copiesSpilled.get());
        assertEquals(50, ledger.inDatabase());

        // Acknowledging 40 in memory makes room below three quarters: the oldest come back first.
        List<long[]> acks = new ArrayList<long[]>();
        for (Long s : seqs.subList(110, 150)) {
            acks.add(one(s));
        }
        ledger.ack(acks);
        ledger.tick(T0 + 2, false);
        assertEquals(75, ledger.inMemory());
        assertEquals(seqs.subList(0, 15), ledger.memorySeqs().subList(0, 15));
        assertEquals(15, stats.copiesLoaded.get());

        // Copies still only in the database are deleted there when acknowledged.
        ledger.ack(Collections.singletonList(new long[] { seqs.get(40), seqs.get(49) }));
        ledger.tick(T0 + 3, false);
        assertEquals(40, store.rows.size());
        assertEquals(40, ledger.inDatabase());

        // Loaded copies are due at once (they waited in the database) and stay in the table until acknowledged.
        ledger.tick(T0 + 4, true);
        assertEquals(seqs.subList(0, 15), resentSeqs());
        ledger.ack(Collections.singletonList(new long[] { seqs.get(0), seqs.get(14) }));
        ledger.tick(T0 + 5, false);
        assertEquals(25, store.rows.size());
        assertEquals(seqs.subList(15, 40), new ArrayList<Long>(store.rows.keySet()));
    }

    @Test
    public void everyCopyComesBackEventually() {
        List<Long> seqs = new ArrayList<Long>();
        for (int i = 0; i < 400; i++) {
            seqs.add(track(i, T0));
            if (i % 50 == 49) {
                // The timer runs between bursts and moves the oldest to the database.
                ledger.tick(T0, false);
            }
        }
        List<Long> acked = new ArrayList<Long>();
        long now = T0 + settings.timeout;
        for (int round = 0; round < 200 && acked.size() < seqs.size(); round++) {
            sink.routed.clear();
            ledger.tick(now, true);
            List<long[]> acks = new ArrayList<long[]>();
            for (Long s : resentSeqs()) {
                if (!acked.contains(s)) {
                    acked.add(s);
                    acks.add(one(s));
                }
            }
            ledger.ack(acks);
            now += 100;
        }
        ledger.tick(now, true);
        Collections.sort(acked);
        assertEquals(seqs, acked);
        assertEquals(0, ledger.inMemory());
        assertEquals(0, store.rows.size());
    }

    @Test
    public void aRestartedCompanionResendsWhatItsDatabaseHolds() {
        for (int i = 0; i < 150; i++) {
            track(i, T0);
        }
        ledger.tick(T0 + 1, false);
        List<Long> stored = new ArrayList<Long>(store.rows.keySet());
        // The server dies: memory is lost, the table survives.
        CopyLedger next = new CopyLedger(settings, store, sink, stats);
        next.start(T0 + 60000, 0);
        next.tick(T0 + 60001, true);
        assertEquals(stored, resentSeqs());
    }

    @Test
    public void aFailingDatabaseIsRetriedWithBackoffAndMemoryStaysBounded() {
        store.failing = true;
        for (int i = 0; i < 250; i++) {
            track(i, T0);
        }
        assertEquals("twice the backlog at most", 200, ledger.inMemory());
        assertEquals(50, stats.copiesDropped.get());
        ledger.tick(T0 + 1, false);
        int inserts = store.inserts;
        store.failing = false;
        ledger.tick(T0 + 2, false);
        assertEquals("waits before retrying", inserts, store.inserts);
        ledger.tick(T0 + 2000, false);
        assertEquals(100, ledger.inMemory());
        assertEquals(100, store.rows.size());
    }

    @Test
    public void theCharacterBacklogCountsToo() {
        settings.backlogChars = 4000;
        for (int i = 0; i < 20; i++) {
            track(i, T0);
        }
        ledger.tick(T0 + 1, false);
        assertTrue(ledger.inMemory() < 20);
        assertEquals(20, ledger.inMemory() + store.rows.size());
    }

    @Test
    public void withoutADatabaseEverythingStaysInMemoryUpToTheHardCap() {
        ledger = new CopyLedger(settings, null, sink, stats);
        ledger.start(T0, 0);
        for (int i = 0; i < 150; i++) {
            track(i, T0);
        }
        ledger.tick(T0 + 1, true);
        assertEquals(150, ledger.inMemory());
    }

    @Test
    public void aDamagedRowIsDroppedNotSentForever() {
        store.rows.put(5L, new CopyStore.Row(5L, T0, "<message><copy"));
        store.rows.put(6L, new CopyStore.Row(6L, T0, envelope(6).toXML()));
        CopyLedger next = new CopyLedger(settings, store, sink, stats);
        next.start(T0, 0);
        next.tick(T0 + 1, true);
        assertEquals(1, sink.routed.size());
        assertEquals(1, stats.copiesDropped.get());
        next.tick(T0 + 2, true);
        assertFalse(store.rows.containsKey(5L));
    }

    @Test
    public void modeAutoFollowsTheRememberedGateway() {
        settings.acks = "auto";
        assertFalse(ledger.enabled());
        settings.acksSeen = true;
        assertTrue(ledger.enabled());
        settings.acks = "false";
        assertFalse(ledger.enabled());
        settings.acks = "true";
        settings.acksSeen = false;
        assertTrue(ledger.enabled());
    }
}
