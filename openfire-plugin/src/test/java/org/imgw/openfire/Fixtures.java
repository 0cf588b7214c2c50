package org.imgw.openfire;

import java.sql.SQLException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.dom4j.DocumentException;
import org.dom4j.DocumentHelper;
import org.dom4j.Element;
import org.xmpp.packet.IQ;
import org.xmpp.packet.JID;
import org.xmpp.packet.Message;
import org.xmpp.packet.Packet;

/** Test doubles and stanza helpers shared by the unit tests. */
final class Fixtures {
    static final String DOMAIN = "shop.example";
    static final String GW = "gw.shop.example";

    private Fixtures() {
    }

    static Element xml(String text) {
        try {
            return DocumentHelper.parseText(text).getRootElement();
        } catch (DocumentException e) {
            throw new IllegalArgumentException(text, e);
        }
    }

    static Message message(String text) {
        return new Message(xml(text));
    }

    static IQ iq(String text) {
        return new IQ(xml(text));
    }

    static final class FakeSettings implements Settings {
        String secret = "";
        boolean copy = true;
        String acks = "auto";
        boolean acksSeen;
        int acksSeenMarks;
        int backlog = 10000;
        long backlogChars = 64L * 1024 * 1024;
        long timeout = 10000;
        int window = 1000;
        boolean adopt = false;

        @Override
        public String serverDomain() {
            return DOMAIN;
        }

        @Override
        public String gatewayDomain() {
            return GW;
        }

        @Override
        public String secret() {
            return secret;
        }

        @Override
        public boolean copyEnabled() {
            return copy;
        }

        @Override
        public String acksMode() {
            return acks;
        }

        @Override
        public boolean acksSeen() {
            return acksSeen;
        }

        @Override
        public void markAcksSeen() {
            acksSeen = true;
            acksSeenMarks++;
        }

        @Override
        public int ackBacklog() {
            return backlog;
        }

        @Override
        public long ackBacklogChars() {
            return backlogChars;
        }

        @Override
        public long ackTimeoutMillis() {
            return timeout;
        }

        @Override
        public int ackWindow() {
            return window;
        }

        @Override
        public boolean adoptExisting() {
            return adopt;
        }
    }

    static final class StoredUser {
        String password;
        String name;
        String email;
        String managedBy;
        final Map<String, String> properties = new LinkedHashMap<String, String>();
    }

    /**
     * A UserStore in a map, with the same outcomes as Openfire's UserManager. Users added with
     * {@link #with} exist outside imgw (not managed); {@link #admins} are server administrators.
     */
    static final class MemoryUsers implements UserStore {
        final Map<String, StoredUser> users = new HashMap<String, StoredUser>();
        final java.util.Set<String> admins = new java.util.HashSet<String>();
        boolean readOnly;

        @Override
        public boolean isAdmin(String username) {
            return admins.contains(username);
        }

        @Override
        public String managedBy(String username) {
            StoredUser u = users.get(username);
            return u == null ? null : u.managedBy;
        }

        @Override
        public void markManaged(String username, String how) throws NotFound {
            StoredUser u = users.get(username);
            if (u == null) {
                throw new NotFound();
            }
            u.managedBy = how;
        }

        MemoryUsers with(String... names) {
            for (String n : names) {
                users.put(n, new StoredUser());
            }
            return this;
        }

        @Override
        public boolean exists(String username) {
            return users.containsKey(username);
        }

        @Override
        public void create(String username, String password, String name, String email,
                Map<String, String> properties) throws AlreadyExists {
            if (readOnly) {
                throw new UnsupportedOperationException("read-only");
            }
            if (users.containsKey(username)) {
                throw new AlreadyExists();
            }
            StoredUser u = new StoredUser();
            u.password = password;
            u.name = name;
            u.email = email;
            u.properties.putAll(properties);
            users.put(username, u);
        }

        @Override
        public void update(String username, String password, String name, String email,
                Map<String, String> properties) throws NotFound {
            StoredUser u = users.get(username);
            if (u == null) {
                throw new NotFound();
            }
            if (password != null) {
                u.password = password;
            }
            if (name != null) {
                u.name = name;
            }
            if (email != null) {
                u.email = email;
            }
            for (Map.Entry<String, String> p : properties.entrySet()) {
                if (p.getValue() == null) {
                    u.properties.remove(p.getKey());
                } else {
                    u.properties.put(p.getKey(), p.getValue());
                }
            }
        }

        @Override
        public void delete(String username) throws NotFound {
            if (users.remove(username) == null) {
                throw new NotFound();
            }
        }
    }

    static final class ListSink implements PacketSink {
        final List<Packet> routed = new ArrayList<Packet>();

        @Override
        public void route(Packet packet) {
            routed.add(packet);
        }

        List<Message> messages() {
            List<Message> out = new ArrayList<Message>();
            for (Packet p : routed) {
                out.add((Message) p);
            }
            return out;
        }
    }

    static final class FakeClock implements MessageFlow.Clock {
        long now = 1764088800123L;

        @Override
        public long now() {
            return now;
        }
    }

    static final class CountingIds implements MessageFlow.IdSource {
        int n;

        @Override
        public String next() {
            return "copy-" + (++n);
        }
    }

    static final class RecordingPresence implements PresencePublisher {
        final List<String> published = new ArrayList<String>();

        @Override
        public void publish(String username, boolean available) {
            published.add(username + "=" + available);
        }
    }

    /** A CopyStore in a sorted map that can be told to fail. */
    static final class MemoryStore implements CopyStore {
        final TreeMap<Long, Row> rows = new TreeMap<Long, Row>();
        boolean failing;
        int inserts;
        int loads;
        int deletes;

        private void check() throws SQLException {
            if (failing) {
                throw new SQLException("database down (test)");
            }
        }

        @Override
        public long maxSeq() throws SQLException {
            check();
            return rows.isEmpty() ? 0 : rows.lastKey();
        }

        @Override
        public long count() throws SQLException {
            check();
            return rows.size();
        }

        @Override
        public void insert(List<Row> batch) throws SQLException {
            check();
            inserts++;
            for (Row r : batch) {
                if (rows.containsKey(r.seq)) {
                    throw new SQLException("duplicate key " + r.seq);
                }
            }
            for (Row r : batch) {
                rows.put(r.seq, r);
            }
        }

        @Override
        public List<Row> load(long fromSeq, int max) throws SQLException {
            check();
            loads++;
            List<Row> out = new ArrayList<Row>();
            for (Row r : rows.tailMap(fromSeq, true).values()) {
                if (out.size() >= max) {
                    break;
                }
                out.add(r);
            }
            return out;
        }

        @Override
        public int delete(long first, long last) throws SQLException {
            check();
            deletes++;
            Map<Long, Row> hit = rows.subMap(first, true, last, true);
            int n = hit.size();
            hit.clear();
            return n;
        }
    }

    /** Rosters in maps: user → (contact bare JID → "from" | "to" | "both" | "none"). */
    static final class MapRosters implements Rosters {
        final Map<String, Map<String, String>> items = new HashMap<String, Map<String, String>>();

        /** Makes a and b subscribed to each other. */
        MapRosters both(String a, String b) {
            item(a, b + "@" + DOMAIN, "both");
            item(b, a + "@" + DOMAIN, "both");
            return this;
        }

        MapRosters item(String user, String contact, String sub) {
            Map<String, String> r = items.get(user);
            if (r == null) {
                r = new LinkedHashMap<String, String>();
                items.put(user, r);
            }
            r.put(contact, sub);
            return this;
        }

        @Override
        public boolean isSubscriber(String username, JID contact) {
            Map<String, String> r = items.get(username);
            String sub = r == null ? null : r.get(contact.toBareJID());
            return "from".equals(sub) || "both".equals(sub);
        }

        @Override
        public List<JID> subscriptions(String username) {
            List<JID> out = new ArrayList<JID>();
            Map<String, String> r = items.get(username);
            if (r != null) {
                for (Map.Entry<String, String> e : r.entrySet()) {
                    if ("to".equals(e.getValue()) || "both".equals(e.getValue())) {
                        out.add(new JID(e.getKey()));
                    }
                }
            }
            return out;
        }
    }

    /** Users with an available real session. */
    static final class SetSessions implements RealSessions {
        final Set<String> online = new HashSet<String>();

        @Override
        public boolean hasAvailable(String username) {
            return online.contains(username);
        }
    }
}
