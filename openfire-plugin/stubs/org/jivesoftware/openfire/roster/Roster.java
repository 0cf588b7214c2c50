package org.jivesoftware.openfire.roster;

import org.xmpp.packet.Presence;

/** Compile-time stand-in for Openfire's Roster. Never packaged. */
public class Roster {
    public void broadcastPresence(Presence packet) { throw new UnsupportedOperationException("compile-time stand-in"); }
}
