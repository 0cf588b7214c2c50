package org.imgw.openfire;

import org.jivesoftware.openfire.interceptor.PacketInterceptor;
import org.jivesoftware.openfire.interceptor.PacketRejectedException;
import org.jivesoftware.openfire.session.Session;
import org.xmpp.packet.Message;
import org.xmpp.packet.Packet;

/**
 * The Openfire interceptor; all logic is in {@link MessageFlow}. Openfire's MessageRouter runs
 * the interceptors (incoming, not processed) before it looks at the recipient, also for stanzas
 * from components, so a send-as message to the bare server domain is seen here; rejecting it
 * stops the router from forwarding it to the admins (4.1 through 5.x). The rejection carries no
 * message, so Openfire sends nothing back; the companion's own answer was already routed.
 */
final class CompanionInterceptor implements PacketInterceptor {
    private final MessageFlow flow;

    CompanionInterceptor(MessageFlow flow) {
        this.flow = flow;
    }

    @Override
    public void interceptPacket(Packet packet, Session session, boolean incoming, boolean processed)
            throws PacketRejectedException {
        if (packet instanceof Message && flow.onMessage((Message) packet, incoming, processed)) {
            throw new PacketRejectedException();
        }
    }
}
