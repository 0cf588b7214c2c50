package org.jivesoftware.openfire.user;

/** Compile-time stand-in for Openfire's PresenceEventDispatcher. Never packaged. */
public class PresenceEventDispatcher {
    public static void addListener(PresenceEventListener listener) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public static void removeListener(PresenceEventListener listener) { throw new UnsupportedOperationException("compile-time stand-in"); }
}
