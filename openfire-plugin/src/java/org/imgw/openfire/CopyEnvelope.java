package org.imgw.openfire;

import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import org.dom4j.Element;
import org.xmpp.packet.Message;

/**
 * Builds and reads the copy envelope of section 2:
 * {@code <message from=DOMAIN to=GW id=copy-…><copy xmlns=NS><forwarded xmlns='urn:xmpp:forward:0'>
 * <delay xmlns='urn:xmpp:delay' stamp=…/><message xmlns='jabber:client' …/></forwarded></copy></message>}.
 */
public final class CopyEnvelope {
    private static final DateTimeFormatter STAMP =
            DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);

    private CopyEnvelope() {
    }

    /** XEP-0082 date-time in UTC with milliseconds, as used in the delay stamp. */
    public static String formatStamp(long epochMillis) {
        return STAMP.format(Instant.ofEpochMilli(epochMillis));
    }

    /**
     * Wraps a copy of a message for the gateway.
     *
     * @param original the routed message; not modified (its element is deep-copied, keeping
     *                 from, to, id, type, body, stanza-id, origin-id and every other child)
     * @param serverDomain the envelope's 'from'
     * @param gatewayDomain the envelope's 'to'
     * @param copyId the envelope's 'id'
     * @param stampMillis when the server received the message
     * @return a new message owned by the caller
     */
    public static Message build(Message original, String serverDomain, String gatewayDomain, String copyId,
            long stampMillis) {
        Message envelope = new Message();
        envelope.setFrom(serverDomain);
        envelope.setTo(gatewayDomain);
        envelope.setID(copyId);
        Element copy = envelope.getElement().addElement("copy", Companion.NS);
        Element forwarded = copy.addElement("forwarded", Companion.NS_FORWARD);
        Element delay = forwarded.addElement("delay", Companion.NS_DELAY);
        delay.addAttribute("stamp", formatStamp(stampMillis));
        forwarded.add(Stanzas.toClientNamespace(original.getElement()));
        return envelope;
    }

    /**
     * Reads the forwarded message out of a copy envelope.
     *
     * @return the inner message (a detached copy), or null when the stanza is not a copy
     */
    public static Message unwrap(Message envelope) {
        Element copy = Stanzas.child(envelope.getElement(), "copy", Companion.NS);
        Element forwarded = Stanzas.child(copy, "forwarded", Companion.NS_FORWARD);
        Element inner = Stanzas.child(forwarded, "message", Companion.NS_CLIENT);
        return inner == null ? null : new Message(inner.createCopy(), true);
    }

    /** The delay stamp of a copy envelope, or null. */
    public static String stamp(Message envelope) {
        Element copy = Stanzas.child(envelope.getElement(), "copy", Companion.NS);
        Element delay = Stanzas.child(Stanzas.child(copy, "forwarded", Companion.NS_FORWARD), "delay",
                Companion.NS_DELAY);
        return delay == null ? null : delay.attributeValue("stamp");
    }
}
