package org.jivesoftware.openfire.session;

import org.xmpp.packet.JID;

/** Compile-time stand-in for Openfire's Session interface. Never packaged. */
public interface Session {
    JID getAddress();
}
