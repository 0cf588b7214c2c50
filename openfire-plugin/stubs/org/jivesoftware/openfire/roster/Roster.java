package org.jivesoftware.openfire.roster;

import java.util.Collection;
import org.jivesoftware.openfire.user.UserNotFoundException;
import org.xmpp.packet.JID;
import org.xmpp.packet.Presence;

/** Compile-time stand-in for Openfire's Roster. Never packaged. */
public class Roster {
    public Collection<RosterItem> getRosterItems() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public RosterItem getRosterItem(JID user) throws UserNotFoundException { throw new UnsupportedOperationException("compile-time stand-in"); }
    public void broadcastPresence(Presence packet) { throw new UnsupportedOperationException("compile-time stand-in"); }
}
