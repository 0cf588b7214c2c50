package org.imgw.openfire;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.dom4j.DocumentException;
import org.dom4j.DocumentHelper;
import org.dom4j.Element;
import org.xmpp.packet.IQ;
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
}
