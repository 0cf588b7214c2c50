package org.imgw.openfire;

import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Remembers keys for a while so that an action happens once per key: the first
 * {@link #firstSeen} call for a key returns true, later calls within the window return false.
 * Bounded in both time and size; the oldest entries go first. Thread-safe.
 */
public final class RecentKeys {
    private final LinkedHashMap<String, Long> seen = new LinkedHashMap<String, Long>();
    private final long windowMillis;
    private final int maxEntries;

    /**
     * @param windowMillis how long a key is remembered, at least 1
     * @param maxEntries most keys remembered at once, at least 1
     */
    public RecentKeys(long windowMillis, int maxEntries) {
        this.windowMillis = Math.max(1, windowMillis);
        this.maxEntries = Math.max(1, maxEntries);
    }

    /**
     * Records a key.
     *
     * @param key the key
     * @param nowMillis the current time (monotonic enough: entries are expired in insertion order)
     * @return true when the key was not seen within the window
     */
    public synchronized boolean firstSeen(String key, long nowMillis) {
        expire(nowMillis);
        Long at = seen.get(key);
        if (at != null && nowMillis - at < windowMillis) {
            return false;
        }
        seen.remove(key);
        seen.put(key, nowMillis);
        while (seen.size() > maxEntries) {
            Iterator<?> oldest = seen.keySet().iterator();
            oldest.next();
            oldest.remove();
        }
        return true;
    }

    /**
     * True when the key was recorded within the window; records nothing.
     *
     * @param key the key
     * @param nowMillis the current time
     */
    public synchronized boolean contains(String key, long nowMillis) {
        expire(nowMillis);
        Long at = seen.get(key);
        return at != null && nowMillis - at < windowMillis;
    }

    /** Number of keys remembered now. */
    public synchronized int size() {
        return seen.size();
    }

    private void expire(long nowMillis) {
        for (Iterator<Map.Entry<String, Long>> i = seen.entrySet().iterator(); i.hasNext();) {
            if (nowMillis - i.next().getValue() < windowMillis) {
                break;
            }
            i.remove();
        }
    }
}
