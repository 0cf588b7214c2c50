package org.imgw.openfire;

import org.jivesoftware.openfire.roster.Roster;
import org.jivesoftware.openfire.roster.RosterManager;
import org.jivesoftware.openfire.user.UserNotFoundException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.xmpp.packet.JID;
import org.xmpp.packet.Presence;

/**
 * Broadcasts USER@DOMAIN/web presence through the user's roster: Roster.broadcastPresence sends it
 * to every contact with a 'from' or 'both' subscription (and shared-group contacts), honouring
 * the user's privacy lists, exactly as for a client's own presence.
 */
final class OpenfirePresencePublisher implements PresencePublisher {
    private static final Logger Log = LoggerFactory.getLogger(OpenfirePresencePublisher.class);

    private final RosterManager rosters;
    private final Settings settings;

    OpenfirePresencePublisher(RosterManager rosters, Settings settings) {
        this.rosters = rosters;
        this.settings = settings;
    }

    @Override
    public void publish(String username, boolean available) {
        Roster roster;
        try {
            roster = rosters.getRoster(username);
        } catch (UserNotFoundException e) {
            Log.debug("imgw: no roster for {}", username);
            return;
        }
        Presence presence = new Presence();
        if (!available) {
            presence.setType(Presence.Type.unavailable);
        }
        presence.setFrom(new JID(username, settings.serverDomain(), Companion.WEB_RESOURCE));
        roster.broadcastPresence(presence);
    }
}
