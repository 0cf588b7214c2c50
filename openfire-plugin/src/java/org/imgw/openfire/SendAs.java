package org.imgw.openfire;

import org.dom4j.Element;
import org.xmpp.packet.JID;
import org.xmpp.packet.Message;

/**
 * Section 3, "send as user": the gateway wraps a user's message in
 * {@code <privilege xmlns='urn:xmpp:privilege:2'><forwarded xmlns='urn:xmpp:forward:0'><message/>}
 * and sends it to DOMAIN; the companion routes the inner message as that user.
 */
public final class SendAs {
    private SendAs() {
    }

    /** True when the message is addressed to the bare server domain and carries a privilege element. */
    public static boolean isSendAs(Message outer, String serverDomain) {
        return Stanzas.isExactly(outer.getTo(), serverDomain)
                && Stanzas.child(outer.getElement(), "privilege", Companion.NS_PRIVILEGE) != null;
    }

    /**
     * Checks a send-as request and builds the message to route.
     *
     * @param outer the message from the gateway; not modified
     * @param serverDomain DOMAIN
     * @param gatewayDomain GW, the only sender allowed
     * @return a new message in jabber:client, 'from' the user's full JID (resource 'web' added
     *         when missing), ready to route; owned by the caller
     * @throws CompanionError forbidden (auth) when the sender is not exactly GW or the inner
     *         'from' is not a user of DOMAIN; bad-request (modify) when the inner message is
     *         missing, lacks 'to' or 'from', has a malformed address or a type other than chat/normal
     */
    public static Message evaluate(Message outer, String serverDomain, String gatewayDomain) throws CompanionError {
        if (!Stanzas.isExactly(outer.getFrom(), gatewayDomain)) {
            throw CompanionError.forbidden("only the gateway may send as a user");
        }
        Element privilege = Stanzas.child(outer.getElement(), "privilege", Companion.NS_PRIVILEGE);
        Element forwarded = Stanzas.child(privilege, "forwarded", Companion.NS_FORWARD);
        Element inner = forwarded == null ? null : Stanzas.stanzaChild(forwarded, "message");
        if (inner == null) {
            throw CompanionError.badRequest("no forwarded message");
        }
        String fromAttr = inner.attributeValue("from");
        String toAttr = inner.attributeValue("to");
        if (fromAttr == null || fromAttr.isEmpty() || toAttr == null || toAttr.isEmpty()) {
            throw CompanionError.badRequest("the forwarded message needs 'from' and 'to'");
        }
        JID from;
        JID to;
        try {
            from = new JID(fromAttr);
            to = new JID(toAttr);
        } catch (IllegalArgumentException e) {
            throw CompanionError.badRequest("malformed address in the forwarded message");
        }
        if (from.getNode() == null || !from.getDomain().equalsIgnoreCase(serverDomain)) {
            throw CompanionError.forbidden("may only send as a user of " + serverDomain);
        }
        String type = inner.attributeValue("type");
        if (type != null && !"chat".equals(type) && !"normal".equals(type)) {
            throw CompanionError.badRequest("only chat and normal messages may be sent as a user");
        }
        Element routed = Stanzas.toClientNamespace(inner);
        if (from.getResource() == null) {
            from = new JID(from.getNode(), from.getDomain(), Companion.WEB_RESOURCE);
        }
        routed.addAttribute("from", from.toString());
        routed.addAttribute("to", to.toString());
        return new Message(routed, true);
    }

    /**
     * The error message answering a refused send-as request: from DOMAIN to the sender, same id.
     *
     * @return a new message owned by the caller
     */
    public static Message errorReply(Message outer, String serverDomain, CompanionError error) {
        Message reply = new Message();
        reply.setID(outer.getID());
        reply.setFrom(serverDomain);
        reply.setTo(outer.getFrom());
        reply.setError(error.toPacketError());
        reply.getElement().addAttribute("type", "error");
        return reply;
    }
}
