package org.imgw.openfire;

import org.jivesoftware.openfire.session.ClientSession;
import org.jivesoftware.openfire.user.PresenceEventListener;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.xmpp.packet.JID;
import org.xmpp.packet.Presence;

/**
 * Openfire's presence events, for web presence (section 8): a local session becoming available
 * and a subscription being approved. Openfire 4.1 does not guard its dispatcher against a
 * throwing listener, so nothing escapes from here.
 */
final class CompanionPresenceListener implements PresenceEventListener {
    private static final Logger Log = LoggerFactory.getLogger(CompanionPresenceListener.class);

    private final WebPresence presence;

    CompanionPresenceListener(WebPresence presence) {
        this.presence = presence;
    }

    @Override
    public void availableSession(ClientSession session, Presence p) {
        try {
            presence.onSessionAvailable(session.getAddress());
        } catch (RuntimeException e) {
            Log.warn("imgw: web presence for a new session failed", e);
        }
    }

    @Override
    public void unavailableSession(ClientSession session, Presence p) {
    }

    @Override
    public void presenceChanged(ClientSession session, Presence p) {
    }

    @Override
    public void subscribedToPresence(JID subscriberJID, JID authorizerJID) {
        try {
            presence.onSubscribed(subscriberJID, authorizerJID);
        } catch (RuntimeException e) {
            Log.warn("imgw: web presence for a new subscriber failed", e);
        }
    }

    @Override
    public void unsubscribedToPresence(JID unsubscriberJID, JID recipientJID) {
    }
}
