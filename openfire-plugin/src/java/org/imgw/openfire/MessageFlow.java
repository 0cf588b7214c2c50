package org.imgw.openfire;

import org.xmpp.packet.JID;
import org.xmpp.packet.Message;

/**
 * What the companion does with each message that Openfire routes (sections 2 and 3), written
 * against interfaces so it can be tested without a server. The Openfire interceptor calls
 * {@link #onMessage} for every pass and rejects the packet when it returns true.
 *
 * <p>Copies are made in the incoming, not-yet-processed pass only: Openfire runs it exactly once
 * per routed message, on the node where the message entered, before the message fans out to the
 * recipient's resources or to offline storage. A (from, bare to, id) memory then absorbs client
 * retries and a message sent to several full JIDs of the same user.
 */
public final class MessageFlow {
    /** Source of ids for copy envelopes. */
    public interface IdSource {
        String next();
    }

    /** Source of the current time in milliseconds. */
    public interface Clock {
        long now();
    }

    private final Settings settings;
    private final UserStore users;
    private final PacketSink sink;
    private final RecentKeys recent;
    private final Clock clock;
    private final IdSource ids;
    private final CompanionStats stats;

    public MessageFlow(Settings settings, UserStore users, PacketSink sink, RecentKeys recent, Clock clock,
            IdSource ids, CompanionStats stats) {
        this.settings = settings;
        this.users = users;
        this.sink = sink;
        this.recent = recent;
        this.clock = clock;
        this.ids = ids;
        this.stats = stats;
    }

    /**
     * Handles one interceptor pass of a message.
     *
     * @param message the message being routed; never modified
     * @param incoming Openfire's 'incoming' flag
     * @param processed Openfire's 'processed' flag
     * @return true when the message was a send-as request, which the caller must consume
     *         (Openfire would otherwise forward a message to DOMAIN to its admins)
     */
    public boolean onMessage(Message message, boolean incoming, boolean processed) {
        if (!incoming || processed) {
            return false;
        }
        String domain = settings.serverDomain();
        if (SendAs.isSendAs(message, domain)) {
            sendAs(message, domain);
            return true;
        }
        maybeCopy(message, domain);
        return false;
    }

    private void sendAs(Message outer, String domain) {
        if ("error".equals(outer.getElement().attributeValue("type"))) {
            // Never answer an error with an error; just swallow it.
            return;
        }
        Message routed;
        try {
            routed = SendAs.evaluate(outer, domain, settings.gatewayDomain());
        } catch (CompanionError e) {
            stats.sendAsRefused.incrementAndGet();
            if (outer.getFrom() != null) {
                sink.route(SendAs.errorReply(outer, domain, e));
            }
            return;
        }
        stats.sentAs.incrementAndGet();
        sink.route(routed);
    }

    /** True when the message qualifies for a copy under section 2 (dedup aside). */
    boolean qualifies(Message message, String domain, String gateway) {
        String type = message.getElement().attributeValue("type");
        if (type != null && !"chat".equals(type) && !"normal".equals(type)) {
            return false;
        }
        if (Stanzas.stanzaChild(message.getElement(), "body") == null) {
            return false;
        }
        JID from;
        JID to;
        try {
            from = message.getFrom();
            to = message.getTo();
        } catch (IllegalArgumentException e) {
            return false;
        }
        if (from == null || to == null || Stanzas.isAt(from, gateway)) {
            return false;
        }
        if (to.getNode() == null || !to.getDomain().equalsIgnoreCase(domain)) {
            return false;
        }
        return users.exists(to.getNode());
    }

    private void maybeCopy(Message message, String domain) {
        if (!settings.copyEnabled()) {
            return;
        }
        String gateway = settings.gatewayDomain();
        if (!qualifies(message, domain, gateway)) {
            return;
        }
        long now = clock.now();
        String id = message.getID();
        if (id != null) {
            // A message without an id cannot be told apart from a retry, so it is always copied.
            String key = message.getFrom().toString() + '\n' + message.getTo().toBareJID() + '\n' + id;
            if (!recent.firstSeen(key, now)) {
                stats.duplicates.incrementAndGet();
                return;
            }
        }
        sink.route(CopyEnvelope.build(message, domain, gateway, ids.next(), now));
        stats.copies.incrementAndGet();
    }
}
