package org.imgw.openfire;

import java.sql.SQLException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.NavigableMap;
import java.util.TreeMap;
import java.util.TreeSet;
import org.dom4j.DocumentException;
import org.dom4j.DocumentHelper;
import org.dom4j.Element;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.xmpp.packet.Message;

/**
 * Acknowledged copies (section 9): numbers each copy, keeps it until a gateway acknowledges it,
 * sends it again when an instance registers or when it stays unacknowledged, and keeps the
 * oldest in the database past the memory backlog.
 *
 * <p>Threads: {@link #track} runs in Openfire's routing threads and {@link #ack} in IQ handler
 * threads; both only touch memory. All database work and all resends happen in {@link #tick},
 * which the plugin's single timer thread calls, so the store is never used by two threads and
 * never on a routing thread. Database calls are made outside the lock.
 */
public final class CopyLedger {
    private static final Logger Log = LoggerFactory.getLogger(CopyLedger.class);

    /** A registering instance gets every copy not sent within this long (section 9). */
    static final long REGISTER_QUIET_MILLIS = 2000;
    /** Resend intervals double up to this many times the ack timeout. */
    static final int MAX_BACKOFF_FACTOR = 8;
    /** Most due copies looked at per tick (bounds the time the lock is held). */
    static final int SCAN_LIMIT = 20000;
    /** Most copies moved to the database per tick. */
    static final int SPILL_BATCH = 2000;
    /** Most pending database deletes remembered while the database fails. */
    static final int MAX_PENDING_DELETES = 100000;
    private static final long STORE_RETRY_MIN = 1000;
    private static final long STORE_RETRY_MAX = 60000;

    private static final class Entry {
        final long seq;
        final long created;
        final String xml;
        long lastSent;
        long interval;
        long due;
        boolean resent;
        boolean stored;

        Entry(long seq, long created, String xml) {
            this.seq = seq;
            this.created = created;
            this.xml = xml;
        }
    }

    private static final Comparator<Entry> BY_DUE = new Comparator<Entry>() {
        @Override
        public int compare(Entry a, Entry b) {
            int c = Long.compare(a.due, b.due);
            return c != 0 ? c : Long.compare(a.seq, b.seq);
        }
    };

    private final Settings settings;
    private final CopyStore store;
    private final PacketSink sink;
    private final CompanionStats stats;

    private final Object lock = new Object();
    private final TreeMap<Long, Entry> memory = new TreeMap<Long, Entry>();
    private final TreeSet<Entry> dueSet = new TreeSet<Entry>(BY_DUE);
    private long chars;
    private int outstanding;
    private int storedInMemory;
    private long nextSeq = 1;
    /** Rows the database holds (an estimate kept from counts, inserts and deletes). */
    private long dbRows;
    /** The highest sequence number ever written to the database; acks above it need no delete. */
    private long dbMaxSeq;
    /** True while rows may exist in the database that are not in memory. */
    private boolean dbUnloaded;
    /** The lowest sequence number that may be in the database and not in memory. */
    private long loadFrom = Long.MAX_VALUE;
    private List<long[]> pendingDeletes = new ArrayList<long[]>();
    private long storeRetryAt;
    /** True until the database's highest number and row count have been read. */
    private boolean storeUnknown;
    private long storeBackoff = STORE_RETRY_MIN;

    /**
     * @param store the database for the backlog; null keeps everything in memory (bounded, see
     *              {@link #tick})
     */
    public CopyLedger(Settings settings, CopyStore store, PacketSink sink, CompanionStats stats) {
        this.settings = settings;
        this.store = store;
        this.sink = sink;
        this.stats = stats;
    }

    /**
     * Chooses the first sequence number: the current time in microseconds, or one past the highest
     * stored or previously handed out number if that is higher, so numbers keep increasing
     * across restarts. Reads the database once.
     *
     * @param nowMillis the current time
     * @param lastSeq the last number handed out before the previous shutdown, or 0
     */
    public void start(long nowMillis, long lastSeq) {
        long stored = 0;
        if (store != null) {
            try {
                stored = readStore();
            } catch (SQLException | RuntimeException e) {
                Log.warn("imgw: reading the stored copies failed; will retry", e);
                synchronized (lock) {
                    storeUnknown = true;
                    dbMaxSeq = Long.MAX_VALUE;
                }
            }
        }
        synchronized (lock) {
            nextSeq = Math.max(Math.max(nowMillis * 1000L, stored + 1), lastSeq + 1);
        }
    }

    /** Reads the highest stored number and the row count; returns the former. */
    private long readStore() throws SQLException {
        long stored = store.maxSeq();
        long rows = store.count();
        synchronized (lock) {
            storeUnknown = false;
            dbRows = rows;
            dbMaxSeq = stored;
            dbUnloaded = rows > 0;
            loadFrom = 0;
            // Should the clock have gone back since, numbers still increase.
            nextSeq = Math.max(nextSeq, stored + 1);
        }
        return stored;
    }

    /** True when copies carry {@code seq} and are kept: plugin.imgw.acks, auto = after a version-1 gateway. */
    public boolean enabled() {
        String mode = settings.acksMode();
        if ("true".equals(mode)) {
            return true;
        }
        if ("false".equals(mode)) {
            return false;
        }
        return settings.acksSeen();
    }

    /**
     * Numbers a copy envelope and keeps it until acknowledged. Call only when {@link #enabled}.
     *
     * @param envelope the copy as built by {@link CopyEnvelope#build}; gets its {@code seq}
     *                 attribute here, and is routed by the caller
     * @param now the current time in milliseconds
     * @return the sequence number
     */
    public long track(Message envelope, long now) {
        Element copy = Stanzas.child(envelope.getElement(), "copy", Companion.NS);
        long seq;
        synchronized (lock) {
            seq = nextSeq++;
        }
        copy.addAttribute("seq", Long.toString(seq));
        // Serialized outside the lock: routing threads only contend for the map insert.
        Entry e = new Entry(seq, now, envelope.toXML());
        e.lastSent = now;
        e.interval = settings.ackTimeoutMillis();
        e.due = now + e.interval;
        synchronized (lock) {
            memory.put(seq, e);
            dueSet.add(e);
            chars += e.xml.length();
            enforceHardCapLocked();
        }
        return seq;
    }

    /**
     * Forgets acknowledged copies (section 9 {@code <acks>}). Unknown numbers are ignored.
     *
     * @param ranges inclusive {first, last} pairs, as {@link AckRanges#parse} returns them
     * @return how many copies in memory were acknowledged
     */
    public int ack(List<long[]> ranges) {
        int n = 0;
        synchronized (lock) {
            for (long[] r : ranges) {
                NavigableMap<Long, Entry> hit = memory.subMap(r[0], true, r[1], true);
                if (!hit.isEmpty()) {
                    for (Entry e : new ArrayList<Entry>(hit.values())) {
                        removeLocked(e);
                        n++;
                    }
                }
                if (dbMaxSeq > 0 && r[0] <= dbMaxSeq && pendingDeletes.size() < MAX_PENDING_DELETES) {
                    pendingDeletes.add(new long[] { r[0], r[1] });
                }
            }
        }
        stats.copiesAcked.addAndGet(n);
        return n;
    }

    /** A gateway instance registered: every copy not sent within the last 2 s is due now. */
    public void instanceRegistered(long now) {
        synchronized (lock) {
            List<Entry> due = new ArrayList<Entry>();
            for (Entry e : memory.values()) {
                if (e.lastSent <= now - REGISTER_QUIET_MILLIS && e.due > now) {
                    due.add(e);
                }
            }
            for (Entry e : due) {
                dueSet.remove(e);
                e.due = now;
                dueSet.add(e);
            }
        }
    }

    /**
     * Maintenance, from the plugin's timer: database deletes, moving the oldest copies to the
     * database past the backlog, reading them back as room appears, and resends. Never throws.
     *
     * @param now the current time in milliseconds
     * @param anyInstance whether a gateway instance is alive (resends only then)
     */
    public void tick(long now, boolean anyInstance) {
        if (store != null && now >= storeRetryAt) {
            try {
                boolean unknown;
                synchronized (lock) {
                    unknown = storeUnknown;
                }
                if (unknown) {
                    readStore();
                }
                flushDeletes();
                spill();
                load(now);
                storeBackoff = STORE_RETRY_MIN;
            } catch (SQLException | RuntimeException e) {
                storeRetryAt = now + storeBackoff;
                Log.warn("imgw: the copy table failed; retrying in " + storeBackoff + " ms", e);
                storeBackoff = Math.min(STORE_RETRY_MAX, storeBackoff * 2);
            }
        }
        synchronized (lock) {
            enforceHardCapLocked();
        }
        if (anyInstance && enabled()) {
            resend(now);
        }
    }

    /** The next sequence number minus one: what to remember at shutdown. */
    public long lastSeq() {
        synchronized (lock) {
            return nextSeq - 1;
        }
    }

    /** Unacknowledged copies in memory. */
    public int inMemory() {
        synchronized (lock) {
            return memory.size();
        }
    }

    /** Unacknowledged copies in the database (an estimate). */
    public long inDatabase() {
        synchronized (lock) {
            return dbRows;
        }
    }

    /** Resent copies not yet acknowledged (bounded by the window). */
    public int outstanding() {
        synchronized (lock) {
            return outstanding;
        }
    }

    /** The sequence numbers in memory, in order (tests). */
    List<Long> memorySeqs() {
        synchronized (lock) {
            return new ArrayList<Long>(memory.keySet());
        }
    }

    private void removeLocked(Entry e) {
        memory.remove(e.seq);
        dueSet.remove(e);
        chars -= e.xml.length();
        if (e.resent) {
            outstanding--;
        }
        if (e.stored) {
            storedInMemory--;
        }
    }

    /**
     * Past twice the backlog (the database failing, or none), the oldest copies are given up so
     * that memory stays bounded. Copies already in the database are only dropped from memory.
     */
    private void enforceHardCapLocked() {
        int maxCount = 2 * settings.ackBacklog();
        long maxChars = 2 * settings.ackBacklogChars();
        int dropped = 0;
        while (!memory.isEmpty() && (memory.size() > maxCount || chars > maxChars)) {
            Entry oldest = memory.firstEntry().getValue();
            removeLocked(oldest);
            if (oldest.stored) {
                loadFrom = Math.min(loadFrom, oldest.seq);
                dbUnloaded = true;
            } else {
                dropped++;
            }
        }
        if (dropped > 0) {
            stats.copiesDropped.addAndGet(dropped);
            Log.error("imgw: {} unacknowledged copies given up: memory is full and the copy table is not"
                    + " taking them", dropped);
        }
    }

    private void flushDeletes() throws SQLException {
        List<long[]> todo;
        long maxStored;
        synchronized (lock) {
            if (pendingDeletes.isEmpty()) {
                return;
            }
            todo = pendingDeletes;
            pendingDeletes = new ArrayList<long[]>();
            maxStored = dbMaxSeq;
        }
        int done = 0;
        try {
            for (long[] r : todo) {
                if (r[0] > maxStored) {
                    // Queued while the table's contents were unknown; nothing that high was stored.
                    done++;
                    continue;
                }
                int gone = store.delete(r[0], r[1]);
                done++;
                synchronized (lock) {
                    dbRows = Math.max(0, dbRows - gone);
                }
            }
        } finally {
            if (done < todo.size()) {
                synchronized (lock) {
                    List<long[]> rest = new ArrayList<long[]>(todo.subList(done, todo.size()));
                    rest.addAll(pendingDeletes);
                    pendingDeletes = rest;
                }
            }
        }
    }

    /** Moves the oldest copies past the backlog to the database. */
    private void spill() throws SQLException {
        List<Entry> toInsert = new ArrayList<Entry>();
        synchronized (lock) {
            int excess = memory.size() - settings.ackBacklog();
            long excessChars = chars - settings.ackBacklogChars();
            List<Entry> victims = new ArrayList<Entry>();
            for (Entry e : memory.values()) {
                if ((excess <= 0 && excessChars <= 0) || victims.size() >= SPILL_BATCH) {
                    break;
                }
                victims.add(e);
                excess--;
                excessChars -= e.xml.length();
            }
            for (Entry e : victims) {
                if (e.stored) {
                    // Already in the database: only memory is given back.
                    removeLocked(e);
                    loadFrom = Math.min(loadFrom, e.seq);
                    dbUnloaded = true;
                } else {
                    toInsert.add(e);
                }
            }
            if (toInsert.isEmpty()) {
                return;
            }
            // Counted before the write, so that an ack arriving meanwhile queues its delete.
            dbRows += toInsert.size();
            dbMaxSeq = Math.max(dbMaxSeq, toInsert.get(toInsert.size() - 1).seq);
        }
        List<CopyStore.Row> rows = new ArrayList<CopyStore.Row>(toInsert.size());
        for (Entry e : toInsert) {
            rows.add(new CopyStore.Row(e.seq, e.created, e.xml));
        }
        try {
            store.insert(rows);
        } catch (SQLException | RuntimeException ex) {
            synchronized (lock) {
                dbRows = Math.max(0, dbRows - toInsert.size());
            }
            throw ex;
        }
        synchronized (lock) {
            for (Entry e : toInsert) {
                if (memory.get(e.seq) == e) {
                    removeLocked(e);
                    stats.copiesSpilled.incrementAndGet();
                }
                loadFrom = Math.min(loadFrom, e.seq);
            }
            dbUnloaded = true;
        }
    }

    /** Reads stored copies back, in order, while memory is below three quarters of the backlog. */
    private void load(long now) throws SQLException {
        long from;
        int room;
        int limit;
        synchronized (lock) {
            if (!dbUnloaded) {
                return;
            }
            int backlog = settings.ackBacklog();
            room = backlog * 3 / 4 - memory.size();
            if (room <= 0 || chars >= settings.ackBacklogChars() * 3 / 4) {
                return;
            }
            from = loadFrom == Long.MAX_VALUE ? 0 : loadFrom;
            // Rows already in memory come back too and are skipped; ask for enough to make progress.
            limit = room + storedInMemory;
        }
        List<CopyStore.Row> rows = store.load(from, limit);
        synchronized (lock) {
            long timeout = settings.ackTimeoutMillis();
            int added = 0;
            long lastExamined = -1;
            boolean full = false;
            for (CopyStore.Row r : rows) {
                if (memory.containsKey(r.seq) || deletePending(r.seq)) {
                    lastExamined = r.seq;
                    continue;
                }
                if (added >= room) {
                    full = true;
                    break;
                }
                Entry e = new Entry(r.seq, r.created, r.stanza);
                e.stored = true;
                e.lastSent = 0;
                e.interval = timeout;
                // It has waited in the database at least since it was last sent: due now.
                e.due = now;
                memory.put(e.seq, e);
                dueSet.add(e);
                chars += e.xml.length();
                storedInMemory++;
                added++;
                lastExamined = r.seq;
            }
            stats.copiesLoaded.addAndGet(added);
            if (!full && rows.size() < limit) {
                // Read to the end: every stored row is in memory (or about to be deleted).
                dbUnloaded = false;
                loadFrom = Long.MAX_VALUE;
            } else if (lastExamined >= 0) {
                loadFrom = lastExamined + 1;
            }
        }
    }

    private boolean deletePending(long seq) {
        for (long[] d : pendingDeletes) {
            if (seq >= d[0] && seq <= d[1]) {
                return true;
            }
        }
        return false;
    }

    private void resend(long now) {
        List<Entry> picked = new ArrayList<Entry>();
        synchronized (lock) {
            int window = settings.ackWindow();
            long cap = MAX_BACKOFF_FACTOR * settings.ackTimeoutMillis();
            int scanned = 0;
            int opening = outstanding;
            for (Entry e : dueSet) {
                if (e.due > now || scanned++ >= SCAN_LIMIT) {
                    break;
                }
                if (!e.resent) {
                    if (opening >= window) {
                        continue;
                    }
                    opening++;
                }
                picked.add(e);
            }
            for (Entry e : picked) {
                dueSet.remove(e);
                if (!e.resent) {
                    e.resent = true;
                    outstanding++;
                }
                e.interval = Math.min(cap, Math.max(e.interval, 1) * 2);
                e.lastSent = now;
                e.due = now + e.interval;
                dueSet.add(e);
            }
        }
        for (Entry e : picked) {
            Message m = parse(e);
            if (m != null) {
                sink.route(m);
                stats.copiesResent.incrementAndGet();
            }
        }
    }

    private Message parse(Entry e) {
        try {
            return new Message(DocumentHelper.parseText(e.xml).getRootElement(), true);
        } catch (DocumentException | RuntimeException ex) {
            // Only a damaged database row can get here: it can never be sent, so it goes.
            Log.error("imgw: stored copy " + e.seq + " is not XML; dropping it", ex);
            synchronized (lock) {
                if (memory.get(e.seq) == e) {
                    removeLocked(e);
                }
                if (e.stored && pendingDeletes.size() < MAX_PENDING_DELETES) {
                    pendingDeletes.add(new long[] { e.seq, e.seq });
                }
            }
            stats.copiesDropped.incrementAndGet();
            return null;
        }
    }

    /** For tests: whether the entry with this number has been resent. */
    boolean isResent(long seq) {
        synchronized (lock) {
            Entry e = memory.get(seq);
            return e != null && e.resent;
        }
    }

    /** For tests: the number of pending database deletes. */
    int pendingDeletes() {
        synchronized (lock) {
            return pendingDeletes.size();
        }
    }
}
