package org.imgw.openfire;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.regex.Pattern;
import org.dom4j.Element;
import org.xmpp.packet.IQ;

/**
 * Answers the version-1 IQs to DOMAIN (namespace {@link Companion#NS1}): {@code <gateway>}
 * (section 7), {@code <web>} (section 8) and {@code <acks>} (section 9). Every request is checked
 * completely before anything is applied, so a bad-request changes nothing.
 */
public final class CompanionIq1 {
    /** Most {@code <on/>}/{@code <off/>} children of one {@code <web>} request. */
    public static final int MAX_WEB_CHANGES = 1000;
    private static final Pattern BOOT = Pattern.compile("[0-9a-f]{16,64}");

    private final Settings settings;
    private final UserStore users;
    private final WebUsers web;
    private final CopyLedger ledger;
    private final MessageFlow.Clock clock;
    private final CompanionStats stats;

    public CompanionIq1(Settings settings, UserStore users, WebUsers web, CopyLedger ledger, MessageFlow.Clock clock,
            CompanionStats stats) {
        this.settings = settings;
        this.users = users;
        this.web = web;
        this.ledger = ledger;
        this.clock = clock;
        this.stats = stats;
    }

    /**
     * Handles one IQ.
     *
     * @param iq the request; not modified
     * @return the answer (a new IQ owned by the caller), or null for an IQ result/error
     */
    public IQ handle(IQ iq) {
        String type = iq.getElement().attributeValue("type");
        if (!"get".equals(type) && !"set".equals(type)) {
            return null;
        }
        Element child = iq.getChildElement();
        try {
            if (!Stanzas.isExactly(iq.getFrom(), settings.gatewayDomain())) {
                throw CompanionError.forbidden("only the gateway may use " + Companion.NS1);
            }
            if (!"set".equals(type) || child == null) {
                throw CompanionError.badRequest("expected an IQ set");
            }
            IQ reply = IQ.createResultIQ(iq);
            if ("gateway".equals(child.getName())) {
                reply.setChildElement(gateway(child));
            } else if ("web".equals(child.getName())) {
                web(child);
            } else if ("acks".equals(child.getName())) {
                ledger.ack(AckRanges.parse(child.getText()));
            } else {
                throw CompanionError.badRequest("unknown element " + child.getName());
            }
            return reply;
        } catch (CompanionError e) {
            return CompanionIq.error(iq, child, e);
        }
    }

    private Element gateway(Element g) throws CompanionError {
        int node = node(g);
        String boot = boot(g);
        int lease = (int) number(g, "lease", 3, true);
        if (lease != 0 && (lease < 5 || lease > 300)) {
            throw CompanionError.badRequest("lease must be 0 or 5-300");
        }
        // A clean stop may leave out the user count and sum: they no longer matter.
        boolean needSet = lease != 0 || g.attribute("users") != null || g.attribute("sum") != null;
        long count = needSet ? number(g, "users", 9, true) : 0;
        long sum = needSet ? UserSum.parse(g.attributeValue("sum")) : 0;
        String mark = g.attributeValue("mark");
        if (mark != null) {
            number(g, "mark", 20, false);
        }
        WebUsers.Beat beat = web.gateway(node, boot, lease, count, sum, mark, clock.now());
        if (lease != 0 && "auto".equals(settings.acksMode()) && !settings.acksSeen()) {
            // From now on copies are kept, also across restarts (section 9).
            settings.markAcksSeen();
        }
        if (beat.registered) {
            ledger.instanceRegistered(clock.now());
        }
        if (!beat.sync) {
            stats.resyncs.incrementAndGet();
        }
        Element status = org.dom4j.DocumentHelper.createElement(org.dom4j.QName.get("status", Companion.NS1));
        status.addAttribute("node", Integer.toString(node));
        status.addAttribute("boot", boot);
        if (mark != null) {
            status.addAttribute("mark", mark);
        }
        status.addAttribute("sync", beat.sync ? "ok" : "resync");
        return status;
    }

    private void web(Element w) throws CompanionError {
        int node = node(w);
        String boot = boot(w);
        String resetAttr = w.attributeValue("reset");
        boolean reset;
        if (resetAttr == null || "false".equals(resetAttr) || "0".equals(resetAttr)) {
            reset = false;
        } else if ("true".equals(resetAttr) || "1".equals(resetAttr)) {
            reset = true;
        } else {
            throw CompanionError.badRequest("reset must be true or false");
        }
        List<WebUsers.Change> changes = new ArrayList<WebUsers.Change>();
        for (Iterator<?> i = w.elementIterator(); i.hasNext();) {
            Element c = (Element) i.next();
            boolean on = "on".equals(c.getName());
            if ((!on && !"off".equals(c.getName())) || !Companion.NS1.equals(c.getNamespaceURI())) {
                throw CompanionError.badRequest("unexpected element " + c.getName());
            }
            if (changes.size() >= MAX_WEB_CHANGES) {
                throw CompanionError.badRequest("more than " + MAX_WEB_CHANGES + " changes");
            }
            String user;
            try {
                user = Usernames.normalize(c.attributeValue("u"));
            } catch (CompanionError e) {
                throw CompanionError.badRequest("bad user name in <" + c.getName() + "/>");
            }
            changes.add(new WebUsers.Change(user, on));
        }
        // Account look-ups may hit Openfire's database: done before WebUsers takes its lock.
        Set<String> existing = new HashSet<String>();
        for (WebUsers.Change c : changes) {
            if (c.on && !existing.contains(c.user) && users.exists(c.user)) {
                existing.add(c.user);
            }
        }
        web.web(node, boot, reset, changes, existing, clock.now());
    }

    private static int node(Element e) throws CompanionError {
        long node = number(e, "node", 4, true);
        if (node > 1023) {
            throw CompanionError.badRequest("node must be 0-1023");
        }
        return (int) node;
    }

    private static String boot(Element e) throws CompanionError {
        String boot = e.attributeValue("boot");
        if (boot == null || !BOOT.matcher(boot).matches()) {
            throw CompanionError.badRequest("boot must be 16-64 characters [0-9a-f]");
        }
        return boot;
    }

    /**
     * A decimal attribute of 1 to maxDigits ASCII digits.
     *
     * @return its value, or -1 when it does not fit in a long (only possible for 20 digits)
     */
    private static long number(Element e, String name, int maxDigits, boolean required) throws CompanionError {
        String s = e.attributeValue(name);
        if (s == null) {
            if (required) {
                throw CompanionError.badRequest("missing attribute " + name);
            }
            return -1;
        }
        if (s.isEmpty() || s.length() > maxDigits) {
            throw CompanionError.badRequest("malformed attribute " + name);
        }
        long v = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c < '0' || c > '9') {
                throw CompanionError.badRequest("malformed attribute " + name);
            }
            if (v > (Long.MAX_VALUE - 9) / 10) {
                v = -1;
            } else if (v >= 0) {
                v = v * 10 + (c - '0');
            }
        }
        return v;
    }
}
