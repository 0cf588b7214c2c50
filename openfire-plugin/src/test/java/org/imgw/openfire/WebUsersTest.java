package org.imgw.openfire;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.imgw.openfire.Fixtures.RecordingPresence;
import org.junit.Before;
import org.junit.Test;

public class WebUsersTest {
    private static final String BOOT = "5f0c9a1e2b3d4c5e";
    private static final String BOOT2 = "00000000000000aa";
    private RecordingPresence presence;
    private CompanionStats stats;
    private WebUsers web;
    private long now = 1000000;
    private final Set<String> accounts = new HashSet<String>(Arrays.asList("alice", "bob", "carol"));

    @Before
    public void setUp() {
        presence = new RecordingPresence();
        stats = new CompanionStats();
        web = new WebUsers(presence, stats);
    }

    private static List<WebUsers.Change> changes(String... spec) {
        List<WebUsers.Change> out = new ArrayList<WebUsers.Change>();
        for (String s : spec) {
            out.add(new WebUsers.Change(s.substring(1), s.charAt(0) == '+'));
        }
        return out;
    }

    private void web(int node, String boot, boolean reset, String... spec) throws CompanionError {
        web.web(node, boot, reset, changes(spec), accounts, now);
    }

    private long sum(String... names) {
        return UserSum.of(Arrays.asList(names));
    }

    @Test
    public void aNewBootRegistersAndTheSameBootRenews() {
        WebUsers.Beat b = web.gateway(3, BOOT, 30, 0, 0, "0", now);
        assertTrue(b.registered);
        assertTrue("empty set, zero sum", b.sync);
        b = web.gateway(3, BOOT, 30, 0, 0, "5", now + 10000);
        assertFalse(b.registered);
        assertEquals(1, web.instances(now).size());
        assertEquals("5", web.instances(now).get(0).mark);
        assertEquals(30000, web.instances(now + 10000).get(0).leaseLeftMillis);
    }

    @Test
    public void usersGoOnlineAndOffWithTransitionsOnly() throws CompanionError {
        web.gateway(3, BOOT, 30, 0, 0, null, now);
        web(3, BOOT, false, "+alice", "+bob", "+alice");
        assertTrue(web.isWebOnline("alice"));
        assertTrue(web.isWebOnline("bob"));
        assertEquals(Arrays.asList("alice=true", "bob=true"), presence.published);
        assertTrue(web.gateway(3, BOOT, 30, 2, sum("alice", "bob"), null, now).sync);
        assertFalse(web.gateway(3, BOOT, 30, 2, sum("alice", "carol"), null, now).sync);
        assertFalse(web.gateway(3, BOOT, 30, 3, sum("alice", "bob"), null, now).sync);
        web(3, BOOT, false, "-alice", "-nobody");
        assertFalse(web.isWebOnline("alice"));
        assertEquals(Arrays.asList("alice=true", "bob=true", "alice=false"), presence.published);
        assertTrue(web.gateway(3, BOOT, 30, 1, sum("bob"), null, now).sync);
    }

    @Test
    public void aUserListedByTwoInstancesStaysOnlineUntilBothLetGo() throws CompanionError {
        web.gateway(1, BOOT, 30, 0, 0, null, now);
        web.gateway(2, BOOT2, 30, 0, 0, null, now);
        web(1, BOOT, false, "+alice");
        web(2, BOOT2, false, "+alice");
        web(1, BOOT, false, "-alice");
        assertTrue(web.isWebOnline("alice"));
        web(2, BOOT2, false, "-alice");
        assertFalse(web.isWebOnline("alice"));
        assertEquals(Arrays.asList("alice=true", "alice=false"), presence.published);
    }

    @Test
    public void aLeaseThatRunsOutTakesTheUsersAway() throws CompanionError {
        web.gateway(3, BOOT, 30, 0, 0, null, now);
        web(3, BOOT, false, "+alice", "+bob");
        web.expire(now + 29999);
        assertTrue(web.isWebOnline("alice"));
        web.expire(now + 30000);
        assertFalse(web.isWebOnline("alice"));
        assertFalse(web.isWebOnline("bob"));
        assertFalse(web.anyInstance());
        assertEquals(1, stats.leasesExpired.get());
        assertEquals(4, presence.published.size());
        try {
            web(3, BOOT, false, "+alice");
            fail("the expired instance must be unknown");
        } catch (CompanionError e) {
            assertEquals(org.xmpp.packet.PacketError.Condition.item_not_found, e.condition());
        }
    }

    @Test
    public void aHeartbeatKeepsTheLeaseAlive() throws CompanionError {
        web.gateway(3, BOOT, 30, 0, 0, null, now);
        web(3, BOOT, false, "+alice");
        for (int i = 1; i <= 10; i++) {
            web.gateway(3, BOOT, 30, 1, sum("alice"), null, now + i * 10000L);
            web.expire(now + i * 10000L + 1);
        }
        assertTrue(web.isWebOnline("alice"));
    }

    @Test
    public void leaseZeroEndsTheInstanceAtOnce() throws CompanionError {
        web.gateway(3, BOOT, 30, 0, 0, null, now);
        web(3, BOOT, false, "+alice");
        WebUsers.Beat b = web.gateway(3, BOOT, 0, 0, 0, null, now + 1);
        assertTrue(b.sync);
        assertFalse(web.isWebOnline("alice"));
        assertFalse(web.anyInstance());
        assertEquals(Arrays.asList("alice=true", "alice=false"), presence.published);
    }

    @Test
    public void aNewBootOfTheSameNodeEndsTheEarlierProcess() throws CompanionError {
        web.gateway(3, BOOT, 30, 0, 0, null, now);
        web(3, BOOT, false, "+alice");
        WebUsers.Beat b = web.gateway(3, BOOT2, 30, 0, 0, null, now + 1);
        assertTrue(b.registered);
        assertFalse("the new instance starts empty", web.isWebOnline("alice"));
        try {
            web(3, BOOT, false, "+bob");
            fail("the old boot is gone");
        } catch (CompanionError e) {
            assertEquals(org.xmpp.packet.PacketError.Condition.item_not_found, e.condition());
        }
        assertFalse(web.isWebOnline("bob"));
    }

    @Test
    public void unknownUsersCountInTheSumButNeverGoOnline() throws CompanionError {
        web.gateway(3, BOOT, 30, 0, 0, null, now);
        web(3, BOOT, false, "+alice", "+ghost");
        assertFalse(web.isWebOnline("ghost"));
        assertEquals(1, stats.webUnknownUsers.get());
        assertTrue("the gateway's count and sum include it", web.gateway(3, BOOT, 30, 2, sum("alice", "ghost"), null, now).sync);
        web(3, BOOT, false, "-ghost");
        assertTrue(web.gateway(3, BOOT, 30, 1, sum("alice"), null, now).sync);
        assertEquals(Arrays.asList("alice=true"), presence.published);
        // An account created later comes online when listed again.
        web(3, BOOT, false, "+dave");
        accounts.add("dave");
        web(3, BOOT, false, "+dave");
        assertTrue(web.isWebOnline("dave"));
    }

    @Test
    public void aResetInChunksDoesNotFlapUsersStillListed() throws CompanionError {
        web.gateway(3, BOOT, 30, 0, 0, null, now);
        web(3, BOOT, false, "+alice", "+bob", "+carol");
        presence.published.clear();
        // The full list again, in two requests; carol has left meanwhile.
        web(3, BOOT, true, "+alice");
        assertTrue("bob waits for the rest of the list", web.isWebOnline("bob"));
        web(3, BOOT, false, "+bob");
        assertTrue(web.isWebOnline("carol"));
        assertTrue(web.gateway(3, BOOT, 30, 2, sum("alice", "bob"), null, now + 100).sync);
        assertFalse("the next <gateway> ends the grace", web.isWebOnline("carol"));
        assertEquals(Arrays.asList("carol=false"), presence.published);
    }

    @Test
    public void aResetGraceEndsByTimeToo() throws CompanionError {
        web.gateway(3, BOOT, 30, 0, 0, null, now);
        web(3, BOOT, false, "+alice", "+bob");
        web(3, BOOT, true, "+alice");
        web.expire(now + WebUsers.RESET_GRACE_MILLIS - 1);
        assertTrue(web.isWebOnline("bob"));
        web.expire(now + WebUsers.RESET_GRACE_MILLIS);
        assertFalse(web.isWebOnline("bob"));
        assertTrue(web.isWebOnline("alice"));
    }

    @Test
    public void anOffDuringTheGraceTakesTheUserAwayAtOnce() throws CompanionError {
        web.gateway(3, BOOT, 30, 0, 0, null, now);
        web(3, BOOT, false, "+alice", "+bob");
        web(3, BOOT, true, "+alice");
        web(3, BOOT, false, "-bob");
        assertFalse(web.isWebOnline("bob"));
    }

    @Test
    public void versionZeroAnnouncementsHoldUsersToo() throws CompanionError {
        web.v0("alice", true);
        web.v0("alice", true);
        assertTrue(web.isWebOnline("alice"));
        web.gateway(3, BOOT, 30, 0, 0, null, now);
        web(3, BOOT, false, "+alice");
        web.v0("alice", false);
        assertTrue("the version-1 instance still lists her", web.isWebOnline("alice"));
        web.gateway(3, BOOT, 0, 0, 0, null, now);
        assertFalse(web.isWebOnline("alice"));
        assertEquals(Arrays.asList("alice=true", "alice=false"), presence.published);
        assertFalse("a version-0 gateway has no lease: nothing expires", web.anyInstance());
    }

    @Test
    public void aFailingPublisherDoesNotStopTheOthers() throws CompanionError {
        final List<String> seen = new ArrayList<String>();
        web = new WebUsers(new PresencePublisher() {
            @Override
            public void publish(String username, boolean available) {
                seen.add(username);
                if ("alice".equals(username)) {
                    throw new IllegalStateException("roster failed");
                }
            }
        }, stats);
        web.gateway(3, BOOT, 30, 0, 0, null, now);
        web(3, BOOT, false, "+alice", "+bob");
        assertEquals(Arrays.asList("alice", "bob"), seen);
        assertTrue(web.isWebOnline("alice"));
    }
}
