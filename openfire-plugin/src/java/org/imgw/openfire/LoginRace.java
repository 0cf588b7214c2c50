package org.imgw.openfire;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.xmpp.packet.JID;
import org.xmpp.packet.Message;

/**
 * Closes Openfire's offline-store login race for the messages the companion routes as a user
 * (section 10 of the companion protocol, "Openfire: a recipient logging in").
 *
 * <p>Openfire (4.1 through 5.x) hands a user's offline messages over when the user's first
 * available presence is handled: {@code PresenceUpdateHandler} makes the session available, then
 * {@code OfflineMessageStore.getMessages(username, true)} runs {@code SELECT ... WHERE username=?}
 * and afterwards {@code DELETE ... WHERE username=?}, and only then marks the session initialized.
 * Until it is initialized, a message for the user's bare JID goes to offline storage; one stored
 * between the SELECT and the DELETE is deleted without ever being read, and one stored after the
 * DELETE waits for the next login.
 *
 * <p>The interceptor sees that presence twice on the same thread: before Openfire handles it
 * ({@link #loginStarted}, session not yet initialized) and after ({@link #loginDone}, the
 * retrieval is over and the session initialized). Every send-as message Openfire reports stored
 * offline ({@link #stored}) for a user while such a login is under way, or within a short grace
 * after it (the listener runs after the row is written, so it may come late), is kept and routed
 * again by {@link #tick} once no login of that user is under way. A message stored before the
 * login started was committed before the SELECT and is handed over by Openfire; it is not kept.
 * A kept message that Openfire hands to a session of the user ({@link #handedOver}: it was stored
 * after the login started but before the SELECT) is not routed again either. What is left may
 * still reach the user twice (one stored after the DELETE stays in the store for the next login)
 * with the same stanza id; receivers drop repeated ids. Each message is routed again at most once.
 *
 * <p>Bounded: at most {@code maxHeld} messages kept (oldest given up first, counted), logins that
 * never finish are forgotten after {@code maxAgeMillis}, the send-as keys are a {@link RecentKeys}.
 * Thread-safe; {@link #tick} routes outside the lock, from the plugin's timer thread.
 */
public final class LoginRace {
    /** A login whose processed pass never came (another interceptor rejected it) ends after this. */
    public static final long DEFAULT_MAX_AGE_MILLIS = 120000;
    /** How long after a login's end a late "stored" report still counts for it. */
    public static final long DEFAULT_GRACE_MILLIS = 5000;
    /** Most messages kept at once, all users together. */
    public static final int DEFAULT_MAX_HELD = 10000;
    /** Most logins under way tracked at once. */
    public static final int DEFAULT_MAX_LOGINS = 20000;

    /**
     * Most handed-over keys remembered, all users together; past it a kept message that Openfire
     * did hand over may be routed again (a repeat, never a loss).
     */
    private static final int MAX_HANDED_OVER = 100000;

    private static final class UserState {
        int inProgress;
        long lastDoneAt;
        final List<Message> held = new ArrayList<Message>();
        /** Keys of messages Openfire handed to a session of the user while tracked. */
        final Set<String> handedOver = new HashSet<String>();
    }

    private final PacketSink sink;
    private final CompanionStats stats;
    private final String serverDomain;
    private final long maxAgeMillis;
    private final long graceMillis;
    private final int maxHeld;
    private final int maxLogins;
    /** Send-as messages routed recently: bare from, bare to, id. */
    private final RecentKeys routed;
    /** Messages routed again, so that one stored again is not kept a second time. */
    private final RecentKeys rescued;
    /** Logins under way: full JID to start time, oldest first. */
    private final LinkedHashMap<String, Long> logins = new LinkedHashMap<String, Long>();
    /** Full JID of each login under way to its user name. */
    private final Map<String, String> loginUsers = new HashMap<String, String>();
    private final Map<String, UserState> users = new HashMap<String, UserState>();
    /** Kept messages, oldest first (for the bound); the same objects as in the users' lists. */
    private final ArrayDeque<Message> heldOrder = new ArrayDeque<Message>();
    private int heldCount;
    private int handedOverCount;
    /** users.size(), readable without the lock: the outgoing pass of every message checks it. */
    private volatile int trackedUsers;

    /** With the default bounds. */
    public LoginRace(PacketSink sink, CompanionStats stats, String serverDomain) {
        this(sink, stats, serverDomain, DEFAULT_MAX_AGE_MILLIS, DEFAULT_GRACE_MILLIS, DEFAULT_MAX_HELD,
                DEFAULT_MAX_LOGINS);
    }

    /**
     * @param sink where messages are routed again (Openfire's packet router)
     * @param stats counters
     * @param serverDomain DOMAIN; only its users are tracked
     * @param maxAgeMillis how long a login under way and a send-as key are remembered, at least 1
     * @param graceMillis how long after a login's end a stored message still counts for it
     * @param maxHeld most messages kept at once, at least 1
     * @param maxLogins most logins under way tracked at once, at least 1
     */
    public LoginRace(PacketSink sink, CompanionStats stats, String serverDomain, long maxAgeMillis,
            long graceMillis, int maxHeld, int maxLogins) {
        this.sink = sink;
        this.stats = stats;
        this.serverDomain = serverDomain;
        this.maxAgeMillis = Math.max(1, maxAgeMillis);
        this.graceMillis = Math.max(0, graceMillis);
        this.maxHeld = Math.max(1, maxHeld);
        this.maxLogins = Math.max(1, maxLogins);
        this.routed = new RecentKeys(this.maxAgeMillis, 100000);
        this.rescued = new RecentKeys(this.maxAgeMillis, 100000);
    }

    private static String key(Message m) {
        JID from;
        JID to;
        try {
            from = m.getFrom();
            to = m.getTo();
        } catch (IllegalArgumentException e) {
            return null;
        }
        String id = m.getID();
        if (from == null || to == null || id == null || to.getNode() == null) {
            return null;
        }
        return from.toBareJID() + '\n' + to.toBareJID() + '\n' + id;
    }

    /**
     * Notes a send-as message about to be routed, so that {@link #stored} recognizes it. Called on
     * the component stream's thread; takes no copy.
     */
    public void routing(Message m, long now) {
        String k = key(m);
        if (k != null) {
            routed.firstSeen(k, now);
        }
    }

    /**
     * The interceptor's incoming, not yet processed pass of an available presence without 'to'
     * from a local client session that is not initialized: Openfire is about to hand over the
     * user's offline messages.
     *
     * @param session the session's full JID
     */
    public synchronized void loginStarted(JID session, long now) {
        if (session == null || session.getNode() == null) {
            return;
        }
        String full = session.toString();
        if (logins.containsKey(full)) {
            return;
        }
        while (logins.size() >= maxLogins) {
            Iterator<Map.Entry<String, Long>> oldest = logins.entrySet().iterator();
            String gone = oldest.next().getKey();
            oldest.remove();
            end(gone, now);
        }
        logins.put(full, now);
        String user = session.getNode();
        loginUsers.put(full, user);
        UserState u = users.get(user);
        if (u == null) {
            u = new UserState();
            users.put(user, u);
            trackedUsers = users.size();
        }
        u.inProgress++;
    }

    /**
     * The processed pass of the same presence: Openfire's retrieval is over and the session is
     * initialized (messages for the user are delivered live from now on).
     */
    public synchronized void loginDone(JID session, long now) {
        if (session == null || session.getNode() == null) {
            return;
        }
        String full = session.toString();
        if (logins.remove(full) != null) {
            end(full, now);
        }
    }

    private void end(String full, long now) {
        String user = loginUsers.remove(full);
        UserState u = user == null ? null : users.get(user);
        if (u != null && u.inProgress > 0) {
            u.inProgress--;
            u.lastDoneAt = now;
        }
    }

    /**
     * Openfire stored a message offline (OfflineMessageListener.messageStored). Keeps a copy when
     * it is a send-as message routed by the companion and a login of its recipient is under way or
     * just ended. Never throws for a malformed message.
     */
    public void stored(Message m, long now) {
        String k = key(m);
        if (k == null || !serverDomain.equalsIgnoreCase(m.getTo().getDomain()) || !routed.contains(k, now)) {
            return;
        }
        Message copy;
        synchronized (this) {
            UserState u = users.get(m.getTo().getNode());
            if (u == null || (u.inProgress == 0 && now - u.lastDoneAt > graceMillis)) {
                return;
            }
            if (rescued.contains(k, now) || u.handedOver.contains(k)) {
                return;
            }
            copy = m.createCopy();
            u.held.add(copy);
            heldOrder.addLast(copy);
            heldCount++;
            stats.loginRaceHeld.incrementAndGet();
            while (heldCount > maxHeld) {
                dropOldest();
            }
        }
    }

    private void dropOldest() {
        Message oldest = heldOrder.pollFirst();
        if (oldest == null) {
            heldCount = 0;
            return;
        }
        UserState u = users.get(oldest.getTo().getNode());
        if (u != null && removeSame(u.held, oldest)) {
            heldCount--;
            stats.loginRaceDropped.incrementAndGet();
        }
    }

    /**
     * The interceptor's outgoing pass of a message to a local client session: Openfire hands it to
     * that session (from offline storage during a login, or live). A kept message handed over
     * this way is not routed again, which saves the repeat for the messages stored after the
     * login started but before Openfire read the store. Cheap when no login is tracked.
     */
    public void handedOver(Message m) {
        if (trackedUsers == 0) {
            return;
        }
        String k = key(m);
        if (k == null) {
            return;
        }
        synchronized (this) {
            UserState u = users.get(m.getTo().getNode());
            if (u == null) {
                return;
            }
            if (handedOverCount < MAX_HANDED_OVER && u.handedOver.add(k)) {
                handedOverCount++;
            }
            for (Iterator<Message> i = u.held.iterator(); i.hasNext();) {
                Message h = i.next();
                if (k.equals(key(h))) {
                    i.remove();
                    heldCount--;
                    removeFromOrder(h);
                    stats.loginRaceHandedOver.incrementAndGet();
                }
            }
        }
    }

    private void removeFromOrder(Message m) {
        for (Iterator<Message> i = heldOrder.iterator(); i.hasNext();) {
            if (i.next() == m) {
                i.remove();
                return;
            }
        }
    }

    /**
     * Timer run: forgets logins older than the maximum age, and routes again the messages kept for
     * users with no login under way. Routes outside the lock.
     */
    public void tick(long now) {
        List<Message> out = new ArrayList<Message>();
        synchronized (this) {
            for (Iterator<Map.Entry<String, Long>> i = logins.entrySet().iterator(); i.hasNext();) {
                Map.Entry<String, Long> e = i.next();
                if (now - e.getValue() < maxAgeMillis) {
                    break;
                }
                i.remove();
                end(e.getKey(), now);
            }
            for (Iterator<UserState> i = users.values().iterator(); i.hasNext();) {
                UserState u = i.next();
                if (u.inProgress > 0) {
                    continue;
                }
                if (!u.held.isEmpty()) {
                    out.addAll(u.held);
                    heldCount -= u.held.size();
                    u.held.clear();
                }
                if (now - u.lastDoneAt > graceMillis) {
                    handedOverCount -= u.handedOver.size();
                    i.remove();
                }
            }
            trackedUsers = users.size();
            if (!out.isEmpty()) {
                final Set<Message> gone = Collections.newSetFromMap(new IdentityHashMap<Message, Boolean>());
                gone.addAll(out);
                for (Iterator<Message> i = heldOrder.iterator(); i.hasNext();) {
                    if (gone.contains(i.next())) {
                        i.remove();
                    }
                }
            }
            for (Message m : out) {
                String k = key(m);
                if (k != null) {
                    rescued.firstSeen(k, now);
                }
            }
        }
        for (Message m : out) {
            stats.loginRaceRerouted.incrementAndGet();
            sink.route(m);
        }
    }

    /** Removes exactly this object (Tinder's packets compare by identity anyway). */
    private static boolean removeSame(List<Message> list, Message m) {
        for (Iterator<Message> i = list.iterator(); i.hasNext();) {
            if (i.next() == m) {
                i.remove();
                return true;
            }
        }
        return false;
    }

    /** Messages kept now. */
    public synchronized int held() {
        return heldCount;
    }

    /** Users tracked now (logins under way or just ended). */
    public synchronized int tracked() {
        return users.size();
    }
}
