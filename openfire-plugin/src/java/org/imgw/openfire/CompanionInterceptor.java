package org.imgw.openfire;

import org.jivesoftware.openfire.interceptor.PacketInterceptor;
import org.jivesoftware.openfire.interceptor.PacketRejectedException;
import org.jivesoftware.openfire.session.ClientSession;
import org.jivesoftware.openfire.session.Session;
import org.xmpp.packet.Message;
import org.xmpp.packet.Packet;
import org.xmpp.packet.Presence;

/**
 * The Openfire interceptor; all logic is in {@link MessageFlow}. Openfire's MessageRouter runs
 * the interceptors (incoming, not processed) before it looks at the recipient, also for stanzas
 * from components, so a send-as message to the bare server domain is seen here; rejecting it
 * stops the router from forwarding it to the admins (4.1 through 5.x). The same rejection keeps a
 * message for a web-online user out of offline storage once it is copied. The rejection carries
 * no message, so Openfire sends nothing back (MessageRouter answers a rejected message only when
 * the exception has a rejection text). PresenceRouter runs the interceptors around its own
 * handling too; the processed pass of a probe is where the web resource answers.
 */
final class CompanionInterceptor implements PacketInterceptor {
    private final MessageFlow flow;
    private final LoginRace loginRace;
    private final MessageFlow.Clock clock;

    CompanionInterceptor(MessageFlow flow) {
        this(flow, null, null);
    }

    /**
     * @param loginRace told about logins (section 10); may be null
     * @param clock time for loginRace
     */
    CompanionInterceptor(MessageFlow flow, LoginRace loginRace, MessageFlow.Clock clock) {
        this.flow = flow;
        this.loginRace = loginRace;
        this.clock = clock;
    }

    @Override
    public void interceptPacket(Packet packet, Session session, boolean incoming, boolean processed)
            throws PacketRejectedException {
        if (packet instanceof Message) {
            if (flow.onMessage((Message) packet, incoming, processed)) {
                throw new PacketRejectedException();
            }
            if (loginRace != null && !incoming && processed && session instanceof ClientSession) {
                // Openfire handed the message to a client session (LocalSession.process, after
                // deliver; a closed connection's packet goes back to offline storage there).
                loginRace.handedOver((Message) packet);
            }
        } else if (packet instanceof Presence) {
            flow.onPresence((Presence) packet, incoming, processed);
            if (loginRace != null && incoming && session instanceof ClientSession) {
                login((Presence) packet, (ClientSession) session, processed);
            }
        }
    }

    /**
     * Section 10 (Openfire login race): a client's available presence without 'to' on a session Openfire has not
     * initialized yet is the login that hands the offline messages over (PresenceUpdateHandler,
     * on this same thread, between the two passes); its processed pass comes after the retrieval.
     */
    static void login(Presence p, ClientSession session, boolean processed, LoginRace race, long now) {
        if (p.getType() != null) {
            return;
        }
        if (!processed) {
            if (p.getTo() == null && !session.isInitialized()) {
                race.loginStarted(session.getAddress(), now);
            }
        } else {
            // Not checked again: only a login under way for this session ends.
            race.loginDone(session.getAddress(), now);
        }
    }

    private void login(Presence p, ClientSession session, boolean processed) {
        login(p, session, processed, loginRace, clock.now());
    }
}
