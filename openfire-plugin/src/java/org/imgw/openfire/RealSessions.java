package org.imgw.openfire;

/** The XMPP server's own client sessions: Openfire's SessionManager in production. */
public interface RealSessions {
    /**
     * True when the user has a session that Openfire would deliver a message for the bare JID to:
     * initialized, available, priority 0 or more. Without one Openfire stores the message offline.
     */
    boolean hasAvailable(String username);
}
