package org.imgw.openfire;

import org.dom4j.Element;
import org.xmpp.packet.IQ;

/**
 * Answers the companion's IQs to DOMAIN (sections 1 and 4): {@code <user/>} registration and
 * {@code <presence/>} web presence, both in {@link Companion#NS}. Openfire routes IQs to server
 * handlers by namespace only, so one handler serves both elements.
 */
public final class CompanionIq {
    private final Settings settings;
    private final RegistrationService registration;
    private final UserStore users;
    private final PresencePublisher presence;
    private final CompanionStats stats;

    public CompanionIq(Settings settings, RegistrationService registration, UserStore users,
            PresencePublisher presence, CompanionStats stats) {
        this.settings = settings;
        this.registration = registration;
        this.users = users;
        this.presence = presence;
        this.stats = stats;
    }

    /**
     * Handles one IQ.
     *
     * @param iq the request; not modified
     * @return the result or error to send back (a new IQ owned by the caller), or null for an IQ
     *         result/error, which gets no answer
     */
    public IQ handle(IQ iq) {
        String type = iq.getElement().attributeValue("type");
        if (!"get".equals(type) && !"set".equals(type)) {
            return null;
        }
        Element child = iq.getChildElement();
        try {
            if (!Stanzas.isExactly(iq.getFrom(), settings.gatewayDomain())) {
                throw CompanionError.forbidden("only the gateway may use " + Companion.NS);
            }
            if (!"set".equals(type) || child == null) {
                throw CompanionError.badRequest("expected an IQ set");
            }
            if ("user".equals(child.getName())) {
                String outcome = registration.apply(UserRequest.fromElement(child));
                // <user status='created|exists|adopted|updated|deleted'/>: the gateway lets a
                // web user in only on a result, never on an error such as conflict.
                IQ result = IQ.createResultIQ(iq);
                result.setChildElement("user", Companion.NS).addAttribute("status", outcome);
                return result;
            } else if ("presence".equals(child.getName())) {
                webPresence(child);
            } else {
                throw CompanionError.badRequest("unknown element " + child.getName());
            }
            return IQ.createResultIQ(iq);
        } catch (CompanionError e) {
            return error(iq, child, e);
        }
    }

    private void webPresence(Element element) throws CompanionError {
        String username = Usernames.normalize(element.attributeValue("user"));
        String available = element.attributeValue("available");
        boolean on;
        if ("true".equals(available) || "1".equals(available)) {
            on = true;
        } else if ("false".equals(available) || "0".equals(available)) {
            on = false;
        } else {
            throw CompanionError.badRequest("available must be true or false");
        }
        if (!users.exists(username)) {
            throw CompanionError.itemNotFound("no such user: " + username);
        }
        presence.publish(username, on);
        stats.presenceUpdates.incrementAndGet();
    }

    /** An error reply carrying the request's child element, as RFC 6120 allows. */
    static IQ error(IQ request, Element child, CompanionError e) {
        IQ reply = IQ.createResultIQ(request);
        if (child != null) {
            reply.setChildElement(child.createCopy());
        }
        reply.setError(e.toPacketError());
        reply.getElement().addAttribute("type", "error");
        return reply;
    }
}
