package org.imgw.openfire;

import java.util.Locale;
import org.jivesoftware.openfire.XMPPServer;
import org.jivesoftware.util.JiveGlobals;

/** {@link Settings} read from Openfire system properties (JiveGlobals caches them in memory). */
final class OpenfireSettings implements Settings {
    @Override
    public String serverDomain() {
        return XMPPServer.getInstance().getServerInfo().getXMPPDomain().toLowerCase(Locale.ROOT);
    }

    @Override
    public String gatewayDomain() {
        String configured = JiveGlobals.getProperty(Companion.PROP_GATEWAY_DOMAIN);
        if (configured == null || configured.trim().isEmpty()) {
            return "gw." + serverDomain();
        }
        return configured.trim().toLowerCase(Locale.ROOT);
    }

    @Override
    public String secret() {
        String s = JiveGlobals.getProperty(Companion.PROP_SECRET);
        return s == null ? "" : s;
    }

    @Override
    public boolean copyEnabled() {
        return JiveGlobals.getBooleanProperty(Companion.PROP_COPY_ENABLED, true);
    }

    @Override
    public String acksMode() {
        String mode = JiveGlobals.getProperty(Companion.PROP_ACKS, "auto");
        mode = mode == null ? "auto" : mode.trim().toLowerCase(Locale.ROOT);
        return "true".equals(mode) || "false".equals(mode) ? mode : "auto";
    }

    @Override
    public boolean acksSeen() {
        return JiveGlobals.getBooleanProperty(Companion.PROP_ACKS_SEEN, false);
    }

    @Override
    public void markAcksSeen() {
        JiveGlobals.setProperty(Companion.PROP_ACKS_SEEN, "true");
    }

    @Override
    public int ackBacklog() {
        return Math.max(100, JiveGlobals.getIntProperty(Companion.PROP_ACK_BACKLOG, Companion.DEFAULT_ACK_BACKLOG));
    }

    @Override
    public long ackBacklogChars() {
        return Math.max(1, JiveGlobals.getIntProperty(Companion.PROP_ACK_BACKLOG_MB, Companion.DEFAULT_ACK_BACKLOG_MB))
                * 1024L * 1024L;
    }

    @Override
    public long ackTimeoutMillis() {
        return Math.max(1, JiveGlobals.getIntProperty(Companion.PROP_ACK_TIMEOUT, Companion.DEFAULT_ACK_TIMEOUT)) * 1000L;
    }

    @Override
    public int ackWindow() {
        return Math.max(1, JiveGlobals.getIntProperty(Companion.PROP_ACK_WINDOW, Companion.DEFAULT_ACK_WINDOW));
    }

    /** Seconds a send-as (sender, id) is remembered; read when the plugin starts. */
    int sendAsDedupSeconds() {
        return Math.max(1, JiveGlobals.getIntProperty(Companion.PROP_SENDAS_DEDUP_SECONDS,
                Companion.DEFAULT_SENDAS_DEDUP_SECONDS));
    }

    /** Most send-as keys remembered; read when the plugin starts. */
    int sendAsDedupMax() {
        return Math.max(1000, JiveGlobals.getIntProperty(Companion.PROP_SENDAS_DEDUP_MAX,
                Companion.DEFAULT_SENDAS_DEDUP_MAX));
    }

    /** The last sequence number handed out before the previous shutdown, or 0. */
    long lastSeq() {
        String s = JiveGlobals.getProperty(Companion.PROP_ACK_LAST_SEQ);
        try {
            return s == null ? 0 : Math.max(0, Long.parseLong(s.trim()));
        } catch (NumberFormatException e) {
            return 0;
        }
    }

    void rememberLastSeq(long seq) {
        JiveGlobals.setProperty(Companion.PROP_ACK_LAST_SEQ, Long.toString(seq));
    }

    @Override
    public boolean adoptExisting() {
        return JiveGlobals.getBooleanProperty(Companion.PROP_ADOPT_EXISTING, false);
    }

    /** Seconds a copied message is remembered; read when the plugin starts. */
    int dedupSeconds() {
        return Math.max(1, JiveGlobals.getIntProperty(Companion.PROP_DEDUP_SECONDS, Companion.DEFAULT_DEDUP_SECONDS));
    }

    /** Most triples remembered; read when the plugin starts. */
    int dedupMax() {
        return Math.max(1000, JiveGlobals.getIntProperty(Companion.PROP_DEDUP_MAX, Companion.DEFAULT_DEDUP_MAX));
    }
}
