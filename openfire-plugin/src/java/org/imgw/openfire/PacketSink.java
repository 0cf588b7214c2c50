package org.imgw.openfire;

import org.xmpp.packet.Packet;

/** Where the companion sends the stanzas it creates: Openfire's packet router, or a test list. */
public interface PacketSink {
    /** Routes a packet; takes ownership of it. */
    void route(Packet packet);
}
