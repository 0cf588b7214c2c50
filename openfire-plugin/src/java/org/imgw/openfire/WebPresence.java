package org.imgw.openfire;

import org.xmpp.packet.JID;
import org.xmpp.packet.Presence;

/**
 * The web resource's presence for contacts who were not there at the transition (section 8):
 * a presence probe from another server, a local contact's session becoming available, a
 * subscription approved while the user is web-online. The broadcasts at the transitions
 * themselves go through {@link PresencePublisher}.
 *
 * <p>Openfire answers probes only for real sessions and sends a newly available session the
 * presence of its contacts' real sessions only, so without this a contact who comes online after
 * the user opened a browser would never see the web resource.
 */
public final class WebPresence {
    private final Settings settings;
    private final WebUsers web;
    private final Rosters rosters;
    private final PacketSink sink;
    private final CompanionStats stats;

    public WebPresence(Settings settings, WebUsers web, Rosters rosters, PacketSink sink, CompanionStats stats) {
        this.settings = settings;
        this.web = web;
        this.rosters = rosters;
        this.sink = sink;
        this.stats = stats;
    }

    /**
     * A presence probe after Openfire handled it (interceptor, incoming and processed): answered
     * with the web resource when the probed user is web-online and the prober may see it.
     */
    public void onProbe(Presence probe) {
        JID to = probe.getTo();
        JID from = probe.getFrom();
        if (to == null || from == null || to.getNode() == null || to.getResource() != null
                || !to.getDomain().equalsIgnoreCase(settings.serverDomain())) {
            return;
        }
        String user = to.getNode();
        if (web.isWebOnline(user) && rosters.isSubscriber(user, from.asBareJID())) {
            send(user, from);
        }
    }

    /**
     * A local client session became available (Openfire's PresenceEventListener): it gets the
     * web resource of each web-online contact it is subscribed to, and of its own user.
     *
     * @param session the session's full JID
     */
    public void onSessionAvailable(JID session) {
        if (session == null || session.getNode() == null || web.webOnlineCount() == 0) {
            return;
        }
        String self = session.getNode();
        if (web.isWebOnline(self)) {
            send(self, session);
        }
        String domain = settings.serverDomain();
        for (JID contact : rosters.subscriptions(self)) {
            String user = contact.getNode();
            if (user != null && !user.equals(self) && contact.getDomain().equalsIgnoreCase(domain)
                    && web.isWebOnline(user) && rosters.isSubscriber(user, session.asBareJID())) {
                send(user, session);
            }
        }
    }

    /** A subscription was approved (Openfire's PresenceEventListener): the new subscriber sees the web resource. */
    public void onSubscribed(JID subscriber, JID authorizer) {
        if (subscriber == null || authorizer == null || authorizer.getNode() == null
                || !authorizer.getDomain().equalsIgnoreCase(settings.serverDomain())) {
            return;
        }
        String user = authorizer.getNode();
        if (web.isWebOnline(user)) {
            send(user, subscriber.asBareJID());
        }
    }

    private void send(String user, JID to) {
        Presence p = new Presence();
        p.setFrom(new JID(user, settings.serverDomain(), Companion.WEB_RESOURCE));
        p.setTo(to);
        sink.route(p);
        stats.webPresenceDirected.incrementAndGet();
    }
}
