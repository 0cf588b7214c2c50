package org.jivesoftware.openfire;

/** Compile-time stand-in for Openfire's OfflineMessageStrategy (static listeners, 4.1 through 5.x). Never packaged. */
public class OfflineMessageStrategy {
    public static void addListener(OfflineMessageListener listener) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public static void removeListener(OfflineMessageListener listener) { throw new UnsupportedOperationException("compile-time stand-in"); }
}
