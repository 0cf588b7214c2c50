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
