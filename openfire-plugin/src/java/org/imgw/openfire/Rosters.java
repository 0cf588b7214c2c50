package org.imgw.openfire;

import java.util.List;
import org.xmpp.packet.JID;

/**
 * The roster questions that web presence needs (section 8): Openfire's RosterManager in
 * production, maps in tests.
 */
public interface Rosters {
    /** True when the user's roster gives the contact (a bare JID) a 'from' or 'both' subscription. */
    boolean isSubscriber(String username, JID contact);

    /** The bare JIDs whose presence the user receives ('to' or 'both'); empty for an unknown user. */
    List<JID> subscriptions(String username);
}
