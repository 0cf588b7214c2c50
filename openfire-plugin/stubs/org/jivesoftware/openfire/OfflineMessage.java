package org.jivesoftware.openfire;

import java.util.Date;
import org.dom4j.Element;
import org.xmpp.packet.Message;

/** Compile-time stand-in for Openfire's OfflineMessage (4.1 through 5.x). Never packaged. */
public class OfflineMessage extends Message {
    public OfflineMessage(Date creationDate, Element element) {
        super(element);
    }
}
