package org.jivesoftware.openfire;

import org.xmpp.packet.Message;

/**
 * Compile-time stand-in for Openfire's OfflineMessageListener as declared in 4.1 through 4.6
 * (4.7 and later take an OfflineMessage in messageStored). Never packaged.
 */
public interface OfflineMessageListener {
    void messageBounced(Message message);

    void messageStored(Message message);
}
