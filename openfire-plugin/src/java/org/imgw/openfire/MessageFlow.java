package org.imgw.openfire;

import org.xmpp.packet.JID;
import org.xmpp.packet.Message;
import org.xmpp.packet.Presence;

/**
 * What the companion does with each message that Openfire routes (sections 2 and 3), written
 * against interfaces so it can be tested without a server. The Openfire interceptor calls
 * {@link #onMessage} for every pass and rejects the packet when it returns true.
 *
 * <p>Copies are made in the incoming, not-yet-processed pass only: Openfire runs it exactly once
 * per routed message, on the node where the message entered, before the message fans out to the
 * recipient's resources or to offline storage. A (from, bare to, id) memory then absorbs client
 * retries and a message sent to several full JIDs of the same user.
 *
 * <p>Version 1 (sections 8-10): copies are numbered and kept by the {@link CopyLedger} while
 * acknowledgements are on; a message for a web-online user that Openfire would otherwise store
 * offline is consumed once copied (the web resource "received" it); a send-as request is routed
 * once per (sender, id) within the de-duplication window.
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
    private final WebUsers web;
    private final RealSessions sessions;
    private final CopyLedger ledger;
    private final RecentKeys sendAsRecent;
    private final WebPresence presence;
    private final LoginRace loginRace;

    private static final int NOT_COPIED = 0;
    private static final int COPIED = 1;
    private static final int DUPLICATE = 2;

    /** Version 0 only: no web-online users, no acknowledgements, no send-as de-duplication. */
    public MessageFlow(Settings settings, UserStore users, PacketSink sink, RecentKeys recent, Clock clock,
            IdSource ids, CompanionStats stats) {
        this(settings, users, sink, recent, clock, ids, stats, null, null, null, null, null);
    }

    /**
     * @param web web-online users; null when version 1 is off
     * @param sessions Openfire's own sessions; may be null only with web null
     * @param ledger acknowledged copies; null when version 1 is off
     * @param sendAsRecent (sender, id) memory of send-as requests; null routes every request
     * @param presence answers presence probes for web resources; null ignores probes
     */
    public MessageFlow(Settings settings, UserStore users, PacketSink sink, RecentKeys recent, Clock clock,
            IdSource ids, CompanionStats stats, WebUsers web, RealSessions sessions, CopyLedger ledger,
            RecentKeys sendAsRecent, WebPresence presence) {
        this(settings, users, sink, recent, clock, ids, stats, web, sessions, ledger, sendAsRecent, presence, null);
    }

    /**
     * As above, plus:
     *
     * @param loginRace told about every send-as message before it is routed (section 10); may be null
     */
    public MessageFlow(Settings settings, UserStore users, PacketSink sink, RecentKeys recent, Clock clock,
            IdSource ids, CompanionStats stats, WebUsers web, RealSessions sessions, CopyLedger ledger,
            RecentKeys sendAsRecent, WebPresence presence, LoginRace loginRace) {
        this.loginRace = loginRace;
        this.settings = settings;
        this.users = users;
        this.sink = sink;
        this.recent = recent;
        this.clock = clock;
        this.ids = ids;
        this.stats = stats;
        this.web = web;
        this.sessions = sessions;
        this.ledger = ledger;
        this.sendAsRecent = sendAsRecent;
        this.presence = presence;
    }

    /**
     * Handles one interceptor pass of a message.
     *
     * @param message the message being routed; never modified
     * @param incoming Openfire's 'incoming' flag
     * @param processed Openfire's 'processed' flag
     * @return true when the caller must consume the message: a send-as request (Openfire would
     *         otherwise forward a message to DOMAIN to its admins), or a message for a web-online
     *         user that Openfire would otherwise store offline (section 8), already copied
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
        int outcome = maybeCopy(message, domain);
        if (web != null && deliveredToWeb(message, outcome, domain)) {
            stats.offlineAvoided.incrementAndGet();
            return true;
        }
        return false;
    }

    /**
     * Handles one interceptor pass of a presence: a probe for a web-online user is answered with
     * the web resource once Openfire has answered for the real sessions (the processed pass), so
     * the prober sees "available" last.
     */
    public void onPresence(Presence presence, boolean incoming, boolean processed) {
        if (this.presence != null && incoming && processed && presence.getType() == Presence.Type.probe) {
            this.presence.onProbe(presence);
        }
    }

    /**
     * True when a message to a web-online user is for the web resource alone: addressed to
     * user@DOMAIN/web, or to the user while no real session would take it (Openfire would store
     * it offline). Such a message has reached the gateway as a copy, so it is consumed.
     */
    private boolean deliveredToWeb(Message message, int outcome, String domain) {
        if (!settings.copyEnabled()) {
            return false;
        }
        String type = message.getElement().attributeValue("type");
        if (type != null && !"chat".equals(type) && !"normal".equals(type)) {
            return false;
        }
        JID to;
        JID from;
        try {
            to = message.getTo();
            from = message.getFrom();
        } catch (IllegalArgumentException e) {
            return false;
        }
        if (to == null || from == null || to.getNode() == null || !to.getDomain().equalsIgnoreCase(domain)
                || Stanzas.isAt(from, settings.gatewayDomain()) || !web.isWebOnline(to.getNode())) {
            return false;
        }
        if (outcome == NOT_COPIED && Stanzas.stanzaChild(message.getElement(), "body") != null) {
            // A message with a body that was not copied has not reached the gateway: leave it.
            return false;
        }
        if (Companion.WEB_RESOURCE.equals(to.getResource())) {
            return true;
        }
        return !sessions.hasAvailable(to.getNode());
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
        String id = routed.getID();
        if (sendAsRecent != null && id != null
                && !sendAsRecent.firstSeen(routed.getFrom().toBareJID() + '\n' + id, clock.now())) {
            // Written again after a gateway restart or link loss (section 10): routed once.
            stats.sendAsDuplicates.incrementAndGet();
            return;
        }
        stats.sentAs.incrementAndGet();
        if (loginRace != null) {
            // Before routing: Openfire reports an offline store from inside route().
            loginRace.routing(routed, clock.now());
        }
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

    private int maybeCopy(Message message, String domain) {
        if (!settings.copyEnabled()) {
            return NOT_COPIED;
        }
        String gateway = settings.gatewayDomain();
        if (!qualifies(message, domain, gateway)) {
            return NOT_COPIED;
        }
        long now = clock.now();
        String id = message.getID();
        if (id != null) {
            // A message without an id cannot be told apart from a retry, so it is always copied.
            String key = message.getFrom().toString() + '\n' + message.getTo().toBareJID() + '\n' + id;
            if (!recent.firstSeen(key, now)) {
                stats.duplicates.incrementAndGet();
                return DUPLICATE;
            }
        }
        Message envelope = CopyEnvelope.build(message, domain, gateway, ids.next(), now);
        if (ledger != null && ledger.enabled()) {
            // Numbered and kept before it leaves, so that no acknowledgement can overtake it.
            ledger.track(envelope, now);
        }
        sink.route(envelope);
        stats.copies.incrementAndGet();
        return COPIED;
    }
}
