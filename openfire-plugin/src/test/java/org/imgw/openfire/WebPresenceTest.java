package org.imgw.openfire;

import static org.junit.Assert.assertEquals;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import org.imgw.openfire.Fixtures.FakeSettings;
import org.imgw.openfire.Fixtures.ListSink;
import org.imgw.openfire.Fixtures.MapRosters;
import org.imgw.openfire.Fixtures.RecordingPresence;
import org.junit.Before;
import org.junit.Test;
import org.xmpp.packet.JID;
import org.xmpp.packet.Packet;
import org.xmpp.packet.Presence;

public class WebPresenceTest {
    private static final String BOOT = "5f0c9a1e2b3d4c5e";
    private ListSink sink;
    private WebUsers web;
    private MapRosters rosters;
    private WebPresence presence;

    @Before
    public void setUp() throws CompanionError {
        sink = new ListSink();
        CompanionStats stats = new CompanionStats();
        web = new WebUsers(new RecordingPresence(), stats);
        rosters = new MapRosters().both("buyer42", "seller7").item("buyer42", "lurker@shop.example", "to")
                .item("lurker", "buyer42@shop.example", "from").item("carol", "buyer42@shop.example", "to");
        presence = new WebPresence(new FakeSettings(), web, rosters, sink, stats);
        web.gateway(3, BOOT, 30, 0, 0, null, 0);
        web.web(3, BOOT, false, Arrays.asList(new WebUsers.Change("buyer42", true)),
                new HashSet<String>(Arrays.asList("buyer42")), 0);
    }

    private List<String> sent() {
        List<String> out = new ArrayList<String>();
        for (Packet p : sink.routed) {
            Presence pr = (Presence) p;
            out.add(pr.getFrom() + ">" + pr.getTo() + (pr.isAvailable() ? "" : " " + pr.getType()));
        }
        return out;
    }

    @Test
    public void aContactComingOnlineSeesTheWebResource() {
        presence.onSessionAvailable(new JID("seller7@shop.example/phone"));
        assertEquals(Arrays.asList("buyer42@shop.example/web>seller7@shop.example/phone"), sent());
    }

    @Test
    public void onlyContactsTheUserLetsSeeIt() {
        // carol's roster says 'to', but buyer42's roster does not give her 'from'.
        presence.onSessionAvailable(new JID("carol@shop.example/pc"));
        // lurker has buyer42 as 'from' only: lurker does not receive buyer42's presence.
        presence.onSessionAvailable(new JID("lurker@shop.example/pc"));
        assertEquals(0, sink.routed.size());
    }

    @Test
    public void theUsersOwnNewSessionSeesItsWebResource() {
        presence.onSessionAvailable(new JID("buyer42@shop.example/phone"));
        assertEquals(Arrays.asList("buyer42@shop.example/web>buyer42@shop.example/phone"), sent());
    }

    @Test
    public void nothingWhenTheUserIsNotWebOnline() {
        web.gateway(3, BOOT, 0, 0, 0, null, 1);
        presence.onSessionAvailable(new JID("seller7@shop.example/phone"));
        presence.onSubscribed(new JID("seller7@shop.example"), new JID("buyer42@shop.example"));
        assertEquals(0, sink.routed.size());
    }

    @Test
    public void aNewSubscriberSeesItAtOnce() {
        presence.onSubscribed(new JID("friend@remote.example/x"), new JID("buyer42@shop.example"));
        presence.onSubscribed(new JID("friend@remote.example/x"), new JID("buyer42@remote.example"));
        assertEquals(Arrays.asList("buyer42@shop.example/web>friend@remote.example"), sent());
    }

    @Test
    public void theOpenfireListenerSwallowsFailures() {
        WebPresence failing = new WebPresence(new FakeSettings(), web, new Rosters() {
            @Override
            public boolean isSubscriber(String username, JID contact) {
                throw new IllegalStateException("roster store down");
            }

            @Override
            public List<JID> subscriptions(String username) {
                throw new IllegalStateException("roster store down");
            }
        }, sink, new CompanionStats());
        CompanionPresenceListener listener = new CompanionPresenceListener(failing);
        listener.subscribedToPresence(new JID("a@shop.example"), new JID("buyer42@shop.example"));
        listener.unavailableSession(null, null);
        listener.presenceChanged(null, null);
        listener.unsubscribedToPresence(null, null);
        assertEquals(1, sink.routed.size());
    }
}
