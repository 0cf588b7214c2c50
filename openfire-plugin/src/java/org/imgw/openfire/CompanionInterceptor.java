package org.imgw.openfire;

import org.jivesoftware.openfire.interceptor.PacketInterceptor;
import org.jivesoftware.openfire.interceptor.PacketRejectedException;
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

    CompanionInterceptor(MessageFlow flow) {
        this.flow = flow;
    }

    @Override
    public void interceptPacket(Packet packet, Session session, boolean incoming, boolean processed)
            throws PacketRejectedException {
        if (packet instanceof Message) {
            if (flow.onMessage((Message) packet, incoming, processed)) {
                throw new PacketRejectedException();
            }
        } else if (packet instanceof Presence) {
            flow.onPresence((Presence) packet, incoming, processed);
        }
    }
}
