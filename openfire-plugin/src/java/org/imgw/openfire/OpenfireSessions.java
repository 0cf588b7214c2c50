package org.imgw.openfire;

import org.jivesoftware.openfire.SessionManager;
import org.jivesoftware.openfire.session.ClientSession;
import org.xmpp.packet.Presence;

/**
 * {@link RealSessions} over Openfire's SessionManager, with the test Openfire's routing applies to
 * a message for a bare JID (RoutingTableImpl.routeToBareJID, 4.1 through 5.x): an initialized,
 * available session of priority 0 or more; without one Openfire stores the message offline.
 */
final class OpenfireSessions implements RealSessions {
    private final SessionManager sessions;

    OpenfireSessions(SessionManager sessions) {
        this.sessions = sessions;
    }

    @Override
    public boolean hasAvailable(String username) {
        for (ClientSession s : sessions.getSessions(username)) {
            if (s == null || !s.isInitialized()) {
                continue;
            }
            Presence p = s.getPresence();
            if (p != null && p.isAvailable() && p.getPriority() >= 0) {
                return true;
            }
        }
        return false;
    }
}
