package org.imgw.openfire;

import static org.imgw.openfire.Fixtures.GW;
import static org.imgw.openfire.Fixtures.message;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.imgw.openfire.Fixtures.FakeClock;
import org.imgw.openfire.Fixtures.FakeSettings;
import org.imgw.openfire.Fixtures.ListSink;
import org.imgw.openfire.Fixtures.MemoryUsers;
import org.jivesoftware.openfire.OfflineMessage;
import org.jivesoftware.openfire.interceptor.PacketRejectedException;
import org.jivesoftware.openfire.session.ClientSession;
import org.junit.Before;
import org.junit.Test;
import org.xmpp.packet.JID;
import org.xmpp.packet.Message;
import org.xmpp.packet.Packet;
import org.xmpp.packet.Presence;

/**
 * Section 10: Openfire's offline-store login race. The model below does what Openfire 4.1.6 does
 * for a login (PresenceRouter's interceptor passes around PresenceUpdateHandler: session available,
 * SELECT of the user's offline rows, DELETE of all the user's rows, session initialized) and for a
 * message to a bare JID (delivered to an initialized available session, else stored offline and
 * the OfflineMessageListeners told), with the real interceptor, MessageFlow and listener.
 */
public class LoginRaceTest {
    private static final String SELLER = "seller7@shop.example";

    private static final class Session implements ClientSession {
        final JID address;
        boolean initialized;
        Presence presence = new Presence(Presence.Type.unavailable);

        Session(String full) {
            address = new JID(full);
        }

        @Override
        public JID getAddress() {
            return address;
        }

        @Override
        public boolean isInitialized() {
            return initialized;
        }

        @Override
        public Presence getPresence() {
            return presence;
        }
    }

    /** Openfire's routing, offline store and login, as far as the race goes. */
    private final class Openfire implements PacketSink {
        final Map<String, Session> sessions = new HashMap<String, Session>();
        final List<Message> offline = new ArrayList<Message>();
        final List<Message> delivered = new ArrayList<Message>();
        final List<Message> toGateway = new ArrayList<Message>();

        @Override
        public void route(Packet packet) {
            Message m = (Message) packet;
            if (GW.equals(m.getTo().getDomain())) {
                toGateway.add(m);
                return;
            }
            try {
                interceptor.interceptPacket(m, null, true, false);
            } catch (PacketRejectedException e) {
                return;
            }
            Session s = sessions.get(m.getTo().getNode());
            if (s != null && s.initialized && s.presence.isAvailable()) {
                deliver(s, m);
                return;
            }
            offline.add(m);
            if (listener != null) {
                listener.messageStored(m);
            }
        }

        /** A login of the user's session, running during the retrieval what the test asks. */
        void login(Session s, Runnable betweenSelectAndDelete, Runnable afterDelete) throws PacketRejectedException {
            sessions.put(s.address.getNode(), s);
            Presence available = new Presence();
            available.setFrom(s.address);
            interceptor.interceptPacket(available, s, true, false);
            s.presence = available;
            List<Message> selected = new ArrayList<Message>();
            for (Message m : offline) {
                if (m.getTo().getNode().equals(s.address.getNode())) {
                    selected.add(m);
                }
            }
            betweenSelectAndDelete.run();
            for (int i = offline.size() - 1; i >= 0; i--) {
                if (offline.get(i).getTo().getNode().equals(s.address.getNode())) {
                    offline.remove(i);
                }
            }
            afterDelete.run();
            for (Message m : selected) {
                deliver(s, m);
            }
            s.initialized = true;
            interceptor.interceptPacket(available, s, true, true);
        }

        /** LocalSession.process: the outgoing interceptor passes around the write. */
        void deliver(Session s, Message m) {
            try {
                interceptor.interceptPacket(m, s, false, false);
                delivered.add(m);
                interceptor.interceptPacket(m, s, false, true);
            } catch (PacketRejectedException e) {
                throw new AssertionError(e);
            }
        }

        int deliveredWithId(String id) {
            int n = 0;
            for (Message m : delivered) {
                if (id.equals(m.getID())) {
                    n++;
                }
            }
            return n;
        }
    }

    private static final Runnable NOTHING = new Runnable() {
        @Override
        public void run() {
        }
    };

    private FakeClock clock;
    private CompanionStats stats;
    private Openfire openfire;
    private LoginRace race;
    private MessageFlow flow;
    private CompanionInterceptor interceptor;
    private LoginRaceListener listener;

    private void build(boolean withWorkaround) {
        FakeSettings settings = new FakeSettings();
        clock = new FakeClock();
        stats = new CompanionStats();
        openfire = new Openfire();
        race = withWorkaround ? new LoginRace(openfire, stats, Fixtures.DOMAIN, 60000, 5000, 3, 100) : null;
        flow = new MessageFlow(settings, new MemoryUsers().with("buyer42", "seller7"), openfire,
                new RecentKeys(120000, 1000), clock, new Fixtures.CountingIds(), stats, null, null, null,
                new RecentKeys(600000, 1000), null, race);
        interceptor = new CompanionInterceptor(flow, race, clock);
        listener = withWorkaround ? new LoginRaceListener(race, clock) : null;
    }

    @Before
    public void setUp() {
        build(true);
    }

    private static Message sendAs(String id) {
        return message("<message from='" + GW + "' to='shop.example' id='p" + id + "'>"
                + "<privilege xmlns='urn:xmpp:privilege:2'><forwarded xmlns='urn:xmpp:forward:0'>"
                + "<message xmlns='jabber:client' from='buyer42@shop.example' to='" + SELLER + "' id='" + id
                + "' type='chat'><body>hi</body></message></forwarded></privilege></message>");
    }

    /** The gateway's send-as, as the component stream hands it to Openfire's router. */
    private Runnable gatewaySends(final String id) {
        return new Runnable() {
            @Override
            public void run() {
                openfire.route(sendAs(id));
            }
        };
    }

    private void tick(long afterMillis) {
        clock.now += afterMillis;
        race.tick(clock.now);
    }

    @Test
    public void withoutTheWorkaroundASendAsStoredDuringTheRetrievalIsLost() throws Exception {
        // The model reproduces what was seen on Openfire 4.1.6: stored, then deleted unread.
        build(false);
        openfire.login(new Session(SELLER + "/app"), gatewaySends("w1"), NOTHING);
        assertEquals(0, openfire.deliveredWithId("w1"));
        assertTrue(openfire.offline.isEmpty());
    }

    @Test
    public void aSendAsStoredBetweenSelectAndDeleteIsRoutedAgainAfterTheLogin() throws Exception {
        openfire.route(sendAs("w0"));
        openfire.login(new Session(SELLER + "/app"), gatewaySends("w1"), NOTHING);
        assertEquals(1, openfire.deliveredWithId("w0"));
        assertEquals(0, openfire.deliveredWithId("w1"));
        assertEquals(1, race.held());
        tick(200);
        assertEquals(1, openfire.deliveredWithId("w1"));
        assertEquals(1, openfire.deliveredWithId("w0"));
        assertEquals(0, race.held());
        assertEquals(1, stats.loginRaceHeld.get());
        assertEquals(1, stats.loginRaceRerouted.get());
        tick(200);
        assertEquals(1, openfire.deliveredWithId("w1"));
        // The copy to the gateway was made once: the repeat is absorbed by the copy memory.
        int copies = 0;
        for (Message m : openfire.toGateway) {
            if ("w1".equals(CopyEnvelope.unwrap(m).getID())) {
                copies++;
            }
        }
        assertEquals(1, copies);
    }

    @Test
    public void aSendAsStoredAfterTheDeleteIsDeliveredNowAndAgainAtTheNextLogin() throws Exception {
        Session app = new Session(SELLER + "/app");
        openfire.login(app, NOTHING, gatewaySends("w2"));
        assertEquals(1, openfire.offline.size());
        tick(200);
        assertEquals(1, openfire.deliveredWithId("w2"));
        // Openfire's row stays: the next login hands it over again with the same id (dropped by id).
        app.initialized = false;
        app.presence = new Presence(Presence.Type.unavailable);
        openfire.login(app, NOTHING, NOTHING);
        assertEquals(2, openfire.deliveredWithId("w2"));
        tick(200);
        assertEquals(2, openfire.deliveredWithId("w2"));
    }

    @Test
    public void aSendAsStoredBeforeTheSelectIsHandedOverByOpenfireAndNotRepeated() throws Exception {
        Session app = new Session(SELLER + "/app");
        openfire.sessions.put("seller7", app);
        // The login has started (first interceptor pass), Openfire has not read the store yet.
        interceptor.interceptPacket(new Presence(), app, true, false);
        openfire.route(sendAs("w10"));
        assertEquals(1, race.held());
        app.presence = new Presence();
        Message row = openfire.offline.remove(0);
        openfire.deliver(app, row);
        assertEquals(0, race.held());
        app.initialized = true;
        interceptor.interceptPacket(new Presence(), app, true, true);
        tick(200);
        assertEquals(1, openfire.deliveredWithId("w10"));
        assertEquals(1, stats.loginRaceHandedOver.get());
        assertEquals(0, stats.loginRaceRerouted.get());
    }

    @Test
    public void aLateStoredReportOfAMessageAlreadyHandedOverIsNotKept() throws Exception {
        Session app = new Session(SELLER + "/app");
        openfire.sessions.put("seller7", app);
        interceptor.interceptPacket(new Presence(), app, true, false);
        Message m = message("<message xmlns='jabber:client' from='buyer42@shop.example/web' to='" + SELLER
                + "' id='w11' type='chat'><body>x</body></message>");
        race.routing(m, clock.now);
        openfire.deliver(app, m);
        listener.messageStored(m);
        assertEquals(0, race.held());
    }

    @Test
    public void nothingIsKeptOutsideALogin() throws Exception {
        openfire.route(sendAs("w3"));
        assertEquals(0, race.held());
        openfire.login(new Session(SELLER + "/app"), NOTHING, NOTHING);
        tick(200);
        assertEquals(1, openfire.deliveredWithId("w3"));
        assertEquals(0, stats.loginRaceHeld.get());
        // Long after the login, a message stored offline (the session went away) is Openfire's alone.
        openfire.sessions.clear();
        tick(10000);
        openfire.route(sendAs("w4"));
        assertEquals(0, race.held());
        assertEquals(0, race.tracked());
    }

    @Test
    public void aClientsOwnMessageIsNotKept() throws Exception {
        final Message fromClient = message("<message xmlns='jabber:client' from='buyer42@shop.example/web'"
                + " to='" + SELLER + "' id='c1' type='chat'><body>x</body></message>");
        openfire.login(new Session(SELLER + "/app"), new Runnable() {
            @Override
            public void run() {
                openfire.route(fromClient);
            }
        }, NOTHING);
        tick(200);
        assertEquals(0, openfire.deliveredWithId("c1"));
        assertEquals(0, stats.loginRaceHeld.get());
    }

    @Test
    public void aLateStoredReportWithinTheGraceCounts() throws Exception {
        Message m = message("<message xmlns='jabber:client' from='buyer42@shop.example/web' to='" + SELLER
                + "' id='w5' type='chat'><body>x</body></message>");
        race.routing(m, clock.now);
        openfire.login(new Session(SELLER + "/app"), NOTHING, NOTHING);
        clock.now += 1000;
        listener.messageStored(m);
        assertEquals(1, race.held());
        tick(200);
        assertEquals(1, openfire.deliveredWithId("w5"));
        // Past the grace a report is not the login's any more.
        Message late = message("<message xmlns='jabber:client' from='buyer42@shop.example/web' to='" + SELLER
                + "' id='w6' type='chat'><body>x</body></message>");
        race.routing(late, clock.now);
        clock.now += 6000;
        listener.messageStored(late);
        assertEquals(0, race.held());
    }

    @Test
    public void theOpenfire47ListenerMethodWorksToo() throws Exception {
        Session app = new Session(SELLER + "/app");
        Presence available = new Presence();
        interceptor.interceptPacket(available, app, true, false);
        Message m = message("<message xmlns='jabber:client' from='buyer42@shop.example/web' to='" + SELLER
                + "' id='w7' type='chat'><body>x</body></message>");
        race.routing(m, clock.now);
        listener.messageStored(new OfflineMessage(new java.util.Date(), m.getElement().createCopy()));
        assertEquals(1, race.held());
    }

    @Test
    public void onlyAnInitialPresenceOnAnUninitializedSessionStartsALogin() throws Exception {
        Session app = new Session(SELLER + "/app");
        app.initialized = true;
        interceptor.interceptPacket(new Presence(), app, true, false);
        assertEquals(0, race.tracked());
        app.initialized = false;
        Presence directed = new Presence();
        directed.setTo(new JID("buyer42@shop.example"));
        interceptor.interceptPacket(directed, app, true, false);
        assertEquals(0, race.tracked());
        interceptor.interceptPacket(new Presence(Presence.Type.unavailable), app, true, false);
        assertEquals(0, race.tracked());
        interceptor.interceptPacket(new Presence(), app, false, false);
        assertEquals(0, race.tracked());
        interceptor.interceptPacket(new Presence(), app, true, false);
        assertEquals(1, race.tracked());
    }

    @Test
    public void aLoginThatNeverEndsIsForgottenAndItsMessagesRoutedAgain() throws Exception {
        Session app = new Session(SELLER + "/app");
        openfire.sessions.put("seller7", app);
        interceptor.interceptPacket(new Presence(), app, true, false);
        openfire.route(sendAs("w8"));
        assertEquals(1, race.held());
        tick(30000);
        assertEquals(1, race.held());
        app.initialized = true;
        app.presence = new Presence();
        tick(30000);
        assertEquals(1, openfire.deliveredWithId("w8"));
        assertEquals(0, race.held());
    }

    @Test
    public void heldMessagesAreBoundedOldestFirst() throws Exception {
        Session app = new Session(SELLER + "/app");
        openfire.sessions.put("seller7", app);
        interceptor.interceptPacket(new Presence(), app, true, false);
        for (int i = 1; i <= 5; i++) {
            openfire.route(sendAs("b" + i));
        }
        assertEquals(3, race.held());
        assertEquals(2, stats.loginRaceDropped.get());
        app.initialized = true;
        app.presence = new Presence();
        interceptor.interceptPacket(new Presence(), app, true, true);
        tick(200);
        assertEquals(0, openfire.deliveredWithId("b1"));
        assertEquals(0, openfire.deliveredWithId("b2"));
        assertEquals(1, openfire.deliveredWithId("b3"));
        assertEquals(1, openfire.deliveredWithId("b5"));
    }

    @Test
    public void aMessageIsRoutedAgainAtMostOnce() throws Exception {
        // The session is gone again when the message is routed again: Openfire stores it offline
        // once more (delivered at the next login), and the companion does not keep it again.
        Session app = new Session(SELLER + "/app");
        openfire.sessions.put("seller7", app);
        interceptor.interceptPacket(new Presence(), app, true, false);
        openfire.route(sendAs("w9"));
        interceptor.interceptPacket(new Presence(), app, true, true);
        tick(200);
        assertEquals(1, stats.loginRaceRerouted.get());
        assertEquals(0, race.held());
        assertEquals(2, openfire.offline.size());
        tick(200);
        tick(200);
        assertEquals(1, stats.loginRaceRerouted.get());
        assertFalse(openfire.offline.isEmpty());
    }
}
