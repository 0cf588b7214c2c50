package org.jivesoftware.openfire.user;

import org.jivesoftware.openfire.session.ClientSession;
import org.xmpp.packet.JID;
import org.xmpp.packet.Presence;

/** Stand-in for Openfire's PresenceEventListener (the same five methods in 4.1 and 5.x). Never packaged. */
public interface PresenceEventListener {
    void availableSession(ClientSession session, Presence presence);
    void unavailableSession(ClientSession session, Presence presence);
    void presenceChanged(ClientSession session, Presence presence);
    void subscribedToPresence(JID subscriberJID, JID authorizerJID);
    void unsubscribedToPresence(JID unsubscriberJID, JID recipientJID);
}
