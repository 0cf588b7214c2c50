package org.jivesoftware.openfire.session;

import org.xmpp.packet.Presence;

/** Compile-time stand-in for Openfire's ClientSession interface. Never packaged. */
public interface ClientSession extends Session {
    boolean isInitialized();
    Presence getPresence();
}
