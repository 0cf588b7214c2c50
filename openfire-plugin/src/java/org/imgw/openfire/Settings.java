package org.imgw.openfire;

/**
 * The companion's settings as the protocol logic sees them. Read on every use, so a change in
 * the admin console takes effect at once. The Openfire implementation reads system properties.
 */
public interface Settings {
    /** The XMPP server's domain (DOMAIN), lower-case. */
    String serverDomain();

    /** The gateway's component domain (GW), lower-case. */
    String gatewayDomain();

    /** Shared secret of the HTTP user endpoint; empty when the endpoint is disabled. */
    String secret();

    /** Whether messages are copied to the gateway. */
    boolean copyEnabled();

    /**
     * Whether a create for an account that already exists and was not made by the companion
     * adopts it (marks it managed) rather than being refused with conflict. Off by default:
     * turning it on lets whoever can mint tickets for a name use that pre-existing account.
     * Administrator accounts are never adopted.
     */
    boolean adoptExisting();
}
