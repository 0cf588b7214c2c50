package org.imgw.openfire;

/** Names shared by the companion protocol (docs/companion-protocol.md) and its Openfire settings. */
public final class Companion {
    /** The protocol's namespace: registration, web presence, copies and disco feature. */
    public static final String NS = "urn:imgw:companion:0";
    /** Version 1 (sections 7-10): instances and leases, web users, acknowledgements. */
    public static final String NS1 = "urn:imgw:companion:1";
    public static final String NS_FORWARD = "urn:xmpp:forward:0";
    public static final String NS_DELAY = "urn:xmpp:delay";
    public static final String NS_PRIVILEGE = "urn:xmpp:privilege:2";
    public static final String NS_CLIENT = "jabber:client";

    /** Resource given to a send-as message whose inner 'from' is a bare JID, and to web presence. */
    public static final String WEB_RESOURCE = "web";
    /** Openfire user properties written by registration carry this prefix. */
    public static final String USER_PROPERTY_PREFIX = "imgw.";

    /** Openfire system property: the gateway's component domain (default gw.DOMAIN). */
    public static final String PROP_GATEWAY_DOMAIN = "plugin.imgw.gateway.domain";
    /** Openfire system property: shared secret of the HTTP user endpoint (empty disables it). */
    public static final String PROP_SECRET = "plugin.imgw.secret";
    /** Openfire system property: seconds a copied message is remembered for de-duplication. */
    public static final String PROP_DEDUP_SECONDS = "plugin.imgw.copy.dedup.seconds";
    /** Openfire system property: most (from, to, id) triples remembered at once. */
    public static final String PROP_DEDUP_MAX = "plugin.imgw.copy.dedup.max";
    /** Openfire system property: turns message copies off (true by default). */
    public static final String PROP_COPY_ENABLED = "plugin.imgw.copy.enabled";
    /**
     * Openfire system property: a create of an existing account the companion did not make
     * adopts it instead of answering conflict (false by default; never for administrators).
     */
    public static final String PROP_ADOPT_EXISTING = "plugin.imgw.adopt.existing";

    /** Openfire system property: acknowledged copies on, off or auto (section 9). */
    public static final String PROP_ACKS = "plugin.imgw.acks";
    /** Openfire system property written by the plugin once a version-1 gateway registered (auto mode). */
    public static final String PROP_ACKS_SEEN = "plugin.imgw.acks.seen";
    /** Openfire system property: most unacknowledged copies kept in memory before the oldest go to the database. */
    public static final String PROP_ACK_BACKLOG = "plugin.imgw.acks.backlog";
    /** Openfire system property: most characters of unacknowledged copies kept in memory, in MiB. */
    public static final String PROP_ACK_BACKLOG_MB = "plugin.imgw.acks.backlog.mb";
    /** Openfire system property: seconds after which an unacknowledged copy is sent again. */
    public static final String PROP_ACK_TIMEOUT = "plugin.imgw.acks.timeout";
    /** Openfire system property: most resent copies unacknowledged at once. */
    public static final String PROP_ACK_WINDOW = "plugin.imgw.acks.window";
    /** Openfire system property written at shutdown: the last sequence number handed out. */
    public static final String PROP_ACK_LAST_SEQ = "plugin.imgw.acks.lastseq";
    /** Openfire system property: seconds a send-as (sender, id) is remembered (section 10). */
    public static final String PROP_SENDAS_DEDUP_SECONDS = "plugin.imgw.sendas.dedup.seconds";
    /** Openfire system property: most send-as keys remembered at once. */
    public static final String PROP_SENDAS_DEDUP_MAX = "plugin.imgw.sendas.dedup.max";

    public static final int DEFAULT_ACK_BACKLOG = 10000;
    public static final int DEFAULT_ACK_BACKLOG_MB = 64;
    public static final int DEFAULT_ACK_TIMEOUT = 10;
    public static final int DEFAULT_ACK_WINDOW = 1000;
    public static final int DEFAULT_SENDAS_DEDUP_SECONDS = 600;
    public static final int DEFAULT_SENDAS_DEDUP_MAX = 100000;

    public static final int DEFAULT_DEDUP_SECONDS = 120;
    public static final int DEFAULT_DEDUP_MAX = 100000;

    private Companion() {
    }
}
