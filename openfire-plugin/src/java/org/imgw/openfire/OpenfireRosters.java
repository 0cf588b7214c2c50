package org.imgw.openfire;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.jivesoftware.openfire.roster.Roster;
import org.jivesoftware.openfire.roster.RosterItem;
import org.jivesoftware.openfire.roster.RosterManager;
import org.jivesoftware.openfire.user.UserNotFoundException;
import org.xmpp.packet.JID;

/** {@link Rosters} over Openfire's RosterManager (rosters are cached by Openfire). */
final class OpenfireRosters implements Rosters {
    private final RosterManager rosters;

    OpenfireRosters(RosterManager rosters) {
        this.rosters = rosters;
    }

    @Override
    public boolean isSubscriber(String username, JID contact) {
        try {
            RosterItem item = rosters.getRoster(username).getRosterItem(contact);
            return item != null
                    && (item.getSubStatus() == RosterItem.SUB_FROM || item.getSubStatus() == RosterItem.SUB_BOTH);
        } catch (UserNotFoundException e) {
            // No such user, or no such item.
            return false;
        }
    }

    @Override
    public List<JID> subscriptions(String username) {
        Roster roster;
        try {
            roster = rosters.getRoster(username);
        } catch (UserNotFoundException e) {
            return Collections.emptyList();
        }
        List<JID> out = new ArrayList<JID>();
        for (RosterItem item : roster.getRosterItems()) {
            if (item.getSubStatus() == RosterItem.SUB_TO || item.getSubStatus() == RosterItem.SUB_BOTH) {
                out.add(item.getJid());
            }
        }
        return out;
    }
}
