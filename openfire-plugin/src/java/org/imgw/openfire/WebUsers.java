package org.imgw.openfire;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Gateway instances and their web users (sections 7 and 8, and section 4 for version-0
 * gateways): which instances are alive, which users each lists, and so which users are
 * <em>web-online</em>. Transitions of a user to or from web-online are handed to a
 * {@link PresencePublisher}, in the order they happened, outside the state lock.
 *
 * <p>Thread-safe: IQ handler threads, the interceptor and the plugin's timer use it at once.
 * {@link #isWebOnline} is lock-free because the interceptor asks it for every message.
 *
 * <p>A {@code reset} does not take users away at once: the users it drops stay web-online
 * until the instance's next {@code <gateway>} or {@link #RESET_GRACE_MILLIS}, whichever comes
 * first, so a list sent in several requests (the first with {@code reset='true'}) does not make
 * the presence of every user past the first request flap.
 */
public final class WebUsers {
    private static final Logger Log = LoggerFactory.getLogger(WebUsers.class);

    /** Most users one instance may list; past it {@code on} is ignored (and logged). */
    public static final int MAX_USERS_PER_INSTANCE = 1000000;
    /** How long users dropped by a reset stay web-online at most, waiting for the rest of the list. */
    public static final long RESET_GRACE_MILLIS = 10000;

    /** The outcome of a {@code <gateway>} request. */
    public static final class Beat {
        /** True when the request registered a new instance (a boot not known for its node). */
        public final boolean registered;
        /** True when the companion's set for the instance has the announced count and sum. */
        public final boolean sync;

        Beat(boolean registered, boolean sync) {
            this.registered = registered;
            this.sync = sync;
        }
    }

    /** One {@code <on/>} or {@code <off/>} child of a {@code <web>} request. */
    public static final class Change {
        final String user;
        final boolean on;

        public Change(String user, boolean on) {
            this.user = user;
            this.on = on;
        }
    }

    /** A read-only picture of one instance, for the admin page. */
    public static final class InstanceView {
        public final int node;
        public final String boot;
        public final long leaseLeftMillis;
        public final int users;
        public final int pendingOff;
        public final String mark;

        InstanceView(Instance in, long now) {
            this.node = in.node;
            this.boot = in.boot;
            this.leaseLeftMillis = Math.max(0, in.expiresAt - now);
            this.users = in.users.size();
            this.pendingOff = in.pendingOff.size();
            this.mark = in.mark;
        }
    }

    private static final class Instance {
        final int node;
        final String boot;
        long expiresAt;
        String mark;
        /** Every listed user (the set that count and sum describe); true when it counts as a holder. */
        final Map<String, Boolean> users = new HashMap<String, Boolean>();
        long sum;
        /** Users dropped by a reset that still count as holders until the grace ends. */
        final Set<String> pendingOff = new HashSet<String>();
        long resetAt;

        Instance(int node, String boot) {
            this.node = node;
            this.boot = boot;
        }
    }

    private static final class Transition {
        final String user;
        final boolean on;

        Transition(String user, boolean on) {
            this.user = user;
            this.on = on;
        }
    }

    private final Object lock = new Object();
    private final Map<Integer, Instance> instances = new TreeMap<Integer, Instance>();
    private final Set<String> v0 = new HashSet<String>();
    /** User → number of holders (instances listing it, plus one for a version-0 announcement). */
    private final ConcurrentHashMap<String, Integer> holders = new ConcurrentHashMap<String, Integer>();
    private final ArrayDeque<Transition> transitions = new ArrayDeque<Transition>();
    private final Object publishLock = new Object();
    private final PresencePublisher presence;
    private final CompanionStats stats;

    public WebUsers(PresencePublisher presence, CompanionStats stats) {
        this.presence = presence;
        this.stats = stats;
    }

    /**
     * A {@code <gateway>} request (section 7): registers the instance or renews its lease; lease
     * 0 ends it.
     *
     * @param node 0-1023, already checked
     * @param boot the instance's boot value, already checked
     * @param leaseSeconds 0 (end now) or 5-300, already checked
     * @param users the count the gateway announces
     * @param sum the checksum the gateway announces
     * @param mark the mark to remember for the admin page, or null
     * @param now the current time in milliseconds
     */
    public Beat gateway(int node, String boot, int leaseSeconds, long users, long sum, String mark, long now) {
        Beat beat;
        synchronized (lock) {
            Instance in = instances.get(node);
            if (in != null && !in.boot.equals(boot)) {
                // The earlier process of this node is gone: its users go with it.
                endLocked(in);
                in = null;
            }
            if (leaseSeconds == 0) {
                if (in != null) {
                    endLocked(in);
                }
                beat = new Beat(false, true);
            } else {
                boolean registered = false;
                if (in == null) {
                    in = new Instance(node, boot);
                    instances.put(node, in);
                    registered = true;
                    stats.instancesRegistered.incrementAndGet();
                } else {
                    finishResetLocked(in);
                }
                in.expiresAt = now + leaseSeconds * 1000L;
                in.mark = mark;
                beat = new Beat(registered, in.users.size() == users && in.sum == sum);
            }
        }
        publishTransitions();
        return beat;
    }

    /**
     * A {@code <web>} request (section 8), applied in order.
     *
     * @param existing the users of the {@code on} children that have an account; the others are
     *                 listed (they count for {@code users} and {@code sum}) but never web-online
     * @throws CompanionError item-not-found when node and boot name no live instance
     */
    public void web(int node, String boot, boolean reset, List<Change> changes, Set<String> existing, long now)
            throws CompanionError {
        boolean unknown;
        synchronized (lock) {
            Instance in = instances.get(node);
            if (in != null && in.expiresAt <= now) {
                endLocked(in);
                in = null;
            }
            unknown = in == null || !in.boot.equals(boot);
            if (!unknown) {
                apply(in, reset, changes, existing, now);
            }
        }
        publishTransitions();
        if (unknown) {
            throw CompanionError.itemNotFound("no live gateway instance " + node + "/" + boot);
        }
    }

    private void apply(Instance in, boolean reset, List<Change> changes, Set<String> existing, long now) {
        if (reset) {
            for (Map.Entry<String, Boolean> e : in.users.entrySet()) {
                if (e.getValue()) {
                    in.pendingOff.add(e.getKey());
                }
            }
            in.users.clear();
            in.sum = 0;
            in.resetAt = now;
        }
        for (Change c : changes) {
            if (c.on) {
                on(in, c.user, existing.contains(c.user));
            } else {
                off(in, c.user);
            }
        }
    }

    private void on(Instance in, String user, boolean exists) {
        Boolean held = in.users.get(user);
        if (held != null) {
            if (!held && exists) {
                // Created since it was listed.
                in.users.put(user, Boolean.TRUE);
                holderUp(user);
            }
            return;
        }
        if (in.users.size() >= MAX_USERS_PER_INSTANCE) {
            stats.webUsersRefused.incrementAndGet();
            Log.warn("imgw: gateway instance {} lists more than {} users; ignoring {}", in.node,
                    MAX_USERS_PER_INSTANCE, user);
            return;
        }
        in.sum ^= UserSum.hash(user);
        if (in.pendingOff.remove(user)) {
            // Listed again after a reset: it never stopped counting as a holder.
            in.users.put(user, Boolean.TRUE);
        } else if (exists) {
            in.users.put(user, Boolean.TRUE);
            holderUp(user);
        } else {
            in.users.put(user, Boolean.FALSE);
            stats.webUnknownUsers.incrementAndGet();
        }
    }

    private void off(Instance in, String user) {
        Boolean held = in.users.remove(user);
        if (held != null) {
            in.sum ^= UserSum.hash(user);
            if (held) {
                holderDown(user);
            }
        } else if (in.pendingOff.remove(user)) {
            holderDown(user);
        }
    }

    /**
     * Section 4 (a version-0 gateway, or any gateway without version 1): the user's first browser
     * session opened ({@code on}) or the last one closed. Held until the matching off.
     */
    public void v0(String user, boolean on) {
        synchronized (lock) {
            if (on) {
                if (v0.add(user)) {
                    holderUp(user);
                }
            } else if (v0.remove(user)) {
                holderDown(user);
            }
        }
        publishTransitions();
    }

    /** Ends instances whose lease ran out and finishes resets past their grace; called by the timer. */
    public void expire(long now) {
        synchronized (lock) {
            List<Instance> ended = new ArrayList<Instance>();
            for (Instance in : instances.values()) {
                if (in.expiresAt <= now) {
                    ended.add(in);
                } else if (in.resetAt != 0 && now - in.resetAt >= RESET_GRACE_MILLIS) {
                    finishResetLocked(in);
                }
            }
            for (Instance in : ended) {
                Log.info("imgw: gateway instance {}/{} missed its lease; its web users go offline", in.node, in.boot);
                stats.leasesExpired.incrementAndGet();
                endLocked(in);
            }
        }
        publishTransitions();
    }

    /** True while at least one live instance (or a version-0 announcement) lists the user. Lock-free. */
    public boolean isWebOnline(String user) {
        return user != null && holders.containsKey(user);
    }

    /** Number of web-online users. */
    public int webOnlineCount() {
        return holders.size();
    }

    /** True while any version-1 instance is registered (lease not yet found expired). */
    public boolean anyInstance() {
        synchronized (lock) {
            return !instances.isEmpty();
        }
    }

    /** The instances, by node. */
    public List<InstanceView> instances(long now) {
        synchronized (lock) {
            List<InstanceView> out = new ArrayList<InstanceView>();
            for (Instance in : instances.values()) {
                out.add(new InstanceView(in, now));
            }
            return out;
        }
    }

    /** The web-online users (a copy), for tests and diagnostics. */
    public Collection<String> webOnlineUsers() {
        return new ArrayList<String>(holders.keySet());
    }

    private void endLocked(Instance in) {
        instances.remove(in.node);
        for (Map.Entry<String, Boolean> e : in.users.entrySet()) {
            if (e.getValue()) {
                holderDown(e.getKey());
            }
        }
        for (String u : in.pendingOff) {
            holderDown(u);
        }
        in.users.clear();
        in.pendingOff.clear();
        stats.instancesEnded.incrementAndGet();
    }

    private void finishResetLocked(Instance in) {
        for (String u : in.pendingOff) {
            holderDown(u);
        }
        in.pendingOff.clear();
        in.resetAt = 0;
    }

    private void holderUp(String user) {
        Integer n = holders.get(user);
        if (n == null) {
            holders.put(user, 1);
            transitions.add(new Transition(user, true));
        } else {
            holders.put(user, n + 1);
        }
    }

    private void holderDown(String user) {
        Integer n = holders.get(user);
        if (n == null) {
            return;
        }
        if (n <= 1) {
            holders.remove(user);
            transitions.add(new Transition(user, false));
        } else {
            holders.put(user, n - 1);
        }
    }

    /**
     * Publishes queued transitions in order. Called after the state lock is released, so that
     * roster work (which may hit the database) never blocks the interceptor; the publish lock
     * keeps two threads from reordering one user's on and off.
     */
    private void publishTransitions() {
        synchronized (publishLock) {
            for (;;) {
                Transition t;
                synchronized (lock) {
                    t = transitions.poll();
                }
                if (t == null) {
                    return;
                }
                try {
                    presence.publish(t.user, t.on);
                    stats.webPresenceBroadcasts.incrementAndGet();
                } catch (RuntimeException e) {
                    Log.warn("imgw: publishing web presence of " + t.user + " failed", e);
                }
            }
        }
    }
}
