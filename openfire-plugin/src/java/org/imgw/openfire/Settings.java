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

    /** Acknowledged copies (section 9): "auto" (the default), "true" or "false". */
    String acksMode();

    /** True once a version-1 gateway has registered on this server (remembered across restarts). */
    boolean acksSeen();

    /** Remembers that a version-1 gateway registered; called at most once per plugin start. */
    void markAcksSeen();

    /** Most unacknowledged copies kept in memory (at least 100). */
    int ackBacklog();

    /** Most characters of unacknowledged copies kept in memory. */
    long ackBacklogChars();

    /** Milliseconds after which an unacknowledged copy is sent again (at least 1000). */
    long ackTimeoutMillis();

    /** Most resent copies outstanding at once (at least 1). */
    int ackWindow();

    /**
     * Whether a create for an account that already exists and was not made by the companion
     * adopts it (marks it managed) rather than being refused with conflict. Off by default:
     * turning it on lets whoever can mint tickets for a name use that pre-existing account.
     * Administrator accounts are never adopted.
     */
    boolean adoptExisting();
}
